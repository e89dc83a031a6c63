//! One connection's driver: serves it with hyper, closes it when a client is slow to send a
//! request's headers, and shuts it down gracefully when the server stops.
//!
//! Both jobs are done per connection rather than per request, so a request costs two plain
//! stores and nothing else:
//!
//! - **Header-read timeout.** The handler counts requests in and out on the connection's
//!   [`Activity`] (odd: a request is being handled). A timer of the connection's own ticks four
//!   times per `header_read_timeout`; when four ticks in a row find no request in progress and
//!   none started since the last tick, the connection is closed. So a client that opens a
//!   connection, or finishes a request, and then does not send complete request headers within
//!   the timeout is cut off after between 1 and 1.25 times the timeout. (hyper's own
//!   `header_read_timeout` arms, allocates and cancels a timer for every request.)
//! - **Graceful shutdown.** [`Connections`] knows every live connection's waker. On shutdown it
//!   sets a flag and wakes them; each then asks hyper to finish its in-flight request and close.
//!   A connection registers its waker again only when it changes (with tokio: once), instead of
//!   polling a shutdown future on every wake-up.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Ticks per header-read timeout: a slow client is closed after 1 to 1 + 1/TICKS timeouts.
const TICKS: u32 = 4;

/// Requests in and out on one connection, counted by the handler: odd while one is handled
/// (HTTP/1 handles one request at a time per connection).
#[derive(Debug, Default)]
pub(super) struct Activity(AtomicU64);

impl Activity {
    /// A request's headers are in; its handler starts.
    pub(super) fn begin(&self) {
        self.bump();
    }

    /// The handler is done (the response is handed to hyper).
    pub(super) fn end(&self) {
        self.bump();
    }

    fn bump(&self) {
        // Only the connection's own task writes: a load and a store, no read-modify-write.
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(1), Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The live connections: their wakers, and whether the server is shutting down.
#[derive(Debug, Default)]
pub(super) struct Connections {
    closing: AtomicBool,
    inner: Mutex<Registry>,
    all_closed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Registry {
    next: u64,
    live: HashMap<u64, Option<Waker>>,
}

impl Connections {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Live connections.
    pub(super) fn live(&self) -> usize {
        self.lock().live.len()
    }

    /// Drives `conn` (a hyper server connection) until it ends, the client is too slow with a
    /// request's headers (`activity` tells), or the server shut down and its last request is
    /// answered. Counted as live from this call on.
    pub(super) fn drive<C: GracefulConn>(
        self: &Arc<Self>,
        conn: C,
        activity: Arc<Activity>,
        header_read_timeout: Duration,
    ) -> Driven<C> {
        let id = {
            let mut r = self.lock();
            let id = r.next;
            r.next += 1;
            r.live.insert(id, None);
            id
        };
        let period = (header_read_timeout / TICKS).max(Duration::from_millis(1));
        Driven {
            conn: Box::pin(conn),
            waker: None,
            shutting_down: false,
            activity,
            tick: Box::pin(tokio::time::sleep(period)),
            period,
            last_seen: 0,
            idle_ticks: 0,
            reg: Registration {
                conns: Arc::clone(self),
                id,
            },
        }
    }

    /// Starts the shutdown: every live connection finishes its in-flight request and closes;
    /// idle ones close at once.
    pub(super) fn shut_down(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let wakers: Vec<Waker> = self.lock().live.values().flatten().cloned().collect();
        for w in wakers {
            w.wake();
        }
    }

    /// Waits until no connection is left.
    pub(super) async fn closed(&self) {
        loop {
            if self.lock().live.is_empty() {
                return;
            }
            // `notify_one` keeps a permit when nobody waits yet: no lost wake-up.
            self.all_closed.notified().await;
        }
    }

    fn register(&self, id: u64, waker: &Waker) {
        if let Some(slot) = self.lock().live.get_mut(&id) {
            *slot = Some(waker.clone());
        }
    }

    fn remove(&self, id: u64) {
        let empty = {
            let mut r = self.lock();
            r.live.remove(&id);
            r.live.is_empty()
        };
        if empty && self.closing.load(Ordering::SeqCst) {
            self.all_closed.notify_one();
        }
    }
}

/// A hyper connection that can be asked to finish and close.
pub(super) trait GracefulConn: Future<Output = Result<(), hyper::Error>> {
    /// Finish the request in flight (if any), then close.
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> GracefulConn for hyper::server::conn::http1::Connection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http1::Connection::graceful_shutdown(self);
    }
}

/// How a driven connection ended.
#[derive(Debug)]
pub(super) enum Ended {
    /// The client or the server closed it (after a shutdown, among others).
    Closed,
    /// No complete request headers within the header-read timeout.
    HeaderTimeout,
    /// hyper reported an error (a malformed request, a reset connection…).
    Error(hyper::Error),
}

/// The future [`Connections::drive`] returns.
///
/// Fields drop in declaration order: the connection (and the handler state it holds) goes
/// before the registration, so once [`Connections::closed`] returns no connection holds the
/// state any more.
pub(super) struct Driven<C> {
    conn: Pin<Box<C>>,
    waker: Option<Waker>,
    shutting_down: bool,
    activity: Arc<Activity>,
    tick: Pin<Box<Sleep>>,
    period: Duration,
    last_seen: u64,
    idle_ticks: u32,
    reg: Registration,
}

/// A connection's entry in [`Connections`], removed when dropped.
struct Registration {
    conns: Arc<Connections>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.conns.remove(self.id);
    }
}

impl<C> Driven<C> {
    /// One tick of the header-read watchdog: true when the connection has waited for request
    /// headers for `TICKS` ticks in a row.
    fn idle_tick(&mut self) -> bool {
        let seen = self.activity.get();
        if seen != self.last_seen || seen % 2 == 1 {
            self.last_seen = seen;
            self.idle_ticks = 0;
            false
        } else {
            self.idle_ticks += 1;
            self.idle_ticks >= TICKS
        }
    }
}

impl<C: GracefulConn> Future for Driven<C> {
    type Output = Ended;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ended> {
        let this = &mut *self;
        // The shutdown and the timer wake this waker: registered again only when it changed.
        let new_waker = !this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        if new_waker {
            this.reg.conns.register(this.reg.id, cx.waker());
            this.waker = Some(cx.waker().clone());
        }
        // After registering: a shutdown that started before is seen here, one that starts
        // after wakes the waker just registered.
        if !this.shutting_down && this.reg.conns.closing.load(Ordering::SeqCst) {
            this.shutting_down = true;
            this.conn.as_mut().graceful_shutdown();
        }
        match this.conn.as_mut().poll(cx) {
            Poll::Ready(Ok(())) => return Poll::Ready(Ended::Closed),
            Poll::Ready(Err(e)) => return Poll::Ready(Ended::Error(e)),
            Poll::Pending => {}
        }
        // The timer is polled (which registers the waker with it) only when it fired, or was
        // reset, or the waker changed; the rest of the time a fired timer is seen by
        // `is_elapsed`, a plain load.
        let mut poll_timer = new_waker || this.tick.is_elapsed();
        while poll_timer {
            match this.tick.as_mut().poll(cx) {
                Poll::Pending => poll_timer = false,
                Poll::Ready(()) => {
                    if this.idle_tick() {
                        return Poll::Ready(Ended::HeaderTimeout);
                    }
                    let next = this.tick.deadline() + this.period;
                    // A late tick (a busy runtime) does not bunch up the next ones.
                    let next = next.max(Instant::now());
                    this.tick.as_mut().reset(next);
                }
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection that never ends by itself, and ends when asked to shut down.
    struct Idle {
        asked: bool,
    }

    impl Future for Idle {
        type Output = Result<(), hyper::Error>;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            if self.asked {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }
    }

    impl GracefulConn for Idle {
        fn graceful_shutdown(mut self: Pin<&mut Self>) {
            self.asked = true;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_between_one_and_a_quarter_more_timeouts() {
        let conns = Arc::new(Connections::default());
        let act = Arc::new(Activity::default());
        let start = Instant::now();
        let ended = conns
            .drive(
                Idle { asked: false },
                Arc::clone(&act),
                Duration::from_secs(4),
            )
            .await;
        assert!(matches!(ended, Ended::HeaderTimeout), "{ended:?}");
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(4), "{took:?}");
        assert!(took <= Duration::from_secs(5), "{took:?}");
        assert_eq!(conns.live(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_progress_or_a_new_one_keeps_the_connection_open() {
        let conns = Arc::new(Connections::default());
        let act = Arc::new(Activity::default());
        let driven = conns.drive(
            Idle { asked: false },
            Arc::clone(&act),
            Duration::from_secs(4),
        );
        let task = tokio::spawn(driven);
        // A long request (10 s, well past the timeout) keeps it open…
        act.begin();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!task.is_finished());
        act.end();
        // …and so do requests that keep coming, each within the timeout.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            act.begin();
            act.end();
        }
        assert!(!task.is_finished());
        // Then silence: closed between 4 and 5 s after the last request.
        let last = Instant::now();
        let ended = task.await.expect("task");
        assert!(matches!(ended, Ended::HeaderTimeout), "{ended:?}");
        let took = last.elapsed();
        assert!(took >= Duration::from_secs(4), "{took:?}");
        assert!(took <= Duration::from_secs(5), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn shut_down_asks_every_connection_to_close_and_closed_waits_for_them() {
        let conns = Arc::new(Connections::default());
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let d = conns.drive(
                    Idle { asked: false },
                    Arc::new(Activity::default()),
                    Duration::from_secs(3600),
                );
                tokio::spawn(d)
            })
            .collect();
        tokio::task::yield_now().await;
        assert_eq!(conns.live(), 3);
        conns.shut_down();
        tokio::time::timeout(Duration::from_secs(1), conns.closed())
            .await
            .expect("all closed after the shutdown");
        for t in tasks {
            assert!(matches!(t.await.expect("task"), Ended::Closed));
        }
        assert_eq!(conns.live(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_accepted_during_the_shutdown_is_closed_too() {
        let conns = Arc::new(Connections::default());
        conns.shut_down();
        let d = conns.drive(
            Idle { asked: false },
            Arc::new(Activity::default()),
            Duration::from_secs(3600),
        );
        assert_eq!(conns.live(), 1);
        let ended = d.await;
        assert!(matches!(ended, Ended::Closed), "{ended:?}");
        conns.closed().await;
    }

    /// A connection that records how many connections were still registered when it dropped.
    struct Recording {
        conns: Arc<Connections>,
        live_at_drop: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Future for Recording {
        type Output = Result<(), hyper::Error>;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            Poll::Ready(Ok(()))
        }
    }

    impl GracefulConn for Recording {
        fn graceful_shutdown(self: Pin<&mut Self>) {}
    }

    impl Drop for Recording {
        fn drop(&mut self) {
            self.live_at_drop.store(self.conns.live(), Ordering::SeqCst);
        }
    }

    /// `serve` closes the database once `closed()` returns: by then no connection may still
    /// hold the handler state, so a connection drops before it leaves the registry.
    #[tokio::test]
    async fn a_connection_is_dropped_before_it_counts_as_closed() {
        let conns = Arc::new(Connections::default());
        let live_at_drop = Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
        let conn = Recording {
            conns: Arc::clone(&conns),
            live_at_drop: Arc::clone(&live_at_drop),
        };
        let ended = conns
            .drive(conn, Arc::new(Activity::default()), Duration::from_secs(1))
            .await;
        assert!(matches!(ended, Ended::Closed), "{ended:?}");
        assert_eq!(live_at_drop.load(Ordering::SeqCst), 1);
        assert_eq!(conns.live(), 0);
    }
}
