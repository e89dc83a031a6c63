#![forbid(unsafe_code)]
//! The `skill-fleet` binary: parse arguments, dispatch, exit with the command's code.

use clap::Parser;
use skill_fleet::cli::{run, Cli};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let code = run(cli, &mut stdout.lock(), &mut stderr.lock());
    std::process::exit(code.code());
}
