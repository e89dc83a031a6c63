//! Prometheus metrics kept in atomics: request counts and latency histograms per route,
//! decisions per optimizer; rendered in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use super::route::Route;

const STATUSES: [u16; 17] = [
    200, 201, 204, 400, 401, 404, 405, 408, 409, 413, 414, 415, 422, 431, 500, 503, 0,
];
/// Where `status` is counted: its own slot, or the last one (`other`).
fn status_index(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|s| *s == status)
        .unwrap_or(STATUSES.len() - 1)
}

const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

#[derive(Default)]
struct RouteStats {
    statuses: [AtomicU64; STATUSES.len()],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// Shards of the counters: each thread counts in its own, so the two cores do not fight over
/// the same cache lines on every request; `/metrics` adds them up.
const SHARDS: usize = 8;

/// One shard, on cache lines of its own.
#[derive(Default)]
#[repr(align(128))]
struct Shard {
    routes: [RouteStats; Route::ALL.len()],
    decisions: RwLock<BTreeMap<String, AtomicU64>>,
}

/// The server's metrics.
pub struct Metrics {
    shards: Box<[Shard]>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Values owned elsewhere that `/metrics` reports.
#[derive(Debug, Clone)]
pub struct Gauges {
    /// Revision served.
    pub revision: String,
    /// Serving a previous revision after a failed reload.
    pub degraded: bool,
    /// Successful reloads.
    pub reloads_ok: u64,
    /// Failed reloads.
    pub reloads_failed: u64,
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// Decision log: entries written, entries lost to failed writes, transactions (none when
    /// the log is off).
    pub decision_log: Option<(u64, u64, u64)>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// The calling thread's shard.
    fn shard(&self) -> &Shard {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
        }
        let i = SLOT.with(|s| *s) % self.shards.len().max(1);
        &self.shards[i]
    }

    /// A route counter summed over the shards.
    fn sum(&self, route: Route, f: impl Fn(&RouteStats) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|s| f(&s.routes[route.index()]).load(Ordering::Relaxed))
            .sum()
    }

    /// Records one request.
    pub fn observe(&self, route: Route, status: u16, elapsed: Duration) {
        let r = &self.shard().routes[route.index()];
        let si = status_index(status);
        r.statuses[si].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(b) = BUCKETS.iter().position(|b| secs <= *b) {
            r.buckets[b].fetch_add(1, Ordering::Relaxed);
        }
        r.count.fetch_add(1, Ordering::Relaxed);
        r.sum_nanos.fetch_add(
            elapsed.as_nanos().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    /// Counts a decision for an optimizer.
    pub fn decision(&self, optimizer: &str) {
        // Hot path: a shared read lock and an atomic add; the write lock is taken once per
        // optimizer name.
        {
            let d = self
                .shard()
                .decisions
                .read()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(n) = d.get(optimizer) {
                n.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut d = self
            .shard()
            .decisions
            .write()
            .unwrap_or_else(|p| p.into_inner());
        d.entry(optimizer.to_string())
            .or_insert_with(|| AtomicU64::new(0))
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Renders everything in the Prometheus text format (version 0.0.4).
    pub fn render(&self, g: &Gauges) -> String {
        let mut o = String::with_capacity(4096);
        o.push_str("# HELP skill_fleet_http_requests_total HTTP requests by route and status.\n");
        o.push_str("# TYPE skill_fleet_http_requests_total counter\n");
        for route in Route::ALL {
            for (i, s) in STATUSES.iter().enumerate() {
                let n = self.sum(route, |r| &r.statuses[i]);
                if n > 0 {
                    let status = if *s == 0 {
                        "other".to_string()
                    } else {
                        s.to_string()
                    };
                    let _ = writeln!(
                        o,
                        "skill_fleet_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                        route.label()
                    );
                }
            }
        }
        o.push_str("# HELP skill_fleet_http_request_duration_seconds Time to handle a request.\n");
        o.push_str("# TYPE skill_fleet_http_request_duration_seconds histogram\n");
        for route in Route::ALL {
            let count = self.sum(route, |r| &r.count);
            if count == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cumulative += self.sum(route, |r| &r.buckets[i]);
                let _ = writeln!(
                    o,
                    "skill_fleet_http_request_duration_seconds_bucket{{route=\"{}\",le=\"{b}\"}} {cumulative}",
                    route.label()
                );
            }
            let _ = writeln!(
                o,
                "skill_fleet_http_request_duration_seconds_bucket{{route=\"{}\",le=\"+Inf\"}} {count}",
                route.label()
            );
            let _ = writeln!(
                o,
                "skill_fleet_http_request_duration_seconds_sum{{route=\"{}\"}} {}",
                route.label(),
                self.sum(route, |r| &r.sum_nanos) as f64 / 1e9
            );
            let _ = writeln!(
                o,
                "skill_fleet_http_request_duration_seconds_count{{route=\"{}\"}} {count}",
                route.label()
            );
        }
        o.push_str("# HELP skill_fleet_decisions_total Recommendations served, by optimizer.\n");
        o.push_str("# TYPE skill_fleet_decisions_total counter\n");
        let mut decisions: BTreeMap<String, u64> = BTreeMap::new();
        for shard in self.shards.iter() {
            for (opt, n) in shard
                .decisions
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
            {
                *decisions.entry(opt.clone()).or_default() += n.load(Ordering::Relaxed);
            }
        }
        for (opt, n) in &decisions {
            let _ = writeln!(
                o,
                "skill_fleet_decisions_total{{optimizer=\"{}\"}} {n}",
                escape(opt),
            );
        }
        o.push_str("# HELP skill_fleet_rules_reloads_total Rule reloads by result.\n");
        o.push_str("# TYPE skill_fleet_rules_reloads_total counter\n");
        let _ = writeln!(
            o,
            "skill_fleet_rules_reloads_total{{result=\"ok\"}} {}",
            g.reloads_ok
        );
        let _ = writeln!(
            o,
            "skill_fleet_rules_reloads_total{{result=\"failed\"}} {}",
            g.reloads_failed
        );
        o.push_str("# HELP skill_fleet_rules_info The rules revision served.\n");
        o.push_str("# TYPE skill_fleet_rules_info gauge\n");
        let _ = writeln!(
            o,
            "skill_fleet_rules_info{{revision=\"{}\"}} 1",
            escape(&g.revision)
        );
        o.push_str("# HELP skill_fleet_rules_degraded 1 while a failed reload leaves an older revision serving.\n");
        o.push_str("# TYPE skill_fleet_rules_degraded gauge\n");
        let _ = writeln!(o, "skill_fleet_rules_degraded {}", u8::from(g.degraded));
        o.push_str("# HELP skill_fleet_uptime_seconds Seconds since the server started.\n");
        o.push_str("# TYPE skill_fleet_uptime_seconds gauge\n");
        let _ = writeln!(o, "skill_fleet_uptime_seconds {:.3}", g.uptime_seconds);
        if let Some((written, failed, batches)) = g.decision_log {
            o.push_str(
                "# HELP skill_fleet_decision_log_entries_total Decision log entries by result.\n",
            );
            o.push_str("# TYPE skill_fleet_decision_log_entries_total counter\n");
            let _ = writeln!(
                o,
                "skill_fleet_decision_log_entries_total{{result=\"written\"}} {written}"
            );
            let _ = writeln!(
                o,
                "skill_fleet_decision_log_entries_total{{result=\"failed\"}} {failed}"
            );
            o.push_str("# HELP skill_fleet_decision_log_batches_total Transactions the decision log wrote.\n");
            o.push_str("# TYPE skill_fleet_decision_log_batches_total counter\n");
            let _ = writeln!(o, "skill_fleet_decision_log_batches_total {batches}");
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_listed_at_its_index() {
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
    }

    #[test]
    fn renders_counts_histograms_and_gauges() {
        let m = Metrics::default();
        m.observe(Route::Recommend, 200, Duration::from_micros(300));
        m.observe(Route::Recommend, 422, Duration::from_millis(2));
        m.observe(Route::Health, 200, Duration::from_micros(50));
        m.decision("gepa");
        m.decision("gepa");
        let text = m.render(&Gauges {
            revision: "abc".into(),
            degraded: false,
            reloads_ok: 2,
            reloads_failed: 1,
            uptime_seconds: 1.5,
            decision_log: Some((7, 0, 2)),
        });
        assert!(text.contains("skill_fleet_decision_log_entries_total{result=\"written\"} 7"));
        assert!(text.contains("skill_fleet_decision_log_batches_total 2"));
        assert!(text.contains("skill_fleet_http_requests_total{route=\"/api/v1/optimization/recommend\",status=\"422\"} 1"));
        assert!(text.contains("skill_fleet_http_request_duration_seconds_bucket{route=\"/api/v1/optimization/recommend\",le=\"0.0005\"} 1"));
        assert!(text.contains("skill_fleet_http_request_duration_seconds_bucket{route=\"/api/v1/optimization/recommend\",le=\"+Inf\"} 2"));
        assert!(text.contains("skill_fleet_decisions_total{optimizer=\"gepa\"} 2"));
        assert!(text.contains("skill_fleet_rules_reloads_total{result=\"failed\"} 1"));
        assert!(text.contains("skill_fleet_rules_info{revision=\"abc\"} 1"));
    }

    #[test]
    fn counts_from_many_threads_add_up() {
        let m = Metrics::default();
        std::thread::scope(|scope| {
            for _ in 0..12 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        m.observe(Route::Recommend, 200, Duration::from_micros(300));
                        m.decision("miprov2");
                    }
                });
            }
        });
        let text = m.render(&Gauges {
            revision: "abc".into(),
            degraded: false,
            reloads_ok: 0,
            reloads_failed: 0,
            uptime_seconds: 1.0,
            decision_log: None,
        });
        assert!(text.contains("skill_fleet_http_requests_total{route=\"/api/v1/optimization/recommend\",status=\"200\"} 1200"));
        assert!(text.contains("skill_fleet_http_request_duration_seconds_count{route=\"/api/v1/optimization/recommend\"} 1200"));
        assert!(text.contains("skill_fleet_decisions_total{optimizer=\"miprov2\"} 1200"));
    }
}
