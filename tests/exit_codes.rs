//! Exit codes follow the table of the README everywhere: each command's "file cannot be
//! read" case exits 5 (a file, socket or database could not be used) with the path in the
//! message, and a rules directory holding something that is not a regular file is refused
//! without being opened for reading.

use super::support::{rules_copy, run_in};

/// Every command that reads a file or directory, pointed at one that is not there.
#[test]
fn every_command_exits_5_when_a_file_it_needs_cannot_be_read() {
    let t = rules_copy("exit-codes");
    let dir = t.path();
    // A database and a trainset that exist, so each case fails on the one missing thing.
    let init = run_in(dir, &["db", "init", "--db", "x.db"], None);
    assert_eq!(init.code, 0, "{init:?}");
    std::fs::write(dir.join("train.jsonl"), "{\"example_id\": \"a\"}\n").unwrap();
    let cases: &[&[&str]] = &[
        &["rules", "check", "--rules", "missing"],
        &["rules", "test", "--rules", "missing"],
        &["rules", "test", "--input", "missing.json"],
        &[
            "rules",
            "test",
            "--set",
            "trainset_size=5",
            "--history",
            "missing.jsonl",
        ],
        &["rules", "diff", "--against", "missing", "--db", "x.db"],
        &["rules", "calibrate", "--rules", "missing", "--db", "x.db"],
        &["rules", "calibrate", "--db", "missing.db"],
        &["rules", "schema", "--out", "/proc/missing/schemas"],
        &[
            "optimize",
            "--auto-select",
            "--trainset",
            "missing.jsonl",
            "--dry-run",
        ],
        &[
            "optimize",
            "--auto-select",
            "--trainset",
            "train.jsonl",
            "--rules",
            "missing",
            "--dry-run",
        ],
        &["training", "import", "missing.json", "--db", "x.db"],
        &[
            "training",
            "update",
            "--results",
            "missing.json",
            "--db",
            "x.db",
        ],
        &["training", "select", "--db", "missing.db"],
        &["training", "select", "--db", "x.db", "--rules", "missing"],
        &["db", "status", "--db", "missing.db"],
        &["jobs", "list", "--db", "missing.db"],
        &["metrics", "--db", "missing.db"],
        &["serve", "--config", "missing.yaml"],
        &[
            "serve",
            "--rules",
            "missing",
            "--db",
            "x.db",
            "--addr",
            "127.0.0.1:0",
        ],
    ];
    for args in cases {
        let r = run_in(dir, args, None);
        assert_eq!(r.code, 5, "`skill-fleet {}`: {r:?}", args.join(" "));
        assert!(
            r.stderr.contains("missing"),
            "`skill-fleet {}` does not name the file: {}",
            args.join(" "),
            r.stderr
        );
        assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
    }
}

/// Invalid content is 4 (input) or 3 (rules), not 5: the file was read.
#[test]
fn a_file_that_reads_but_is_wrong_is_not_an_io_error() {
    let t = rules_copy("exit-codes-content");
    let dir = t.path();
    std::fs::write(dir.join("bad.jsonl"), "{\"example_id\": \"a\"}\nnot json\n").unwrap();
    let r = run_in(
        dir,
        &[
            "optimize",
            "--auto-select",
            "--trainset",
            "bad.jsonl",
            "--dry-run",
        ],
        None,
    );
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("bad.jsonl:2:"), "{}", r.stderr);
    std::fs::write(dir.join("bad.json"), "[{\"example_id\": 5}]").unwrap();
    let r = run_in(
        dir,
        &["training", "import", "bad.json", "--db", "x.db"],
        None,
    );
    assert_eq!(r.code, 4, "{r:?}");
    std::fs::create_dir(dir.join("empty")).unwrap();
    let r = run_in(dir, &["rules", "check", "--rules", "empty"], None);
    assert_eq!(r.code, 3, "{r:?}");
}

#[cfg(unix)]
#[test]
fn a_fifo_device_or_outside_symlink_in_the_rules_directory_is_refused_unread() {
    let t = rules_copy("exit-codes-special");
    let rules = t.path().join("rules");
    let fifo = rules.join("fifo.yaml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let r = run_in(t.path(), &["rules", "check"], None);
    assert_eq!(r.code, 5, "{r:?}");
    assert!(
        r.stderr
            .contains("fifo.yaml` is not a regular file (a FIFO)"),
        "{}",
        r.stderr
    );
    std::fs::remove_file(&fifo).unwrap();

    for (name, target) in [("zero.yaml", "/dev/zero"), ("passwd.yaml", "/etc/passwd")] {
        let link = rules.join(name);
        std::os::unix::fs::symlink(target, &link).unwrap();
        let r = run_in(t.path(), &["rules", "check", "--format", "json"], None);
        assert_eq!(r.code, 5, "{r:?}");
        assert!(
            r.stdout.contains("outside the rules directory"),
            "{}",
            r.stdout
        );
        assert!(!r.stdout.contains("root:"), "{}", r.stdout);
        std::fs::remove_file(&link).unwrap();
    }

    // A symlink that stays inside (how ConfigMaps are mounted) is followed.
    let data = rules.join("..data");
    std::fs::create_dir(&data).unwrap();
    std::fs::rename(rules.join("guard.yaml"), data.join("guard.yaml")).unwrap();
    std::os::unix::fs::symlink("..data/guard.yaml", rules.join("guard.yaml")).unwrap();
    let r = run_in(t.path(), &["rules", "check"], None);
    assert_eq!(r.code, 0, "{r:?}");
}
