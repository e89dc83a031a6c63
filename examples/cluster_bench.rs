//! Durable job throughput of `serve` on PostgreSQL, one node and three, beside one node on
//! SQLite: in the same run, with the same clients.
//!
//! ```sh
//! cargo build --release --bin skill-fleet --example cluster_bench
//! target/release/examples/cluster_bench [SECONDS] [--pg URL]
//! ```
//!
//! Three configurations, one after the other: SQLite, 1 node; PostgreSQL, 1 node; PostgreSQL,
//! 3 nodes. Each runs, for SECONDS (default 5):
//!
//! 1. creates: 64 keep-alive clients `POST /api/v1/jobs`, spread round robin over the nodes
//!    (durable: acknowledged after the commit);
//! 2. claim + complete: 64 workers (also spread over the nodes), each `POST
//!    /api/v1/jobs/claim` then `POST /api/v1/jobs/{id}/complete`, on the queue the creates
//!    left (topped up beforehand).
//!
//! It prints a table of creates per second and claim + complete pairs per second, with p50 and
//! p99 latency per request and the errors, then the ratios 3 nodes / 1 node and PostgreSQL /
//! SQLite.
//!
//! The nodes are the release build's `serve` (`SERVE_BIN` picks another binary), with the
//! decision log off. PostgreSQL is a throwaway cluster the benchmark starts (`initdb` and
//! `pg_ctl` on a free port, as the `postgres` user when run as root; the binaries on the `PATH`
//! or under `/usr/lib/postgresql/*/bin`) with **`fsync` on** and the defaults otherwise
//! (`synchronous_commit` on), so a PostgreSQL commit is as durable as SQLite's
//! `synchronous=FULL`; it is stopped at the end. `--pg URL` uses that database instead: an empty
//! one you can spare, since the benchmark drops its skill-fleet tables before each PostgreSQL
//! configuration. Clients, nodes and PostgreSQL share the machine's cores: on a small machine
//! the figures say as much about that as about the store.

#[path = "support/client.rs"]
mod client;

#[path = "support/bench.rs"]
mod bench;

#[path = "../tests/temp.rs"]
mod temp;

// `tests/pg_cluster.rs` asks its `super::support` for a temporary directory and a free port.
mod support {
    pub use super::temp::{free_port, TempDir};
}

#[allow(dead_code)]
#[path = "../tests/pg_cluster.rs"]
mod pg_cluster;

use bench::{claim_complete, creates, fill, start_serve, Measured};
use std::path::Path;

/// Clients in both phases.
const CLIENTS: usize = 64;

/// One configuration's figures.
struct Row {
    config: &'static str,
    creates: Measured,
    pairs: Measured,
}

/// Starts `nodes` nodes on `db` (one after the other: the first creates the schema), runs the
/// creates and then the claim + complete pairs, and stops them.
fn run(config: &'static str, db: &Path, nodes: usize, secs: f64) -> Row {
    let servers: Vec<bench::Server> = (0..nodes).map(|_| start_serve(db)).collect();
    let addrs: Vec<_> = servers.iter().map(|s| s.addr).collect();
    let c = creates(&addrs, CLIENTS, 201, secs);
    // The creates left about `rate × secs` jobs; the pairs never go faster than the creates,
    // but top the queue up so that it cannot run dry.
    fill(&addrs, (c.rate * secs * 0.5) as u64 + 2_000);
    let p = claim_complete(&addrs, CLIENTS, false, secs);
    drop(servers);
    println!(
        "  {config}: {:.0} creates/s, {:.0} claim+complete pairs/s",
        c.rate, p.rate
    );
    Row {
        config,
        creates: c,
        pairs: p,
    }
}

/// Drops the skill-fleet tables of the PostgreSQL database, so that a configuration starts empty.
fn empty(url: &str) {
    skill_fleet::store::destroy(Path::new(url))
        .unwrap_or_else(|e| panic!("cannot empty the database: {e}"));
}

fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pg = args
        .iter()
        .position(|a| a == "--pg")
        .map(|i| args.get(i + 1).expect("--pg needs a URL").clone());
    let secs: f64 = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse().expect("SECONDS is a number"))
        .unwrap_or(5.0);
    let dir = temp::TempDir::new("cluster-bench");
    // Our own cluster (stopped when dropped), unless a database was given.
    let (cluster, url) = match pg {
        Some(url) => (None, url),
        None => {
            let c = pg_cluster::Cluster::start_with("cluster-bench-pg", true)
                .expect("PostgreSQL is needed (`apt-get install postgresql`), or pass --pg URL");
            let url = c.database_url("cluster_bench");
            (Some(c), url)
        }
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "{CLIENTS} clients, {secs} s per phase, {cores} cores shared by clients, nodes and \
         PostgreSQL ({}, fsync on)",
        if cluster.is_some() {
            "a throwaway cluster"
        } else {
            "the --pg database"
        }
    );
    let mut rows = vec![run("SQLite, 1 node", &dir.path().join("bench.db"), 1, secs)];
    empty(&url);
    rows.push(run("PostgreSQL, 1 node", Path::new(&url), 1, secs));
    empty(&url);
    rows.push(run("PostgreSQL, 3 nodes", Path::new(&url), 3, secs));
    empty(&url);
    drop(cluster);

    println!();
    println!(
        "{:<22} {:>10} {:>9} {:>9} {:>10} {:>9} {:>9} {:>7}",
        "config", "creates/s", "p50", "p99", "claims/s", "p50", "p99", "errors"
    );
    for r in &rows {
        println!(
            "{:<22} {:>10.0} {:>9} {:>9} {:>10.0} {:>9} {:>9} {:>7}",
            r.config,
            r.creates.rate,
            ms(r.creates.p50_us),
            ms(r.creates.p99_us),
            r.pairs.rate,
            ms(r.pairs.p50_us),
            ms(r.pairs.p99_us),
            r.creates.errors + r.pairs.errors
        );
    }
    let (lite, one, three) = (&rows[0], &rows[1], &rows[2]);
    println!(
        "\n3 nodes / 1 node (PostgreSQL): creates {:.2}, claims {:.2}",
        three.creates.rate / one.creates.rate,
        three.pairs.rate / one.pairs.rate
    );
    println!(
        "PostgreSQL / SQLite (1 node):   creates {:.2}, claims {:.2}",
        one.creates.rate / lite.creates.rate,
        one.pairs.rate / lite.pairs.rate
    );
    println!("(claims/s: claim + complete pairs per second; p50/p99: per request)");
}
