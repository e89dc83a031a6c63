//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use super::temp::{free_port, TempDir};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped rules directory.
pub fn shipped_rules() -> PathBuf {
    root().join("rules")
}

/// The `skill-fleet` binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skill-fleet"))
}

/// What a run of the binary printed and returned.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs the binary in `cwd` with `args` and optional standard input.
pub fn run_in(cwd: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    let mut cmd = Command::new(bin());
    cmd.current_dir(cwd)
        .args(args)
        .env_remove("SKILL_FLEET_RULES")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn skill-fleet");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait for skill-fleet");
    let run = Run::from(out);
    assert!(
        !run.stderr.contains("panicked"),
        "skill-fleet panicked:\n{}",
        run.stderr
    );
    run
}

/// Runs the binary from the repository root.
pub fn run(args: &[&str]) -> Run {
    run_in(&root(), args, None)
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).expect("copy file");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The two database backends.
// ---------------------------------------------------------------------------------------------

/// A database backend the tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

impl Backend {
    /// Both, SQLite first.
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

    /// Whether tests can run on it: SQLite always, PostgreSQL when it is installed (a missing
    /// one is a loud skip outside CI and a failure in CI: `Cluster::shared`).
    pub fn available(self) -> bool {
        self == Backend::Sqlite || super::pg_cluster::Cluster::shared().is_some()
    }

    /// A fresh, empty database, and a temporary directory for the test's files: for SQLite
    /// the database is the file `db` in it; for PostgreSQL a new database on the shared
    /// cluster, by URL, whose texts sort by a language's rules as in many production
    /// databases (`Cluster::linguistic_database_url`).
    pub fn fresh(self, tag: &str) -> (PathBuf, TempDir) {
        let dir = TempDir::new(tag);
        let location = match self {
            Backend::Sqlite => dir.path().join("db"),
            Backend::Postgres => {
                let cluster = super::pg_cluster::Cluster::shared()
                    .expect("PostgreSQL is available (see Backend::available)");
                PathBuf::from(cluster.linguistic_database_url(&tag.replace('-', "_")))
            }
        };
        (location, dir)
    }
}

/// Declares each listed `fn name(backend: Backend)` as two tests, `sqlite::name` and
/// `postgres::name`; the PostgreSQL one does nothing (loudly) when PostgreSQL is missing
/// outside CI.
#[macro_export]
macro_rules! tests_on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::support::Backend::Sqlite)
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    if $crate::support::Backend::Postgres.available() {
                        super::$name($crate::support::Backend::Postgres)
                    }
                }
            )*
        }
    };
}

/// The training rules of the shipped rule set.
pub fn shipped_training() -> skill_fleet::rules::spec::TrainingSpec {
    let files = skill_fleet::loader::read_dir(&shipped_rules()).expect("rules");
    skill_fleet::rules::build(&files)
        .expect("valid rules")
        .training
}

/// Runs `f(i)` for each `i` in `0..n` on `n` threads that start together (a barrier); their
/// answers in the order of `i`.
pub fn concurrently<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let gate = std::sync::Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (gate, f) = (&gate, &f);
                s.spawn(move || {
                    gate.wait();
                    f(i)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a concurrent call panicked"))
            .collect()
    })
}

/// A temp dir holding a copy of the shipped rules at `<tmp>/rules`.
pub fn rules_copy(tag: &str) -> TempDir {
    let t = TempDir::new(tag);
    copy_dir(&shipped_rules(), &t.path().join("rules"));
    t
}

// ---------------------------------------------------------------------------------------------
// HTTP test helpers: a real server on port 0, and a tiny blocking HTTP/1.1 client.
// ---------------------------------------------------------------------------------------------

use skill_fleet::config::Config;
use skill_fleet::http::{serve, AppState};
use skill_fleet::loader::live::LiveRules;
use skill_fleet::loader::watch::{self, WatchConfig};
use skill_fleet::store::Store;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest any single wait in the HTTP tests may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A config for tests: rules from `rules_dir`, no watching, no poll.
pub fn test_config(rules_dir: &Path) -> Config {
    let mut c = Config::default();
    c.server.addr = "127.0.0.1:0".into();
    c.rules.dir = rules_dir.to_path_buf();
    c.rules.watch = false;
    c.rules.poll_interval_ms = 0;
    c
}

/// A server running on its own tokio runtime; shut down on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    pub live: Arc<LiveRules>,
    rt: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    watch_stop: Option<tokio::sync::watch::Sender<bool>>,
}

impl TestServer {
    /// Starts a server for `config`: rules from `config.rules.dir` (fixtures per
    /// `rules.run_fixtures_on_reload`), the watcher when `rules.watch` (debounce and poll from
    /// the config), and a database at `db` when given (created).
    pub fn start(config: Config, db: Option<&Path>) -> TestServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let live = Arc::new(
            LiveRules::load(&config.rules.dir, config.rules.run_fixtures_on_reload)
                .map(|l| l.keep_revisions(config.rules.keep_revisions))
                .unwrap_or_else(|(d, f)| panic!("rules: {}", LiveRules::render_failure(&d, &f))),
        );
        let store = db.map(|p| Arc::new(Store::open(p, true).expect("open db")));
        let watching = config.rules.watch.then(|| WatchConfig {
            debounce: Duration::from_millis(config.rules.debounce_ms),
            poll: (config.rules.poll_interval_ms > 0)
                .then(|| Duration::from_millis(config.rules.poll_interval_ms)),
        });
        let state = Arc::new(AppState::new(config, Arc::clone(&live), store).expect("state"));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = rt.spawn(serve(listener, Arc::clone(&state), async {
            let _ = stop_rx.await;
        }));
        let watch_stop = watching.map(|cfg| {
            let (tx, rx) = tokio::sync::watch::channel(false);
            rt.spawn(watch::run(Arc::clone(&live), cfg, rx));
            tx
        });
        TestServer {
            addr,
            state,
            live,
            rt: Some(rt),
            stop: Some(stop),
            server: Some(server),
            watch_stop,
        }
    }

    /// Writes the queued decisions of the decision log (as `serve` does at shutdown).
    pub fn close_log(&self) {
        if let Some(rt) = &self.rt {
            rt.block_on(self.state.close())
                .expect("close the decision log");
        }
    }

    /// Triggers the graceful shutdown (returns at once).
    pub fn trigger_shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(w) = self.watch_stop.take() {
            let _ = w.send(true);
        }
    }

    /// Waits (up to `limit`) for `serve` to return; `None` when it has not returned yet.
    pub fn wait_stopped(&mut self, limit: Duration) -> Option<std::io::Result<()>> {
        let rt = self.rt.as_ref()?;
        let server = self.server.as_mut()?;
        let joined = rt.block_on(async { tokio::time::timeout(limit, server).await });
        let joined = joined.ok()?;
        self.server = None;
        Some(joined.expect("serve task panicked"))
    }

    pub fn get(&self, path: &str) -> Resp {
        request(self.addr, "GET", path, &[], None)
    }

    pub fn post_json(&self, path: &str, body: &str) -> Resp {
        request(
            self.addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.trigger_shutdown();
        let _ = self.wait_stopped(Duration::from_secs(10));
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// A response as read off the wire.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }
}

/// Connects with read and write timeouts, so no test blocks forever.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("read timeout");
    s.set_write_timeout(Some(DEADLINE)).expect("write timeout");
    s
}

/// The request head: request line, `Host`, `Connection: close`, the given headers and
/// `Content-Length` when there is a body.
pub fn request_head(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body_len: Option<usize>,
) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(n) = body_len {
        head.push_str(&format!("Content-Length: {n}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Sends one request on a new connection and reads the response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    let mut s = connect(addr);
    let mut raw = request_head(method, path, headers, body.map(<[u8]>::len)).into_bytes();
    raw.extend_from_slice(body.unwrap_or_default());
    s.write_all(&raw).expect("send request");
    read_response(&mut s)
}

/// Reads one response: the head byte by byte up to the blank line, then `Content-Length`
/// bytes of body (none for 1xx, everything up to EOF when no length is given).
pub fn read_response(s: &mut TcpStream) -> Resp {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(0) => panic!(
                "connection closed before a complete response head: {:?}",
                String::from_utf8_lossy(&head)
            ),
            Ok(_) => head.push(byte[0]),
            Err(e) => panic!(
                "reading the response head: {e} after {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut resp = Resp {
        status,
        headers,
        body: String::new(),
    };
    if (100..200).contains(&status) {
        return resp;
    }
    let mut body = Vec::new();
    match resp.header("content-length").map(|v| v.parse::<usize>()) {
        Some(Ok(n)) => {
            body.resize(n, 0);
            s.read_exact(&mut body).expect("read response body");
        }
        _ => {
            let _ = s.read_to_end(&mut body);
        }
    }
    resp.body = String::from_utf8_lossy(&body).into_owned();
    resp
}

/// Polls `f` until it returns `Some`, or panics with `what` after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A line diff (longest common subsequence), `-` expected, `+` actual.
pub fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!("  {}\n", a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("- {}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        }
    }
    out
}

/// Compares `actual` with the golden file at `path`; with `UPDATE_GOLDEN=1`, writes it instead.
pub fn assert_golden(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|_| {
        panic!(
            "no golden file {}; create it with UPDATE_GOLDEN=1 and review it\n\nactual output:\n{actual}",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "output differs from {} (- expected, + actual; rerun with UPDATE_GOLDEN=1 to accept):\n{}",
        path.display(),
        diff(&expected, actual)
    );
}

fn section(out: &mut String, name: &str, text: &str) {
    out.push_str(&format!("--- {name}\n{text}"));
    if !text.is_empty() && !text.ends_with('\n') {
        out.push_str("\n(no newline at the end)\n");
    }
}

/// The golden form of a run: the command, its exit code, stdout and stderr.
pub fn render_run(args: &[String], r: &Run) -> String {
    let mut out = format!("$ skill-fleet {}\nexit: {}\n", args.join(" "), r.code);
    section(&mut out, "stdout", &r.stdout);
    section(&mut out, "stderr", &r.stderr);
    out
}

/// Line of the first line of `file` (under the repository) whose trimmed text is `text`.
pub fn line(file: &str, text: &str) -> usize {
    std::fs::read_to_string(root().join(file))
        .expect("read")
        .lines()
        .position(|l| l.trim() == text)
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no `{text}` in {file}"))
}

// ---------------------------------------------------------------------------------------------
// The real `serve` binary as a child process.
// ---------------------------------------------------------------------------------------------

use std::process::Child;
use std::sync::Mutex;

/// Collects a child's standard error on a thread: the text so far, and the thread (it ends
/// with the pipe, when the child exits).
pub fn collect_stderr(child: &mut Child) -> (Arc<Mutex<String>>, std::thread::JoinHandle<()>) {
    let mut pipe = child.stderr.take().expect("stderr piped");
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    (text, reader)
}

/// A `skill-fleet serve` child with its stderr collected by a thread; killed on drop, so a
/// failing test leaves no server behind.
pub struct ServeProc {
    pub child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ServeProc {
    pub fn spawn(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> ServeProc {
        let mut cmd = Command::new(bin());
        cmd.current_dir(cwd)
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars() {
            if k.starts_with("SKILL_FLEET_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().copied());
        let mut child = cmd.spawn().expect("spawn skill-fleet serve");
        let (stderr, reader) = collect_stderr(&mut child);
        ServeProc {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    /// Starts `serve` with `args` on a free loopback port and waits until it accepts
    /// connections (a port picked free may be taken again before the binary binds it: then it
    /// tries another).
    pub fn on_free_port(
        cwd: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (ServeProc, SocketAddr) {
        (0..3)
            .find_map(|_| {
                let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
                let a = addr.to_string();
                let all = [args, &["--addr", a.as_str()]].concat();
                let mut proc = ServeProc::spawn(cwd, &all, env);
                let up = wait_for(DEADLINE, "the binary to answer /health", || {
                    if let Ok(Some(_)) = proc.child.try_wait() {
                        return Some(false);
                    }
                    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                        .ok()
                        .map(|_| true)
                });
                if !up {
                    let (code, log) = proc.wait(DEADLINE);
                    assert!(log.contains("cannot listen"), "exit {code}:\n{log}");
                    return None;
                }
                Some((proc, addr))
            })
            .expect("no free port after 3 tries")
    }

    /// Starts `serve` with `args` on `127.0.0.1:0` and waits for the log line that says where
    /// it listens (so `SKILL_FLEET_LOG` must let `skill_fleet::cli::serve`'s `info` through):
    /// the process and its address.
    pub fn listening(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> (ServeProc, SocketAddr) {
        let all = [args, &["--addr", "127.0.0.1:0"]].concat();
        let mut proc = ServeProc::spawn(cwd, &all, env);
        let addr = wait_for(DEADLINE, "the `listening on` line", || {
            proc.assert_running();
            listening_addr(&proc.log())
        });
        (proc, addr)
    }

    /// `serve` as the load tests run it: on `db` (a file or a PostgreSQL URL) with the shipped
    /// rules, not watching, on port 0, with `env`; returns once `/ready` answers 200.
    pub fn ready(db: &Path, env: &[(&str, &str)]) -> (ServeProc, SocketAddr) {
        let (db, rules) = (
            db.display().to_string(),
            shipped_rules().display().to_string(),
        );
        let args = ["--db", db.as_str(), "--rules", rules.as_str(), "--no-watch"];
        let (mut proc, addr) = ServeProc::listening(&root(), &args, env);
        wait_for(DEADLINE, "/ready to answer 200", || {
            proc.assert_running();
            try_request(addr, "GET", "/ready", None)
                .ok()
                .filter(|r| r.status == 200)
        });
        (proc, addr)
    }

    /// SIGKILL (the process must still run), then reaps it: its log.
    pub fn kill(&mut self) -> String {
        self.assert_running();
        self.child.kill().expect("SIGKILL serve");
        let st = self.child.wait().expect("reap serve");
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                st.signal(),
                Some(9),
                "serve was not killed by SIGKILL: {st}"
            );
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.log()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(kill.success());
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Panics when the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            if let Some(r) = self.reader.take() {
                let _ = r.join();
            }
            panic!("skill-fleet exited early ({st}):\n{}", self.log());
        }
    }

    /// Waits for the exit (killing the process when it overstays `limit`): (code, stderr).
    pub fn wait(&mut self, limit: Duration) -> (i32, String) {
        let end = Instant::now() + limit;
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                break st;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("skill-fleet still running after {limit:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The pipe closes with the process: the reader ends and has everything.
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let text = self.log();
        assert!(!text.contains("panicked"), "{text}");
        (status.code().unwrap_or(-1), text)
    }
}

/// The address in a server log's `listening on http://ADDR, …` line.
pub fn listening_addr(log: &str) -> Option<SocketAddr> {
    let rest = &log[log.find("listening on http://")? + "listening on http://".len()..];
    rest[..rest.find([',', ' ', '\n'])?].parse().ok()
}

impl Drop for ServeProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Load tests against real `serve` processes (crash, multi-node): a seeded PRNG, the server's
// timestamps, and a blocking client that reports failures instead of panicking.
// ---------------------------------------------------------------------------------------------

use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// SplitMix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A pause of `lo..hi` milliseconds.
    pub fn pause(&mut self, lo: u64, hi: u64) {
        std::thread::sleep(Duration::from_millis(self.range(lo, hi)));
    }
}

/// The seed of a randomised test: the environment variable `var` when it holds a number, else
/// one from the clock.
pub fn seed(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

// ---- time -------------------------------------------------------------------------------------

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Parses the server's `YYYY-MM-DDTHH:MM:SS.mmmZ` into milliseconds since the epoch.
pub fn parse_rfc3339_ms(s: &str) -> i64 {
    let bad = || panic!("not a timestamp of the server: {s:?}");
    let num = |range: std::ops::Range<usize>| -> i64 {
        s.get(range)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(bad)
    };
    if s.len() != 24 || !s.ends_with('Z') {
        bad();
    }
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + num(11..13) * 3600 + num(14..16) * 60 + num(17..19);
    secs * 1000 + num(20..23)
}

// ---- a blocking HTTP client that reports failures instead of panicking ------------------------

/// Why a request got no complete response.
#[derive(Debug)]
pub enum Failure {
    /// No connection: the request never reached a server.
    Refused,
    /// Connected, but the response was not received in full: the outcome is unknown.
    Broken(String),
}

/// One request on a new connection (`Connection: close`); `Ok` only for a complete response
/// (the whole head and `Content-Length` bytes of body).
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Resp, Failure> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|_| Failure::Refused)?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    let text = body.map(Value::to_string);
    let headers: &[(&str, &str)] = if text.is_some() {
        &[("Content-Type", "application/json")]
    } else {
        &[]
    };
    let mut raw = request_head(method, path, headers, text.as_ref().map(String::len)).into_bytes();
    raw.extend_from_slice(text.unwrap_or_default().as_bytes());
    s.write_all(&raw)
        .map_err(|e| Failure::Broken(format!("send failed: {:?}", e.kind())))?;
    // Read until EOF or an error (a reset after the whole response still counts as received).
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let end = loop {
        match s.read(&mut buf) {
            Ok(0) => break "closed".to_string(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break format!("{:?}", e.kind()),
        }
    };
    parse_response(&got).ok_or_else(|| {
        let when = if got.is_empty() {
            "before any answer"
        } else {
            "mid-answer"
        };
        Failure::Broken(format!("{end} {when}"))
    })
}

fn parse_response(raw: &[u8]) -> Option<Resp> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let resp = Resp {
        status,
        headers,
        body: String::new(),
    };
    let len: usize = match resp.header("content-length") {
        Some(v) => v.parse().ok()?,
        // Every answer of the job API has a length; without one, completeness is unknowable.
        None if status == 204 => 0,
        None => return None,
    };
    if body.len() < len {
        return None;
    }
    Some(Resp {
        body: String::from_utf8_lossy(&body[..len]).into_owned(),
        ..resp
    })
}

/// A request that must succeed with `want` (the server is up and nothing is killing it).
pub fn must(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>, want: u16) -> Resp {
    match try_request(addr, method, path, body) {
        Ok(r) if r.status == want => r,
        other => panic!("{method} {path}: expected {want}, got {other:?}"),
    }
}

/// Every job matching `query` (e.g. `status=running`), following the cursor.
pub fn list_all(addr: SocketAddr, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/jobs?limit=500&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = must(addr, "GET", &path, None, 200).json();
        out.extend(page["jobs"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

/// Sets the flag on drop, so threads stop even when the test panics.
pub struct StopOnDrop(pub Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
