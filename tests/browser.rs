//! The web console in a real browser: `tests/browser/` (pytest + Selenium) drives Debian's
//! headless Chromium through `chromedriver` against a real `skill-fleet serve` of this build,
//! with a temporary database and rules directory.
//!
//! Chromium and chromedriver come from the system (`apt-get install chromium
//! chromium-driver`; `.ci/run` installs them). In CI a missing browser fails this test; on a
//! developer machine without one it says loudly that it skipped.

use super::python::{ensure_venv, show, wait_with_deadline};
use super::support::{bin, root};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Longest the browser run may take.
const DEADLINE: Duration = Duration::from_secs(300);
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

#[test]
fn console_works_in_a_real_browser() {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if !missing.is_empty() {
        let msg = format!(
            "{} not installed: `apt-get install chromium chromium-driver`",
            missing.join(" and ")
        );
        assert!(
            std::env::var_os("CI").is_none(),
            "{msg} (CI needs the browser test)"
        );
        eprintln!("\n*** SKIPPED the browser test of the console: {msg} ***\n");
        return;
    }
    let python = ensure_venv();
    let child = Command::new(&python)
        .current_dir(root())
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/browser",
        ])
        .env("SKILL_FLEET_BIN", bin())
        .env_remove("SKILL_FLEET_API_TOKEN")
        .env_remove("SKILL_FLEET_CONSOLE_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pytest");
    let out = wait_with_deadline(child, DEADLINE);
    assert!(
        out.status.success(),
        "the browser test failed ({})\n{}",
        out.status,
        show(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{}", stdout.lines().last().unwrap_or_default());
}
