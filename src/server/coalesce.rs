//! Write coalescing for accepted connections (`--coalesce-writes`).
//!
//! One profile change wakes every watcher's stream at once. Each stream hands
//! h2 one small DATA frame and wakes its connection's task, which tokio runs
//! next (its LIFO slot) and which then flushes whatever h2 has buffered: with
//! 10,000 watchers on 100 connections that was ~1,800 `writev` calls per
//! change, each paying the whole TCP send (and, on loopback, receive) path.
//!
//! [`Coalesced`] copies what h2 writes into its own buffer and holds the flush
//! for a scheduling round: the round ends when tokio wakes the tasks that
//! `yield_now` deferred, which it does once the worker runs out of ready tasks
//! or at its next maintenance tick (every 61 task polls), though tokio does not
//! promise to defer at all. If the runtime still has woken tasks waiting in its
//! global queue then (a fan-out overflows the workers' local queues into it;
//! other wake-ups, such as `spawn_blocking` completions, land there too, so it
//! is only a hint), the hold is renewed for another round, up to
//! [`MAX_HOLD_ROUNDS`]: those tasks are likely the other watchers, about to add
//! their frames.
//!
//! Whatever the rounds do, a flush is held at most [`MAX_HOLD`] (1 ms) by the
//! clock: a timer wakes the connection by then and the next poll sends it.
//!
//! Only small writes are worth gathering, and only while the runtime has a
//! backlog. A flush is held only when less than [`SMALL`] bytes are buffered
//! and woken tasks are waiting in the global queue: if the connection already
//! sent a small write less than [`BURST`] ago (a burst), until the backlog is
//! worked off; otherwise for one round (so a fan-out's first frames gather too,
//! while the reply to the write that started the fan-out waits at most one
//! round). On a runtime without a backlog nothing is held: Gets at steady load
//! send small trailers every few microseconds, and holding each for a round
//! (as an earlier rule did for any burst) cost ~10% of their throughput. Writes of
//! at least [`SMALL`] bytes go straight to the socket when nothing is buffered
//! (image bytes are neither copied nor held), and the buffer never grows past
//! [`MAX_BUFFERED`].

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::runtime::RuntimeMetrics;
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Below this, writes are gathered and flushes held; at or above it they go
/// out at once.
const SMALL: usize = 16 * 1024;
/// Buffered bytes that force a write even while the flush is held.
const MAX_BUFFERED: usize = 256 * 1024;
/// Small writes closer together than this are treated as one burst.
const BURST: Duration = Duration::from_millis(1);
/// Scheduling rounds (of up to 61 task polls each) a flush is held at most
/// while the runtime has a backlog.
const MAX_HOLD_ROUNDS: u32 = 32;
/// The longest a flush is held, by the clock, however many rounds remain.
pub(crate) const MAX_HOLD: Duration = Duration::from_millis(1);
/// tokio's timer wheel fires a timer at the first tick of this length at or
/// after its deadline.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// A connection whose small writes are gathered per scheduling round.
pub(crate) struct Coalesced<S> {
    inner: S,
    buf: Vec<u8>,
    /// Prefix of `buf` already handed to the socket.
    sent: usize,
    hold: Option<Hold>,
    /// When gathered small writes last went out; `None` after a large write.
    last_small_write: Option<Instant>,
    /// Whether woken tasks are still waiting.
    queue: GlobalQueue,
}

/// A held flush: renewed each scheduling round while the runtime has a
/// backlog, and over at its deadline whatever the rounds say.
struct Hold {
    round: Arc<Round>,
    rounds_left: u32,
    deadline: Instant,
    /// Wakes the task by `deadline`, should no round end before.
    timer: Pin<Box<Sleep>>,
}

impl Hold {
    fn start(cx: &Context<'_>, renewals: u32) -> Self {
        let now = Instant::now();
        // TEMPORARY, for the on/off measurement only: the hold as it was, bounded
        // by rounds alone.
        static UNBOUNDED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let max_hold = if *UNBOUNDED
            .get_or_init(|| std::env::var_os("PROFILE_IMAGE_BENCH_COALESCE_UNBOUNDED").is_some())
        {
            Duration::from_secs(3600)
        } else {
            MAX_HOLD
        };
        Hold {
            round: Round::start(cx),
            rounds_left: renewals,
            deadline: now + max_hold,
            // Set one tick early: tokio rounds a timer's deadline up to its next
            // tick, so one set for `deadline` could fire up to a tick after it.
            timer: Box::pin(tokio::time::sleep_until(
                now + max_hold.saturating_sub(TIMER_TICK),
            )),
        }
    }

    /// Whether the hold's time is up; if not, the task polled with `cx` is woken
    /// when it is.
    fn time_is_up(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer.as_mut().poll(cx).is_ready() || Instant::now() >= self.deadline
    }
}

/// Ends when the worker has run its ready tasks (or at its maintenance tick).
struct Round {
    over: AtomicBool,
    task: Mutex<Waker>,
}

impl Round {
    /// Starts a round for the task `cx` belongs to.
    fn start(cx: &Context<'_>) -> Arc<Self> {
        let round = Arc::new(Round {
            over: AtomicBool::new(false),
            task: Mutex::new(cx.waker().clone()),
        });
        let waker = Waker::from(Arc::clone(&round));
        // The first poll of `yield_now` hands our waker to the scheduler's
        // deferred list (outside a runtime it wakes it at once); dropping the
        // future afterwards does not take it back.
        let _ = pin!(tokio::task::yield_now()).poll(&mut Context::from_waker(&waker));
        round
    }

    fn is_over(&self) -> bool {
        self.over.load(Ordering::Acquire)
    }

    /// Makes sure the task polled with `cx` is the one woken.
    fn wake_with(&self, cx: &Context<'_>) {
        let mut task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if !task.will_wake(cx.waker()) {
            *task = cx.waker().clone();
        }
    }
}

impl Wake for Round {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.over.store(true, Ordering::Release);
        self.task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .wake_by_ref();
    }
}

/// The runtime's global queue, whose depth hints that woken tasks are waiting.
enum GlobalQueue {
    Runtime(RuntimeMetrics),
    /// Not on a runtime: nothing is ever held.
    None,
    /// A backlog that stays whatever runs, for tests.
    #[cfg(test)]
    Fixed(usize),
}

impl GlobalQueue {
    fn current() -> Self {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => GlobalQueue::Runtime(runtime.metrics()),
            Err(_) => GlobalQueue::None,
        }
    }

    /// Woken tasks waiting in the runtime's global queue.
    fn depth(&self) -> usize {
        match self {
            GlobalQueue::Runtime(metrics) => metrics.global_queue_depth(),
            GlobalQueue::None => 0,
            #[cfg(test)]
            GlobalQueue::Fixed(depth) => *depth,
        }
    }
}

impl<S> Coalesced<S> {
    pub(crate) fn new(inner: S) -> Self {
        Coalesced {
            inner,
            buf: Vec::new(),
            sent: 0,
            hold: None,
            last_small_write: None,
            queue: GlobalQueue::current(),
        }
    }

    fn buffered(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Whether the flush may go ahead. The first call starts the hold; the
    /// task is polled again when its round is over, and the hold is renewed
    /// while the runtime has a backlog, at most `renewals` times, and until
    /// [`MAX_HOLD`] has passed at most.
    fn hold_released(&mut self, cx: &mut Context<'_>, renewals: u32) -> bool {
        loop {
            let Some(hold) = &mut self.hold else {
                self.hold = Some(Hold::start(cx, renewals));
                continue;
            };
            if hold.time_is_up(cx) {
                return true;
            }
            if !hold.round.is_over() {
                hold.round.wake_with(cx);
                return false;
            }
            if hold.rounds_left == 0 || self.queue.depth() == 0 {
                return true;
            }
            hold.rounds_left -= 1;
            hold.round = Round::start(cx);
        }
    }
}

impl<S: AsyncWrite + Unpin> Coalesced<S> {
    /// Writes out everything buffered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf.clear();
        self.sent = 0;
        self.hold = None;
        if self.buf.capacity() > MAX_BUFFERED {
            self.buf.shrink_to(MAX_BUFFERED);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesced<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total: usize = slices.iter().map(|s| s.len()).sum();
        if this.buffered() + total > MAX_BUFFERED {
            ready!(this.poll_drain(cx))?;
        }
        if this.buffered() == 0 && total >= SMALL {
            this.last_small_write = None;
            return Pin::new(&mut this.inner).poll_write_vectored(cx, slices);
        }
        for slice in slices {
            this.buf.extend_from_slice(slice);
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buffered() > 0 {
            let small = this.buffered() < SMALL;
            let in_burst = this.last_small_write.is_some_and(|at| at.elapsed() < BURST);
            // Only a runtime with a backlog has other streams' frames on the way;
            // on a quiet one, holding would only delay this reply. A burst waits out
            // the backlog; the first write after a pause (maybe a reply to the write
            // that started a fan-out) waits one round at most.
            let renewals = if !small || this.queue.depth() == 0 {
                None
            } else if in_burst {
                Some(MAX_HOLD_ROUNDS)
            } else {
                Some(0)
            };
            if let Some(renewals) = renewals
                && !this.hold_released(cx, renewals)
            {
                return Poll::Pending;
            }
            ready!(this.poll_drain(cx))?;
            this.last_small_write = small.then(Instant::now);
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesced<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl Connected for Coalesced<TcpStream> {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Records every write that reaches the "socket".
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().writes.push(data.to_vec());
            Poll::Ready(Ok(data.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn small_writes_leave_in_one_write_on_flush() {
        let mut conn = Coalesced::new(Recorder::default());
        for frame in 0u8..50 {
            conn.write_all(&[frame; 100]).await.expect("write");
        }
        assert!(
            conn.inner.writes.is_empty(),
            "nothing written before the flush"
        );
        conn.flush().await.expect("flush");
        let expected: Vec<u8> = (0u8..50).flat_map(|f| [f; 100]).collect();
        assert_eq!(conn.inner.writes, vec![expected]);
        assert!(conn.hold.is_none());

        // A burst: the next flush is held, released when the runtime is idle.
        conn.write_all(b"again").await.expect("write");
        conn.flush().await.expect("flush");
        assert_eq!(conn.inner.writes.len(), 2);
        assert_eq!(conn.inner.writes[1], b"again");
    }

    #[tokio::test]
    async fn large_writes_go_straight_through_and_order_is_kept() {
        let mut conn = Coalesced::new(Recorder::default());
        let big = vec![7u8; SMALL];
        conn.write_all(&big).await.expect("write");
        assert_eq!(conn.inner.writes, vec![big.clone()], "no copy, no hold");

        conn.write_all(b"small").await.expect("write");
        conn.write_all(&big).await.expect("write");
        conn.flush().await.expect("flush");
        let mut tail = b"small".to_vec();
        tail.extend_from_slice(&big);
        assert_eq!(conn.inner.writes[1..].concat(), tail);
    }

    #[tokio::test]
    async fn buffer_is_bounded_and_shutdown_drains() {
        let mut conn = Coalesced::new(Recorder::default());
        let chunk = vec![1u8; SMALL - 1];
        for _ in 0..20 {
            conn.write_all(&chunk).await.expect("write");
            assert!(conn.buffered() <= MAX_BUFFERED);
        }
        assert!(
            !conn.inner.writes.is_empty(),
            "drained once the bound was reached"
        );
        conn.shutdown().await.expect("shutdown");
        assert_eq!(conn.buffered(), 0);
        assert_eq!(conn.inner.writes.concat().len(), chunk.len() * 20);
    }

    /// Tasks spawned from outside the (current-thread) test runtime wait in its
    /// global queue until the test yields.
    fn backlog_of(tasks: usize) -> Vec<tokio::task::JoinHandle<()>> {
        let runtime = tokio::runtime::Handle::current();
        std::thread::spawn(move || (0..tasks).map(|_| runtime.spawn(async {})).collect())
            .join()
            .expect("spawning thread")
    }

    #[tokio::test]
    async fn small_flushes_wait_while_the_runtime_has_a_backlog() {
        let mut conn = Coalesced::new(Recorder::default());
        let tasks = backlog_of(8);
        assert_eq!(conn.queue.depth(), 8);

        conn.write_all(b"frame").await.expect("write");
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            Pin::new(&mut conn).poll_flush(&mut cx).is_pending(),
            "held, although not in a burst, while woken tasks wait"
        );
        assert_eq!(
            conn.hold.as_ref().map(|h| h.rounds_left),
            Some(0),
            "for one round"
        );
        assert!(conn.inner.writes.is_empty());

        conn.flush().await.expect("flush");
        assert_eq!(conn.inner.writes, vec![b"frame".to_vec()]);
        for task in tasks {
            assert!(task.is_finished(), "the backlog ran before the flush");
        }
    }

    #[tokio::test]
    async fn without_a_backlog_nothing_is_held() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut conn = Coalesced::new(Recorder::default());
        for frame in [&b"first"[..], b"second", b"third"] {
            conn.write_all(frame).await.expect("write");
            assert!(
                Pin::new(&mut conn).poll_flush(&mut cx).is_ready(),
                "a burst on a quiet runtime goes out at once"
            );
        }
        assert_eq!(conn.inner.writes.len(), 3);
    }

    #[tokio::test]
    async fn only_small_flushes_within_a_burst_wait_out_the_backlog() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut conn = Coalesced::new(Recorder::default());
        let _tasks = backlog_of(8);
        let mut flush = |conn: &mut Coalesced<Recorder>| Pin::new(conn).poll_flush(&mut cx);

        conn.last_small_write = Some(Instant::now());
        conn.write_all(b"second").await.expect("write");
        assert!(flush(&mut conn).is_pending(), "a burst is held");
        assert_eq!(
            conn.hold.as_ref().map(|h| h.rounds_left),
            Some(MAX_HOLD_ROUNDS),
            "renewed while there is a backlog"
        );
        assert!(conn.inner.writes.is_empty());

        for _ in 0..SMALL / 512 {
            conn.write_all(&[2u8; 512]).await.expect("write");
        }
        assert!(flush(&mut conn).is_ready(), "a full buffer is not held");
        assert_eq!(conn.inner.writes.concat().len(), 6 + SMALL);

        conn.write_all(b"later").await.expect("write");
        assert!(flush(&mut conn).is_pending());
        assert_eq!(
            conn.hold.as_ref().map(|h| h.rounds_left),
            Some(0),
            "after a large write, no burst: one round"
        );
        conn.hold = None;
        conn.last_small_write = Some(Instant::now() - BURST);
        assert!(flush(&mut conn).is_pending());
        assert_eq!(
            conn.hold.as_ref().map(|h| h.rounds_left),
            Some(0),
            "the burst is over: one round"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_flush_goes_out_within_max_hold_while_rounds_remain() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut conn = Coalesced::new(Recorder::default());
        conn.queue = GlobalQueue::Fixed(8);
        // Off tokio's 1 ms timer ticks (the paused clock starts on one), as a real
        // hold mostly is.
        tokio::time::advance(MAX_HOLD / 10).await;
        let held_at = Instant::now();
        conn.last_small_write = Some(held_at);
        conn.write_all(b"frame").await.expect("write");
        assert!(Pin::new(&mut conn).poll_flush(&mut cx).is_pending());

        tokio::time::advance(MAX_HOLD / 2).await;
        assert!(
            Pin::new(&mut conn).poll_flush(&mut cx).is_pending(),
            "the backlog stays, so the hold is renewed"
        );
        assert!(conn.hold.as_ref().is_some_and(|h| h.rounds_left > 0));
        assert!(conn.inner.writes.is_empty());

        tokio::time::advance(MAX_HOLD / 2).await;
        assert!(Pin::new(&mut conn).poll_flush(&mut cx).is_ready());
        assert_eq!(conn.inner.writes, vec![b"frame".to_vec()]);
        assert!(
            held_at.elapsed() <= MAX_HOLD,
            "held {:?}",
            held_at.elapsed()
        );
    }

    /// Counts how often the task is woken.
    #[derive(Default)]
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_wakes_a_held_flush_within_max_hold_when_no_round_ends() {
        let mut conn = Coalesced::new(Recorder::default());
        conn.queue = GlobalQueue::Fixed(8);
        tokio::time::advance(MAX_HOLD / 10).await;
        conn.write_all(b"frame").await.expect("write");
        let held_at = Instant::now();
        let mut quiet = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut conn).poll_flush(&mut quiet).is_pending());
        // A round that never ends: a worker busy with other tasks.
        let endless = Arc::new(Round {
            over: AtomicBool::new(false),
            task: Mutex::new(Waker::noop().clone()),
        });
        conn.hold.as_mut().expect("held").round = endless;
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut conn).poll_flush(&mut cx).is_pending());

        tokio::time::advance(MAX_HOLD / 2).await;
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0, "not yet");
        tokio::time::advance(MAX_HOLD / 2).await;
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "woken by the timer");
        assert!(Pin::new(&mut conn).poll_flush(&mut cx).is_ready());
        assert_eq!(conn.inner.writes, vec![b"frame".to_vec()]);
        assert!(held_at.elapsed() <= MAX_HOLD);
    }
}
