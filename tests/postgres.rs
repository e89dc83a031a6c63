//! PostgreSQL's own parts (URL, migrations, the job operations, decisions, outcomes, examples)
//! against a real server: a database of its own per test on the shared throwaway cluster
//! (`tests/pg_cluster.rs`).

use super::pg_cluster::Cluster;
use super::support::{free_port, shipped_training};
use serde_json::json;
use skill_fleet::store::job::{NewJob, Progress, Status};
use skill_fleet::store::pg::{self, PgUrl};
use skill_fleet::store::StoreError;
use std::time::{Duration, Instant};

#[test]
fn nodes_that_start_together_migrate_once() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.database("fleet");
    // Four nodes start at once: one applies every migration, the others find nothing to do.
    let applied: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut c = url.connect(Duration::from_secs(10)).expect("connect");
                    pg::migrate(&mut c, &url, 1_000).expect("migrate")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("node"))
            .collect()
    });
    assert_eq!(
        applied.iter().sum::<usize>(),
        pg::MIGRATIONS.len(),
        "{applied:?}"
    );
    assert_eq!(applied.iter().filter(|&&n| n > 0).count(), 1, "{applied:?}");
    let mut c = url.connect(Duration::from_secs(10)).expect("connect");
    assert_eq!(
        pg::schema_version(&mut c, &url).expect("version"),
        pg::MIGRATIONS.len() as i64
    );
    let rows: i64 = c
        .query_one("SELECT COUNT(*) FROM skill_fleet_migrations", &[])
        .expect("count")
        .get(0);
    assert_eq!(rows, pg::MIGRATIONS.len() as i64);
    // The tables are there, with the constraints the job store relies on.
    c.batch_execute(
        "INSERT INTO jobs (id, job_type, status, created_at, updated_at) \
         VALUES ('j1', 't', 'pending', 1, 1)",
    )
    .expect("insert a job");
    let bad = c.batch_execute(
        "INSERT INTO jobs (id, job_type, status, created_at, updated_at) \
         VALUES ('j2', 't', 'done', 1, 1)",
    );
    assert!(bad.is_err(), "an unknown status is refused by the table");
    // Again: nothing to do.
    assert_eq!(pg::migrate(&mut c, &url, 2_000).expect("migrate"), 0);
}

#[test]
fn a_database_newer_than_the_build_is_refused_untouched() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.database("fleet");
    let mut c = url.connect(Duration::from_secs(10)).expect("connect");
    pg::migrate(&mut c, &url, 1).expect("migrate");
    c.batch_execute(
        "INSERT INTO skill_fleet_migrations (version, name, applied_at) VALUES (99, 'from the future', 2)",
    )
    .expect("a newer migration");
    let e = pg::migrate(&mut c, &url, 3).expect_err("refused");
    assert!(matches!(e, StoreError::TooNew { found: 99, .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("newer than this build"), "{text}");
    assert!(text.contains("postgres:***@127.0.0.1"), "{text}");
    assert!(!text.contains("hunter2secret"), "{text}");
    assert_eq!(pg::schema_version(&mut c, &url).expect("version"), 99);
}

#[test]
fn an_unreachable_database_is_an_error_within_the_timeout() {
    // Nothing listens on this port: refused at once. A black-holed address is bounded by
    // the connect timeout too.
    let url = PgUrl::parse(&format!(
        "postgres://fleet:hunter2secret@127.0.0.1:{}/fleet",
        free_port()
    ))
    .expect("url");
    for target in [
        url,
        PgUrl::parse("postgres://fleet:hunter2secret@10.255.255.1:5432/fleet").expect("url"),
    ] {
        let start = Instant::now();
        let Err(e) = target.connect(Duration::from_secs(2)) else {
            panic!("{target}: connected to nothing");
        };
        let took = start.elapsed();
        assert!(took < Duration::from_secs(6), "{target}: {took:?}");
        let text = e.to_string();
        assert!(text.contains(target.redacted()), "{text}");
        assert!(!text.contains("hunter2secret"), "{text}");
    }
}

/// A migrated database of its own on the shared cluster, with its job operations.
fn jobs_db(tag: &str) -> Option<(&'static Cluster, PgUrl, pg::PgJobs)> {
    let cluster = Cluster::shared()?;
    let url = cluster.database(&tag.replace('-', "_"));
    let mut c = url.connect(Duration::from_secs(10)).expect("connect");
    pg::migrate(&mut c, &url, 0).expect("migrate");
    let jobs = pg::PgJobs::new(url.clone(), skill_fleet::store::StoreOptions::default());
    Some((cluster, url, jobs))
}

fn new_job(key: Option<&str>) -> NewJob {
    NewJob {
        job_type: "optimization".into(),
        task: "tune".into(),
        idempotency_key: key.map(str::to_string),
        ..NewJob::default()
    }
}

#[test]
fn a_job_goes_through_its_lifecycle_and_stale_tokens_are_refused() {
    let Some((_cluster, url, jobs)) = jobs_db("pg-life") else {
        return;
    };
    let mut c = url.connect(Duration::from_secs(10)).expect("connect");
    let (job, created) = jobs.create(&mut c, &new_job(None), 1_000).expect("create");
    assert!(created);
    assert_eq!(
        (job.status, job.version, job.attempt),
        (Status::Pending, 1, 0)
    );
    // Completing a job nobody claimed is an illegal transition.
    let e = jobs
        .complete(&mut c, &job.id, "nope", &json!({}), None, 1_001)
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::IllegalTransition {
                from: Status::Pending,
                ..
            }
        ),
        "{e:?}"
    );
    let (claimed, token) = jobs
        .claim(&mut c, "w1", &[], 60_000, None, 1_002)
        .expect("claim")
        .expect("a job");
    assert_eq!(claimed.id, job.id);
    assert_eq!(claimed.status, Status::Running);
    // A wrong token is stale; the right one extends the lease.
    let e = jobs
        .heartbeat(&mut c, &job.id, "forged", 60_000, None, 1_003)
        .unwrap_err();
    assert!(matches!(e, StoreError::StaleLease { .. }), "{e:?}");
    let p = Progress {
        percent: 40.0,
        message: Some("half way".into()),
        phase: Some("compiling".into()),
    };
    let beat = jobs
        .heartbeat(&mut c, &job.id, &token, 60_000, Some(&p), 1_004)
        .expect("heartbeat");
    assert_eq!(beat.progress.percent, 40.0);
    // A human in the loop, then back to pending and claimed again: the old token is stale.
    let asked = jobs
        .request_hitl(&mut c, &job.id, &token, "approve", &json!({"q": 1}), 1_005)
        .expect("ask");
    assert_eq!(asked.status, Status::PendingHitl);
    let answered = jobs
        .respond_hitl(&mut c, &job.id, &json!({"approved": true}), 1_006)
        .expect("answer");
    assert_eq!(answered.status, Status::Pending);
    assert!(jobs
        .respond_hitl(&mut c, &job.id, &json!({}), 1_007)
        .is_err());
    let (_, token2) = jobs
        .claim(
            &mut c,
            "w2",
            &["optimization".into()],
            60_000,
            Some(&job.id),
            1_008,
        )
        .expect("claim")
        .expect("the job again");
    let e = jobs
        .complete(&mut c, &job.id, &token, &json!({}), None, 1_009)
        .unwrap_err();
    assert!(matches!(e, StoreError::StaleLease { .. }), "{e:?}");
    // An expired lease is stale too, even with the current token.
    let e = jobs
        .complete(&mut c, &job.id, &token2, &json!({}), None, 1_008 + 60_000)
        .unwrap_err();
    assert!(matches!(e, StoreError::StaleLease { .. }), "{e:?}");
    let done = jobs
        .complete(
            &mut c,
            &job.id,
            &token2,
            &json!({"quality": 0.9}),
            None,
            1_010,
        )
        .expect("complete");
    assert_eq!(
        (done.status, done.progress.percent),
        (Status::Completed, 100.0)
    );
    assert_eq!(done.result, Some(json!({"quality": 0.9})));
    let e = jobs.cancel(&mut c, &job.id, 1_011).unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::IllegalTransition {
                from: Status::Completed,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(matches!(
        jobs.cancel(&mut c, "nope", 1_012),
        Err(StoreError::NotFound(_))
    ));
    // Fail with retry: back to pending after the backoff, one attempt used.
    let (other, _) = jobs.create(&mut c, &new_job(None), 2_000).expect("create");
    let (_, t) = jobs
        .claim(&mut c, "w", &[], 60_000, None, 2_001)
        .expect("claim")
        .expect("job");
    let failed = jobs
        .fail(&mut c, &other.id, &t, "boom", true, 2_002)
        .expect("fail");
    assert_eq!((failed.status, failed.attempt), (Status::Pending, 1));
    assert!(failed.not_before.is_some());
    assert!(jobs
        .claim(&mut c, "w", &[], 60_000, None, 2_003)
        .expect("claim")
        .is_none());
    assert_eq!(
        jobs.get(&mut c, &other.id)
            .expect("get")
            .expect("job")
            .error
            .as_deref(),
        Some("boom")
    );
}

#[test]
fn fifty_creates_with_one_key_make_one_job() {
    let Some((_cluster, url, jobs)) = jobs_db("pg-idem") else {
        return;
    };
    let results: Vec<(String, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                s.spawn(|| {
                    let mut c = url.connect(Duration::from_secs(20)).expect("connect");
                    let (job, created) = jobs
                        .create(&mut c, &new_job(Some("same-key")), 5)
                        .expect("create");
                    (job.id, created)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    });
    let ids: std::collections::BTreeSet<&String> = results.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
    let mut c = url.connect(Duration::from_secs(10)).expect("connect");
    let n: i64 = c
        .query_one("SELECT COUNT(*) FROM jobs", &[])
        .expect("count")
        .get(0);
    assert_eq!(n, 1);
}

#[test]
fn concurrent_claims_never_share_a_job_and_concurrent_sweeps_add_one_attempt() {
    let Some((_cluster, url, jobs)) = jobs_db("pg-claims") else {
        return;
    };
    let mut c = url.connect(Duration::from_secs(10)).expect("connect");
    for i in 0..40 {
        jobs.create(&mut c, &new_job(None), i).expect("create");
    }
    // Eight workers on their own connections claim until nothing is left.
    let claimed: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|w| {
                let (url, jobs) = (&url, &jobs);
                s.spawn(move || {
                    let mut c = url.connect(Duration::from_secs(20)).expect("connect");
                    let mut mine = Vec::new();
                    // A 1 ms lease: every claim has expired by the sweep below.
                    while let Some((job, _)) = jobs
                        .claim(&mut c, &format!("w{w}"), &[], 1, None, 1_000)
                        .expect("claim")
                    {
                        mine.push(job.id);
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect()
    });
    let unique: std::collections::BTreeSet<&String> = claimed.iter().collect();
    assert_eq!(
        (claimed.len(), unique.len()),
        (40, 40),
        "a job was claimed twice"
    );
    // Two nodes sweep at once: each expired job is returned once, with one attempt added.
    let swept: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (url, jobs) = (&url, &jobs);
                s.spawn(move || {
                    let mut c = url.connect(Duration::from_secs(20)).expect("connect");
                    jobs.sweep(&mut c, 5_000).expect("sweep").len()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("sweeper"))
            .collect()
    });
    assert_eq!(swept.iter().sum::<usize>(), 40, "{swept:?}");
    let rows = c
        .query("SELECT status, attempt FROM jobs", &[])
        .expect("jobs");
    for r in rows {
        let (status, attempt): (String, i64) = (r.get(0), r.get(1));
        assert_eq!((status.as_str(), attempt), ("pending", 1));
    }
    assert!(jobs.sweep(&mut c, 6_000).expect("sweep").is_empty());
}

/// The plan of a claim's select, in a transaction set up as a claim's.
fn claim_plan(c: &mut postgres::Client) -> String {
    let mut tx = c.transaction().expect("begin");
    tx.batch_execute(pg::CLAIM_PLAN).expect("claim settings");
    let rows = tx
        .query(
            &format!("EXPLAIN {}", pg::CLAIM_SELECT),
            &[&40_000i64, &false, &vec!["optimization"], &None::<String>],
        )
        .expect("explain");
    rows.iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_claim_walks_the_pending_jobs_in_order_whatever_the_statistics() {
    let Some((_cluster, url, jobs)) = jobs_db("pg-claim-plan") else {
        return;
    };
    let mut c = url.connect(Duration::from_secs(10)).expect("connect");
    // A burst, as under load: 21 000 jobs created (many share a millisecond), then 20 000 of
    // them, the oldest, finished; no ANALYZE yet, as before autovacuum comes round.
    c.batch_execute(
        "ALTER TABLE jobs SET (autovacuum_enabled = false); \
         INSERT INTO jobs (id, job_type, status, task, payload, attempt, max_attempts, \
         created_at, updated_at, version) \
         SELECT 'job-' || (100000 + g), 'optimization', 'pending', 't', '{}', 0, 3, g / 20, g, 1 \
         FROM generate_series(1, 21000) AS g; \
         UPDATE jobs SET status = 'completed', completed_at = 1, version = 3 \
         WHERE id < 'job-120000'",
    )
    .expect("a burst of jobs");
    let plan_ok = |plan: &str| {
        // Neither a sort of every pending job nor a walk past every finished one.
        plan.contains("jobs_pending") && !plan.contains("Sort") && !plan.contains("jobs_newest")
    };
    let stale = claim_plan(&mut c);
    assert!(plan_ok(&stale), "with stale statistics:\n{stale}");
    c.batch_execute("ANALYZE jobs").expect("analyze");
    let fresh = claim_plan(&mut c);
    assert!(plan_ok(&fresh), "with fresh statistics:\n{fresh}");
    let (job, _) = jobs
        .claim(&mut c, "w", &[], 60_000, None, 40_000)
        .expect("claim")
        .expect("a pending job");
    assert_eq!(job.id, "job-120000", "the oldest pending job comes first");
}

#[test]
fn jobs_are_listed_newest_first_in_pages_and_old_ones_pruned() {
    let Some((_cluster, url, jobs)) = jobs_db("pg-list") else {
        return;
    };
    let mut c = url.connect(Duration::from_secs(10)).expect("connect");
    let mut made = Vec::new();
    for (i, t) in [10, 11, 12, 12, 13, 14, 15].into_iter().enumerate() {
        let mut new = new_job(None);
        if i % 2 == 1 {
            new.job_type = "skill_creation".into();
            new.user_id = Some("ana".into());
        }
        made.push((t, jobs.create(&mut c, &new, t).expect("create").0.id));
    }
    // Newest first; the same millisecond ordered by id, descending.
    made.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    let want: Vec<&String> = made.iter().map(|(_, id)| id).collect();
    let mut got = Vec::new();
    let mut filter = skill_fleet::store::Filter {
        limit: 3,
        ..Default::default()
    };
    let mut pages = 0;
    loop {
        let page = jobs.list(&mut c, &filter).expect("list");
        pages += 1;
        got.extend(page.jobs.iter().map(|j| j.id.clone()));
        match page.next_cursor {
            Some(cur) => filter.cursor = Some(cur),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(got.iter().collect::<Vec<_>>(), want);
    let only = |f: skill_fleet::store::Filter| {
        jobs.list(&mut url.connect(Duration::from_secs(10)).expect("c"), &f)
            .expect("list")
            .jobs
            .len()
    };
    let f = |status: Option<Status>, job_type: Option<&str>, user: Option<&str>| {
        skill_fleet::store::Filter {
            status,
            job_type: job_type.map(str::to_string),
            user_id: user.map(str::to_string),
            limit: 100,
            cursor: None,
        }
    };
    assert_eq!(only(f(None, Some("skill_creation"), None)), 3);
    assert_eq!(only(f(None, None, Some("ana"))), 3);
    assert_eq!(
        only(f(Some(Status::Pending), Some("optimization"), None)),
        4
    );
    let bad = jobs.list(
        &mut c,
        &skill_fleet::store::Filter {
            limit: 3,
            cursor: Some("nope".into()),
            ..Default::default()
        },
    );
    assert!(
        matches!(bad, Err(StoreError::Field { ref field, .. }) if field == "cursor"),
        "{bad:?}"
    );
    // Two finished long ago, one just now, one still pending: only the old ones go.
    let ids: Vec<String> = made.iter().map(|(_, id)| id.clone()).collect();
    jobs.cancel(&mut c, &ids[0], 100).expect("cancel");
    jobs.cancel(&mut c, &ids[1], 200).expect("cancel");
    jobs.cancel(&mut c, &ids[2], 10_000).expect("cancel");
    let mut pruned = jobs.prune(&mut c, 5_000).expect("prune");
    pruned.sort();
    let mut old = vec![ids[0].clone(), ids[1].clone()];
    old.sort();
    assert_eq!(pruned, old);
    assert!(jobs.get(&mut c, &ids[2]).expect("get").is_some());
    assert!(jobs.prune(&mut c, 5_000).expect("prune").is_empty());
}

#[test]
fn decision_ids_are_unique_across_nodes_and_batches_are_written_whole() {
    let Some((_cluster, url, _jobs)) = jobs_db("pg-decisions") else {
        return;
    };
    // Four nodes reserve blocks at once: every block is its own.
    let mut starts: Vec<i64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let url = &url;
                s.spawn(move || {
                    let mut c = url.connect(Duration::from_secs(20)).expect("connect");
                    (0..20)
                        .map(|_| pg::decisions::reserve(&mut c, url, 1_000).expect("reserve"))
                        .collect::<Vec<i64>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("node"))
            .collect()
    });
    starts.sort_unstable();
    assert_eq!(starts.len(), 80);
    for w in starts.windows(2) {
        assert!(w[1] - w[0] >= 1_000, "blocks overlap: {w:?}");
    }
    assert_eq!(starts[0], 1);
    // One batch of 1,234 rows (three statements) from the first block.
    let mut c = url.connect(Duration::from_secs(10)).expect("connect");
    let rows: Vec<skill_fleet::store::decisions::NewDecision> = (0..1_234)
        .map(|i| {
            skill_fleet::store::decisions::NewDecision::new(
                1 + i,
                10_000 + i,
                "http",
                (0.25, 14.0),
                skill_fleet::store::decisions::DecisionTexts {
                    request_id: (i % 2 == 0).then_some("rid"),
                    revision: "r1",
                    rule: "moderate",
                    optimizer: "miprov2",
                    variant: Some("light"),
                    input: br#"{"trainset_size":200}"#,
                },
                |out| out.extend_from_slice(br#"{"recommended":"miprov2"}"#),
            )
        })
        .collect();
    assert_eq!(
        pg::decisions::insert(&mut c, &url, &rows).expect("insert"),
        1_234
    );
    let (n, with_rid): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT COUNT(*), COUNT(request_id) FROM decisions WHERE optimizer = 'miprov2' \
                 AND variant = 'light' AND output = '{\"recommended\":\"miprov2\"}'",
                &[],
            )
            .expect("count");
        (r.get(0), r.get(1))
    };
    assert_eq!((n, with_rid), (1_234, 617));
    // The reads the metrics and the timeline use.
    let counts = pg::decisions::counts(&mut c, &url, 10_000).expect("counts");
    assert_eq!(counts.total, 1_234);
    assert_eq!(counts.by_optimizer.get("miprov2"), Some(&1_234));
    assert_eq!(
        pg::decisions::counts(&mut c, &url, 11_000)
            .expect("counts")
            .total,
        234
    );
    let mut seen = Vec::new();
    let n = pg::decisions::each_since(&mut c, &url, 11_200, |d| seen.push(d.id)).expect("each");
    assert_eq!((n, seen.len()), (34, 34));
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    let one = pg::decisions::get(&mut c, &url, 1)
        .expect("get")
        .expect("decision 1");
    assert_eq!(
        (one.optimizer.as_str(), one.request_id.as_deref()),
        ("miprov2", Some("rid"))
    );
    assert_eq!(one.output["recommended"], "miprov2");
    let buckets = pg::decisions::timeline(&mut c, &url, 10_000, 500, 3).expect("timeline");
    let per: Vec<u64> = buckets.iter().map(|b| b.values().sum()).collect();
    assert_eq!(per, vec![500, 500, 234]);
    // A batch with a taken id is refused whole.
    let dup = vec![rows[0].clone()];
    assert!(pg::decisions::insert(&mut c, &url, &dup).is_err());
    let n: i64 = c
        .query_one("SELECT COUNT(*) FROM decisions", &[])
        .expect("count")
        .get(0);
    assert_eq!(n, 1_234);
}

#[test]
fn a_column_changed_behind_the_stores_back_is_an_internal_error_not_a_panic() {
    let Some((_cluster, url, jobs)) = jobs_db("pg-altered") else {
        return;
    };
    let mut c = url.connect(Duration::from_secs(10)).expect("connect");
    let row = skill_fleet::store::decisions::NewDecision::new(
        1,
        10_000,
        "http",
        (0.25, 14.0),
        skill_fleet::store::decisions::DecisionTexts {
            request_id: None,
            revision: "r1",
            rule: "moderate",
            optimizer: "miprov2",
            variant: None,
            input: b"{}",
        },
        |out| out.extend_from_slice(b"{}"),
    );
    pg::decisions::insert(&mut c, &url, &[row]).expect("insert");
    let (running, _) = jobs.create(&mut c, &new_job(None), 1_000).expect("create");
    jobs.claim(&mut c, "w1", &[], 60_000, None, 1_001)
        .expect("claim")
        .expect("claimed");
    let (pending, _) = jobs.create(&mut c, &new_job(None), 1_002).expect("create");
    // Someone changes column types by hand: every read that maps those columns says so.
    c.batch_execute(
        "ALTER TABLE decisions ALTER COLUMN optimizer TYPE BYTEA USING optimizer::BYTEA; \
         ALTER TABLE jobs ALTER COLUMN attempt TYPE TEXT",
    )
    .expect("alter");
    let problems = [
        pg::decisions::get(&mut c, &url, 1).map(|_| ()),
        pg::decisions::counts(&mut c, &url, 0).map(|_| ()),
        pg::decisions::timeline(&mut c, &url, 0, 1_000, 20).map(|_| ()),
        pg::decisions::each_since(&mut c, &url, 0, |_| {}).map(|_| ()),
        jobs.get(&mut c, &running.id).map(|_| ()),
        jobs.list(&mut c, &Default::default()).map(|_| ()),
        jobs.cancel(&mut c, &pending.id, 2_000).map(|_| ()),
        jobs.sweep(&mut c, i64::MAX).map(|_| ()),
    ];
    // Not an outage to retry (that is `StoreError::Postgres`, a 503) but an internal error that
    // names the table and the column.
    for (p, table) in problems.into_iter().zip([
        "decisions",
        "decisions",
        "decisions",
        "decisions",
        "jobs",
        "jobs",
        "jobs",
        "jobs",
    ]) {
        match p {
            Err(StoreError::Internal(message)) => {
                assert!(
                    message.starts_with(&format!("a `{table}` row cannot be read: ")),
                    "{message}"
                );
                assert!(message.contains("error deserializing column"), "{message}");
            }
            other => panic!("expected an internal error for `{table}`, got {other:?}"),
        }
    }
}

#[test]
fn outcomes_are_filled_from_their_decision_and_one_per_job_across_nodes() {
    let Some((_cluster, url, _jobs)) = jobs_db("pg-outcomes") else {
        return;
    };
    use skill_fleet::outcome::{NewOutcome, RunContext, RunReport};
    let mut c = url.connect(Duration::from_secs(10)).expect("connect");
    let id = pg::decisions::reserve(&mut c, &url, 10).expect("reserve");
    let decision = skill_fleet::store::decisions::NewDecision::new(
        id,
        5_000,
        "http",
        (2.5, 14.0),
        skill_fleet::store::decisions::DecisionTexts {
            request_id: Some("rid"),
            revision: "r1",
            rule: "moderate",
            optimizer: "miprov2",
            variant: Some("light"),
            input: br#"{"trainset_size":200,"budget_usd":10,"domain":"math"}"#,
        },
        |out| {
            out.extend_from_slice(
                br#"{"recommended":"miprov2","alternatives":[{"optimizer":"gepa","estimated_cost":0.5,"estimated_time_minutes":3}]}"#,
            )
        },
    );
    pg::decisions::insert(&mut c, &url, &[decision]).expect("insert");
    let outcome = |used: &str, job: Option<&str>, decision: Option<i64>| NewOutcome {
        report: RunReport {
            optimizer_used: used.into(),
            quality: 0.9,
            actual_cost: Some(2.0),
            actual_time_minutes: Some(12.0),
        },
        decision_id: decision,
        job_id: job.map(str::to_string),
        context: RunContext::default(),
    };
    let primary = pg::outcomes::record(&mut c, &url, &outcome("miprov2", None, Some(id)), 6_000)
        .expect("record");
    assert_eq!(primary.domain, "math");
    assert_eq!(
        (primary.trainset_size, primary.budget),
        (Some(200), Some(10.0))
    );
    assert_eq!(
        (primary.estimated_cost, primary.estimated_time),
        (Some(2.5), Some(14.0))
    );
    assert_eq!(primary.recommended.as_deref(), Some("miprov2"));
    assert_eq!(primary.variant.as_deref(), Some("light"));
    assert!(primary.auto_selected);
    // An alternative was run: its own estimate.
    let alt = pg::outcomes::record(&mut c, &url, &outcome("gepa", None, Some(id)), 6_001)
        .expect("record");
    assert_eq!(
        (alt.estimated_cost, alt.estimated_time),
        (Some(0.5), Some(3.0))
    );
    // An unknown decision is refused by field, and nothing is written.
    let e =
        pg::outcomes::record(&mut c, &url, &outcome("gepa", None, Some(9_999)), 6_002).unwrap_err();
    assert!(
        matches!(e, StoreError::Field { ref field, .. } if field == "decision_id"),
        "{e:?}"
    );
    // Three nodes record the same job's outcome at once: one row, the same answer for all.
    let ids: Vec<i64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let url = &url;
                let new = outcome("miprov2", Some("job-1"), None);
                s.spawn(move || {
                    let mut c = url.connect(Duration::from_secs(20)).expect("connect");
                    pg::outcomes::record(&mut c, url, &new, 7_000)
                        .expect("record")
                        .id
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("node"))
            .collect()
    });
    assert!(ids.iter().all(|&i| i == ids[0]), "{ids:?}");
    let all = pg::outcomes::since(&mut c, &url, 0).expect("since");
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(
        pg::outcomes::since(&mut c, &url, 6_500)
            .expect("since")
            .len(),
        1
    );
}

#[test]
fn example_updates_from_several_nodes_are_never_lost() {
    let Some((_cluster, url, _jobs)) = jobs_db("pg-examples") else {
        return;
    };
    use skill_fleet::engine::training::{apply_results, synthetic, RunResult};
    let spec = shipped_training();
    let mut c = url.connect(Duration::from_secs(10)).expect("connect");
    let records = synthetic(10, 7);
    let first = pg::examples::put(&mut c, &url, &records, 1).expect("import");
    assert_eq!((first.inserted, first.updated), (10, 0));
    let again = pg::examples::put(&mut c, &url, &records, 2).expect("import");
    assert_eq!((again.inserted, again.updated), (0, 10));
    let stored = pg::examples::all(&mut c, &url).expect("all");
    assert_eq!(stored.len(), 10);
    assert_eq!(pg::examples::count(&mut c, &url).expect("count"), 10);
    assert!(stored.windows(2).all(|w| w[0].example_id < w[1].example_id));
    // Four nodes apply 25 results each to the same example at once.
    let target = stored[3].clone();
    let result = RunResult {
        example_id: target.example_id.clone(),
        score: 0.9,
        passed: true,
    };
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (url, spec, result) = (&url, &spec, &result);
            s.spawn(move || {
                let mut c = url.connect(Duration::from_secs(20)).expect("connect");
                for _ in 0..25 {
                    let out =
                        pg::examples::update(&mut c, url, spec, std::slice::from_ref(result), 3)
                            .expect("update");
                    assert_eq!(out.updated.len(), 1);
                }
            });
        }
    });
    // The same as applying the hundred results one after the other.
    let mut expect = vec![target.clone()];
    for _ in 0..100 {
        expect = apply_results(&spec, &expect, std::slice::from_ref(&result), "t").updated;
    }
    let after = pg::examples::all(&mut c, &url).expect("all");
    let got = after
        .iter()
        .find(|e| e.example_id == target.example_id)
        .expect("target");
    assert_eq!(got.usage_count, target.usage_count + 100);
    assert!(
        (got.quality_score - expect[0].quality_score).abs() < 1e-9,
        "{} vs {}",
        got.quality_score,
        expect[0].quality_score
    );
    // Unknown ids are reported, not invented.
    let unknown = RunResult {
        example_id: "nope".into(),
        score: 0.5,
        passed: false,
    };
    let out = pg::examples::update(&mut c, &url, &spec, &[unknown], 4).expect("update");
    assert_eq!(out.unknown, vec!["nope".to_string()]);
    assert_eq!(pg::examples::all(&mut c, &url).expect("all").len(), 10);
}

#[test]
fn completing_an_optimization_job_records_its_outcome_and_applies_its_results() {
    let Some((_cluster, url, jobs)) = jobs_db("pg-complete") else {
        return;
    };
    use skill_fleet::engine::training::{synthetic, RunResult};
    let spec = shipped_training();
    let mut c = url.connect(Duration::from_secs(10)).expect("connect");
    let examples = synthetic(3, 11);
    pg::examples::put(&mut c, &url, &examples, 1).expect("import");
    let decision_id = pg::decisions::reserve(&mut c, &url, 5).expect("reserve");
    let decision = skill_fleet::store::decisions::NewDecision::new(
        decision_id,
        5,
        "http",
        (2.5, 14.0),
        skill_fleet::store::decisions::DecisionTexts {
            request_id: None,
            revision: "r1",
            rule: "moderate",
            optimizer: "miprov2",
            variant: Some("light"),
            input: br#"{"trainset_size":200,"budget_usd":10,"domain":"math"}"#,
        },
        |out| out.extend_from_slice(br#"{"recommended":"miprov2"}"#),
    );
    pg::decisions::insert(&mut c, &url, &[decision]).expect("insert");
    let mut new = new_job(None);
    new.payload = Some(json!({"optimizer": "miprov2", "decision_id": decision_id}));
    let (job, _) = jobs.create(&mut c, &new, 10).expect("create");
    let (_, token) = jobs
        .claim(&mut c, "w", &[], 60_000, None, 11)
        .expect("claim")
        .expect("job");
    let results = vec![RunResult {
        example_id: examples[0].example_id.clone(),
        score: 1.0,
        passed: true,
    }];
    let result = json!({"optimizer_used": "miprov2", "quality": 0.91, "actual_cost": 2.2, "actual_time_minutes": 13.0});
    let done = jobs
        .complete(
            &mut c,
            &job.id,
            &token,
            &result,
            Some((&spec, &results)),
            12,
        )
        .expect("complete");
    assert_eq!(done.status, Status::Completed);
    let outcomes = pg::outcomes::since(&mut c, &url, 0).expect("outcomes");
    assert_eq!(outcomes.len(), 1);
    let o = &outcomes[0];
    assert_eq!(o.job_id.as_deref(), Some(job.id.as_str()));
    assert_eq!(o.decision_id, Some(decision_id));
    assert_eq!(
        (o.domain.as_str(), o.quality, o.estimated_cost),
        ("math", 0.91, Some(2.5))
    );
    let after = pg::examples::all(&mut c, &url).expect("examples");
    let touched = after
        .iter()
        .find(|e| e.example_id == examples[0].example_id)
        .expect("example");
    assert_eq!(touched.usage_count, examples[0].usage_count + 1);
    // A job of another type keeps both untouched.
    let mut other = new_job(None);
    other.job_type = "skill_creation".into();
    let (o2, _) = jobs.create(&mut c, &other, 20).expect("create");
    let (_, t2) = jobs
        .claim(&mut c, "w", &["skill_creation".into()], 60_000, None, 21)
        .expect("claim")
        .expect("job");
    jobs.complete(&mut c, &o2.id, &t2, &result, Some((&spec, &results)), 22)
        .expect("complete");
    assert_eq!(
        pg::outcomes::since(&mut c, &url, 0)
            .expect("outcomes")
            .len(),
        1
    );
    let again = pg::examples::all(&mut c, &url).expect("examples");
    let same = again
        .iter()
        .find(|e| e.example_id == examples[0].example_id)
        .expect("example");
    assert_eq!(same.usage_count, touched.usage_count);
}
