//! `skill-fleet db …`, `jobs …` and `optimize` run as a user would, on a temp database.

use super::support::{root, run_in, TempDir};
use serde_json::Value;

struct Db {
    dir: TempDir,
}

impl Db {
    fn new(tag: &str) -> Self {
        Db {
            dir: TempDir::new(tag),
        }
    }

    fn path(&self) -> String {
        self.dir.path().join("t.db").display().to_string()
    }

    fn run(&self, args: &[&str]) -> super::support::Run {
        let db = self.path();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--db", db.as_str()]);
        run_in(&root(), &all, None)
    }

    /// Creates a pending `optimization` job for gepa through `optimize`; returns its id.
    fn gepa_job(&self) -> String {
        let ts = self.trainset(10);
        let made = self.run(&[
            "optimize",
            "--optimizer",
            "gepa",
            "--trainset",
            &ts,
            "--yes",
            "--format",
            "json",
        ]);
        assert_eq!(made.code, 0, "{made:?}");
        let job: Value = serde_json::from_str(&made.stdout).expect("json");
        job["id"].as_str().expect("id").to_string()
    }

    fn trainset(&self, n: usize) -> String {
        let p = self.dir.path().join("train.jsonl");
        let lines: Vec<String> = (0..n)
            .map(|i| format!("{{\"question\": \"q{i}\", \"answer\": \"a{i}\"}}"))
            .collect();
        std::fs::write(&p, lines.join("\n")).expect("write trainset");
        p.display().to_string()
    }
}

#[test]
fn db_init_is_idempotent_and_status_reports_versions_and_counts() {
    let db = Db::new("dbinit");
    let first = db.run(&["db", "init"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first.stdout.starts_with("created database"),
        "{}",
        first.stdout
    );
    let again = db.run(&["db", "init"]);
    assert_eq!(again.code, 0);
    assert!(
        again.stdout.starts_with("checked database"),
        "{}",
        again.stdout
    );
    let st = db.run(&["db", "status", "--format", "json"]);
    assert_eq!(st.code, 0, "{st:?}");
    let v: Value = serde_json::from_str(&st.stdout).expect("json");
    assert_eq!(v["schema_version"], v["latest_version"]);
    assert_eq!(v["jobs"]["pending"], 0);
    assert!(v["sqlite_version"]
        .as_str()
        .expect("version")
        .starts_with('3'));
    let human = db.run(&["db", "status"]);
    assert!(human.stdout.contains("schema version"), "{}", human.stdout);
    assert!(human.stdout.contains("pending_hitl"), "{}", human.stdout);
}

#[test]
fn db_migrate_lists_what_it_applied() {
    let db = Db::new("migrate");
    let m = db.run(&["db", "migrate"]);
    assert_eq!(m.code, 0, "{m:?}");
    assert!(
        m.stdout.contains("applied migration 1: create meta"),
        "{}",
        m.stdout
    );
    assert!(
        m.stdout.contains("applied migration 2: create jobs"),
        "{}",
        m.stdout
    );
    let again = db.run(&["db", "migrate"]);
    assert!(again.stdout.contains("is up to date"), "{}", again.stdout);
}

#[test]
fn db_reset_refuses_without_yes_when_not_a_terminal() {
    let db = Db::new("reset");
    db.run(&["db", "init"]);
    let ts = db.trainset(50);
    let made = db.run(&[
        "optimize",
        "--auto-select",
        "--trainset",
        &ts,
        "--budget",
        "4",
        "--yes",
    ]);
    assert_eq!(made.code, 0, "{made:?}");
    let no = db.run(&["db", "reset"]);
    assert_eq!(no.code, 2);
    assert!(no.stderr.contains("without --yes"), "{}", no.stderr);
    let list = db.run(&["jobs", "list", "--format", "json"]);
    let v: Value = serde_json::from_str(&list.stdout).expect("json");
    assert_eq!(
        v["jobs"].as_array().map(Vec::len),
        Some(1),
        "nothing was deleted"
    );
    let yes = db.run(&["db", "reset", "--yes"]);
    assert_eq!(yes.code, 0, "{yes:?}");
    let list = db.run(&["jobs", "list", "--format", "json"]);
    let v: Value = serde_json::from_str(&list.stdout).expect("json");
    assert_eq!(v["jobs"].as_array().map(Vec::len), Some(0));
}

#[test]
fn commands_on_a_missing_database_say_how_to_create_it() {
    let db = Db::new("missing");
    let r = db.run(&["jobs", "list"]);
    assert_eq!(r.code, 5);
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
    assert!(r.stderr.contains("skill-fleet db init"), "{}", r.stderr);
}

#[test]
fn optimize_auto_select_creates_a_pending_job_with_the_recommendation() {
    let db = Db::new("optimize");
    let ts = db.trainset(50);
    let dry = db.run(&[
        "optimize",
        "--auto-select",
        "--trainset",
        &ts,
        "--budget",
        "4",
        "--dry-run",
    ]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(dry.stdout.contains("recommended   gepa"), "{}", dry.stdout);
    assert!(dry.stdout.contains("(50 examples)"), "{}", dry.stdout);
    assert!(dry.stdout.contains("dry run: no job created"));
    assert!(
        !std::path::Path::new(&db.path()).exists(),
        "a dry run writes nothing"
    );

    let refused = db.run(&[
        "optimize",
        "--auto-select",
        "--trainset",
        &ts,
        "--budget",
        "4",
    ]);
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("without --yes"),
        "{}",
        refused.stderr
    );

    let made = db.run(&[
        "optimize",
        "--auto-select",
        "--trainset",
        &ts,
        "--budget",
        "4",
        "--yes",
        "--format",
        "json",
    ]);
    assert_eq!(made.code, 0, "{made:?}");
    let job: Value = serde_json::from_str(&made.stdout).expect("json");
    assert_eq!(job["status"], "pending");
    assert_eq!(job["job_type"], "optimization");
    assert_eq!(job["payload"]["optimizer"], "gepa");
    assert_eq!(job["payload"]["config"]["num_candidates"], 5);
    assert_eq!(job["payload"]["trainset_size"], 50);
    assert_eq!(
        job["payload"]["decision"]["rule"],
        "small_trainset_low_budget"
    );
    let id = job["id"].as_str().expect("id").to_string();
    // The decision went to the decision log; the payload names it, so the run's outcome links.
    let decision = job["payload"]["decision_id"].as_i64().expect("decision_id");
    assert_eq!(job["payload"]["decision"]["decision_id"], decision);
    let m = db.run(&["metrics", "--since", "all", "--format", "json"]);
    let m: Value = serde_json::from_str(&m.stdout).expect("metrics json");
    assert_eq!(m["decisions"]["total"], 1, "{m}");
    assert_eq!(m["decisions"]["by_rule"]["small_trainset_low_budget"], 1);

    let shown = db.run(&["jobs", "show", &id]);
    assert_eq!(shown.code, 0);
    assert!(
        shown.stdout.contains("status        pending"),
        "{}",
        shown.stdout
    );
    let listed = db.run(&["jobs", "list", "--status", "pending"]);
    assert!(listed.stdout.contains(&id), "{}", listed.stdout);
    let cancelled = db.run(&["jobs", "cancel", &id]);
    assert_eq!(cancelled.code, 0);
    assert!(cancelled.stdout.contains("status        cancelled"));
    let again = db.run(&["jobs", "cancel", &id]);
    assert_eq!(again.code, 1);
    assert!(
        again
            .stderr
            .contains("is cancelled; it cannot become cancelled"),
        "{}",
        again.stderr
    );
}

#[test]
fn optimize_with_a_named_optimizer_and_errors() {
    let db = Db::new("named");
    let ts = db.trainset(10);
    let made = db.run(&[
        "optimize",
        "--optimizer",
        "bootstrap_fewshot",
        "--trainset",
        &ts,
        "--yes",
    ]);
    assert_eq!(made.code, 0, "{made:?}");
    assert!(made.stdout.contains("created job "), "{}", made.stdout);
    let typo = db.run(&[
        "optimize",
        "--optimizer",
        "miprov3",
        "--trainset",
        &ts,
        "--yes",
    ]);
    assert_eq!(typo.code, 4);
    assert!(
        typo.stderr.contains("did you mean `miprov2`?"),
        "{}",
        typo.stderr
    );
    let neither = db.run(&["optimize", "--trainset", &ts]);
    assert_eq!(neither.code, 2, "{neither:?}");
    let bad = db.dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"q\": 1}\nnot json\n").expect("write");
    let r = db.run(&[
        "optimize",
        "--auto-select",
        "--trainset",
        bad.to_str().expect("path"),
        "--dry-run",
    ]);
    assert_eq!(r.code, 4);
    assert!(r.stderr.contains("line 2 is not JSON"), "{}", r.stderr);
    let over = db.run(&[
        "optimize",
        "--auto-select",
        "--trainset",
        &ts,
        "--quality-target",
        "1.5",
        "--dry-run",
    ]);
    assert_eq!(over.code, 4);
    assert!(
        over.stderr.contains("above the maximum 1"),
        "{}",
        over.stderr
    );
}

#[test]
fn jobs_respond_answers_only_waiting_jobs() {
    let db = Db::new("respond");
    let id = db.gepa_job();
    let id = id.as_str();
    let r = db.run(&["jobs", "respond", id, "--data", "{\"approved\": true}"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("is pending; it cannot become pending"),
        "{}",
        r.stderr
    );
    let unknown = db.run(&["jobs", "show", "no-such-id"]);
    assert_eq!(unknown.code, 1);
    assert!(unknown.stderr.contains("no job `no-such-id`"));
    let bad = db.run(&["jobs", "list", "--status", "runing"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("did you mean `running`?"),
        "{}",
        bad.stderr
    );
}

#[test]
fn jobs_respond_resumes_a_job_waiting_for_a_human() {
    let db = Db::new("hitl");
    let id = db.gepa_job();
    {
        let store =
            skill_fleet::store::Store::open(std::path::Path::new(&db.path()), false).expect("open");
        let (claimed, token) = store
            .claim("worker-1", &[], 60_000)
            .expect("claim")
            .expect("a job");
        assert_eq!(claimed.id, id);
        store
            .request_hitl(
                &id,
                &token,
                "approve_config",
                serde_json::json!({"question": "use gepa?"}),
            )
            .expect("park");
        store.close().expect("close");
    }
    let waiting = db.run(&["jobs", "list", "--status", "pending_hitl"]);
    assert!(waiting.stdout.contains(&id), "{}", waiting.stdout);
    let r = db.run(&[
        "jobs",
        "respond",
        &id,
        "--data",
        "{\"approved\": true}",
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let after: Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(after["status"], "pending");
    assert_eq!(after["hitl"]["response"]["approved"], true);
    assert_eq!(after["hitl"]["type"], "approve_config");
}
