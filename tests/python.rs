//! The Python package (`python/`): its pytest suite against this build's `skill-fleet` binary,
//! with real DSPy optimizers on the example task and an offline LM (no network in the tests).
//!
//! The virtual environment lives in `target/python-venv` and is reused while
//! `python/pyproject.toml` (and the interpreter) stay the same: a stamp file holds their hash.
//! The first run installs the package and its dependencies from PyPI; a failing install fails
//! this test with pip's output: a missing package is never a skip.

use super::support::{bin, root};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Longest the whole pytest run may take.
const PYTEST_DEADLINE: Duration = Duration::from_secs(900);

/// The browser test's packages (Selenium), installed in the same environment.
const BROWSER_REQUIREMENTS: &str = "tests/browser/requirements.txt";

fn venv_dir() -> PathBuf {
    root().join("target").join("python-venv")
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// FNV-1a: a hash that stays the same across Rust versions (the stamp outlives the build).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(crate) fn show(out: &Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({})\n{}",
        out.status,
        show(&out)
    );
    out
}

/// The stamp: the interpreter's version and path, the checkout, `pyproject.toml` and the
/// browser test's requirements.
fn stamp() -> String {
    let version = run(
        Command::new("python3").arg("--version"),
        "python3 --version",
    );
    let pyproject = std::fs::read(root().join("python").join("pyproject.toml"))
        .expect("read python/pyproject.toml");
    let mut key = version.stdout;
    key.extend_from_slice(&version.stderr);
    key.extend_from_slice(root().to_string_lossy().as_bytes());
    key.extend_from_slice(&pyproject);
    key.extend_from_slice(
        &std::fs::read(root().join(BROWSER_REQUIREMENTS)).expect("read the browser requirements"),
    );
    format!("{:016x}", fnv1a(&key))
}

/// Creates (or reuses) the virtual environment with the package and the browser test's
/// requirements installed; returns its python. One test at a time builds it.
pub(crate) fn ensure_venv() -> PathBuf {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let venv = venv_dir();
    let python = venv_python(&venv);
    let stamp_file = venv.join(".skill-fleet-stamp");
    let want = stamp();
    let current = std::fs::read_to_string(&stamp_file).unwrap_or_default();
    if current.trim() == want && python.exists() {
        let check = Command::new(&python)
            .args([
                "-c",
                "import skill_fleet.worker, dspy, optuna, pytest, selenium",
            ])
            .output();
        if check.is_ok_and(|o| o.status.success()) {
            return python;
        }
    }
    if !python.exists() {
        let _ = std::fs::remove_dir_all(&venv);
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv target/python-venv (python3 and its venv module must be installed)",
        );
    }
    let _ = std::fs::remove_file(&stamp_file);
    run(
        Command::new(&python)
            .current_dir(root())
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-e",
                "./python[test]",
                "-r",
                BROWSER_REQUIREMENTS,
            ])
            .stdin(Stdio::null()),
        "pip install -e ./python[test] -r tests/browser/requirements.txt",
    );
    std::fs::write(&stamp_file, want).expect("write the venv stamp");
    python
}

/// Waits for `child` at most `limit` (killing it when it takes longer), reading its output
/// on the way so a full pipe never blocks it.
pub(crate) fn wait_with_deadline(mut child: std::process::Child, limit: Duration) -> Output {
    use std::io::Read;
    fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    }
    let stdout = drain(child.stdout.take().expect("pytest stdout"));
    let stderr = drain(child.stderr.take().expect("pytest stderr"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for pytest") {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = |status| Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    match status {
        Some(status) => out(status),
        None => panic!(
            "pytest did not finish within {}s\n{}",
            limit.as_secs(),
            show(&out(std::process::ExitStatus::default()))
        ),
    }
}

#[test]
fn python_package_tests_pass() {
    let python = ensure_venv();
    let mut cmd = Command::new(&python);
    cmd.current_dir(root())
        .args(["-m", "pytest", "-q", "python/tests"])
        .env("SKILL_FLEET_BIN", bin())
        .env("SKILL_FLEET_OFFLINE_LM", "1")
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env_remove("SKILL_FLEET_API_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("start pytest");
    let out = wait_with_deadline(child, PYTEST_DEADLINE);
    assert!(
        out.status.success(),
        "pytest failed ({})\n{}",
        out.status,
        show(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{}", stdout.lines().last().unwrap_or_default());
}
