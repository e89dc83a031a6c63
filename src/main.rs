#![forbid(unsafe_code)]
//! The `skill-fleet` binary: parse arguments, dispatch, exit with the command's code.

use clap::Parser;
use skill_fleet::cli::{run, Cli};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Unlocked handles: `serve` logs to stderr from other threads (tracing), and dry runs read
    // stdin themselves; a lock held here for the whole run would block them forever.
    let mut input = std::io::BufReader::new(std::io::stdin());
    let code = run(
        cli,
        &mut input,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    std::process::exit(code.code());
}
