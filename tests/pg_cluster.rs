//! Real PostgreSQL for the tests: a throwaway cluster (`initdb`, then `pg_ctl start` on a free
//! port, `fsync=off` unless asked for; as the `postgres` user when the tests run as root, since
//! `initdb` refuses root). [`Cluster::start`] gives a test its own cluster (stopped when
//! dropped: for tests that stop and restart the server); [`Cluster::shared`] one cluster for the
//! whole test process, in which each test takes its own database, stopped by a watchdog when
//! the process ends. In CI a missing PostgreSQL fails; on a developer machine without one the
//! tests say loudly that they skipped. `examples/cluster_bench.rs` includes this file (and
//! `temp.rs`) for its own cluster, with `fsync` on.

use super::support::{free_port, TempDir};
use skill_fleet::store::pg::PgUrl;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Where `initdb` and `pg_ctl` are: on the `PATH`, or Debian's versioned directory.
fn pg_bin(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        found.pop()
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A PostgreSQL tool, run as `postgres` when root.
fn tool(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A throwaway PostgreSQL cluster.
pub struct Cluster {
    pg_ctl: PathBuf,
    data: PathBuf,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    options: String,
    log: String,
    /// Stopped when dropped (a shared cluster is stopped by its watchdog instead).
    owned: bool,
    _dir: TempDir,
}

/// Databases handed out so far, for unique names.
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

impl Cluster {
    /// A running cluster of this test's own, or `None` (with a loud note) when PostgreSQL is
    /// not installed and this is not CI.
    pub fn start(tag: &str) -> Option<Cluster> {
        Self::start_with(tag, false)
    }

    /// [`Cluster::start`], with `fsync` on (durable commits, for benchmarks) or off (tests).
    pub fn start_with(tag: &str, fsync: bool) -> Option<Cluster> {
        let (Some(initdb), Some(pg_ctl)) = (pg_bin("initdb"), pg_bin("pg_ctl")) else {
            let msg =
                "PostgreSQL is not installed (`initdb`, `pg_ctl`): `apt-get install postgresql`";
            assert!(std::env::var_os("CI").is_none(), "{msg} (CI needs it)");
            eprintln!("\n*** SKIPPED a PostgreSQL test: {msg} ***\n");
            return None;
        };
        let dir = TempDir::new(tag);
        let data = dir.path().join("data");
        if is_root() {
            // The cluster's files belong to `postgres`.
            let ok = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown the cluster's directory to postgres");
        }
        let data_s = data.display().to_string();
        run(
            &initdb,
            &[
                "-D",
                &data_s,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let port = free_port();
        let durability = if fsync {
            ""
        } else {
            " -c fsync=off -c full_page_writes=off"
        };
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300{durability}",
            dir.path().display()
        );
        let log = dir.path().join("server.log").display().to_string();
        let c = Cluster {
            pg_ctl,
            data,
            port,
            options,
            log,
            owned: true,
            _dir: dir,
        };
        c.start_again();
        Some(c)
    }

    /// The cluster every test of this process shares (each in a database of its own), or
    /// `None` as [`Cluster::start`] says. A watchdog stops it when the test process ends.
    pub fn shared() -> Option<&'static Cluster> {
        static SHARED: OnceLock<Option<Cluster>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let mut c = Cluster::start("pg-shared")?;
                c.owned = false;
                // Stops the cluster once this process is gone, however it ends: a loop put in
                // the background by a shell that exits at once.
                let script = format!(
                    "(while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop}) \
                     > /dev/null 2>&1 < /dev/null &",
                    pid = std::process::id(),
                    stop = c.stop_command_line(),
                );
                let started = Command::new("sh")
                    .args(["-c", &script])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(started, "start the cluster's watchdog");
                Some(c)
            })
            .as_ref()
    }

    /// A fresh database of this cluster (named `<tag>_<n>`), by URL with a password in it
    /// (which the server does not check: `trust`), so every message can be checked for it.
    pub fn database(&self, tag: &str) -> PgUrl {
        PgUrl::parse(&self.database_url(tag)).expect("url")
    }

    /// [`Cluster::database`] as text, for `--db`.
    pub fn database_url(&self, tag: &str) -> String {
        self.create_database(tag, "")
    }

    /// [`Cluster::database_url`] of a database whose texts sort by a language's rules (ICU's
    /// `en-US`: case and punctuation weigh less than letters), as production databases often
    /// do, rather than byte by byte as in the cluster's own `C` locale.
    pub fn linguistic_database_url(&self, tag: &str) -> String {
        self.create_database(
            tag,
            " TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'",
        )
    }

    /// Creates a database named `<tag>_<n>` with `options` after its name; its URL.
    fn create_database(&self, tag: &str, options: &str) -> String {
        let name = format!("{tag}_{}", NEXT_DB.fetch_add(1, Ordering::Relaxed));
        let admin = PgUrl::parse(&format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.port
        ))
        .expect("admin url");
        let mut c = admin
            .connect(Duration::from_secs(10))
            .expect("connect as admin");
        c.batch_execute(&format!("CREATE DATABASE {name}{options}"))
            .expect("create database");
        format!(
            "postgres://postgres:hunter2secret@127.0.0.1:{}/{name}",
            self.port
        )
    }

    /// Stops the server at once (`immediate`: as if the machine went away).
    pub fn stop(&self) {
        let data = self.data.display().to_string();
        let _ = tool(&self.pg_ctl)
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn start_again(&self) {
        let data = self.data.display().to_string();
        run(
            &self.pg_ctl,
            &[
                "-D",
                &data,
                "-o",
                &self.options,
                "-l",
                &self.log,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    fn stop_command_line(&self) -> String {
        let stop = format!(
            "{} -D {} -m immediate stop",
            self.pg_ctl.display(),
            self.data.display()
        );
        if is_root() {
            format!("runuser -u postgres -- {stop}")
        } else {
            stop
        }
    }
}

fn run(program: &Path, args: &[&str]) {
    let out = tool(program)
        .args(args)
        .output()
        .expect("run a PostgreSQL tool");
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.owned {
            self.stop();
        }
    }
}
