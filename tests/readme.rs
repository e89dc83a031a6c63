//! The README's quick start, run as a newcomer would: every shell block of the "Quick start"
//! section, in order, in one fresh directory holding the shipped files (`rules/`, `config/`,
//! `examples/`), with `skill-fleet` on the `PATH` (this build, standing in for
//! `cargo install --path .`). Each block must exit 0; the server's port is a free one.

use super::support::{bin, copy_dir, free_port, root, TempDir};
use std::process::Command;

/// The ```sh blocks of the README section headed `heading`.
fn shell_blocks(readme: &str, heading: &str) -> Vec<String> {
    let start = readme
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("no `## {heading}` section in the README"));
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    let section = &rest[..end];
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```sh" {
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            blocks.push(body.join("\n"));
        }
    }
    blocks
}

#[test]
fn every_quick_start_block_runs_on_a_fresh_directory() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    // The first block is the two commands of the top of the README.
    let top = &readme[..readme.find("\n## ").unwrap()];
    assert!(
        top.contains(
            "```sh\ncargo install --locked --path . && skill-fleet serve\ncargo test\n```"
        ),
        "the README no longer opens with the install-and-serve and test commands"
    );
    let blocks = shell_blocks(&readme, "Quick start");
    assert!(blocks.len() >= 3, "{blocks:?}");

    let t = TempDir::new("readme");
    for dir in ["rules", "config", "examples"] {
        copy_dir(&root().join(dir), &t.path().join(dir));
    }
    let path_dir = t.path().join(".bin");
    std::fs::create_dir(&path_dir).unwrap();
    std::os::unix::fs::symlink(bin(), path_dir.join("skill-fleet")).unwrap();
    let path = format!(
        "{}:{}",
        path_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let port = free_port().to_string();
    for (n, block) in blocks.iter().enumerate() {
        let script = format!(
            "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\nset -x\n{}\n",
            block.replace("8000", &port)
        );
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(&script)
            .current_dir(t.path())
            .env("PATH", &path);
        for (k, _) in std::env::vars() {
            if k.starts_with("SKILL_FLEET_") {
                cmd.env_remove(k);
            }
        }
        let out = cmd.output().expect("run bash");
        assert!(
            out.status.success(),
            "README quick-start block {} failed ({}):\n{block}\n--- stdout\n{}\n--- stderr\n{}",
            n + 1,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // What the blocks made: a database with the job the quick start created, twice.
    let jobs = Command::new(bin())
        .args(["jobs", "list", "--format", "json"])
        .current_dir(t.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&jobs.stdout).unwrap();
    assert_eq!(v["jobs"].as_array().map(Vec::len), Some(2), "{v}");
}
