//! Busy polling: a connection worker that has just read from a socket keeps polling its sockets
//! for a short window before it sleeps — but only into idle CPU.
//!
//! Why: a proxy adds two wake-ups to every round trip (the client's message wakes hoopd, the
//! server's answer wakes it again), and on a virtual machine a wake-up is expensive: an idle
//! vCPU halts, and the thread parked there runs only once the host has resumed the vCPU.
//! Measured on this project's CI machine (2 vCPUs, cpuidle haltpoll with guest polling off):
//! ~26 µs between a wake-up and the woken thread running, for hoopd, pgbouncer and pgbench
//! alike. A worker still polling when the next message arrives takes it without that delay:
//! pgbench -c 1 through hoopd went from +65 to +30 µs over direct (simple protocol) and from
//! +80 to +16 µs (prepared).
//!
//! Only into idle CPU: every few µs of polling it checks how many threads the node has runnable
//! (`/proc/loadavg`, this one included) and stops as soon as that exceeds the CPUs hoopd may
//! use, so on a busy node (pgbench -c 8 here) no thread waits behind a polling worker for
//! longer than that. Without `/proc/loadavg` hoopd cannot tell, and does not poll.
//!
//! How long: the window adapts as the kernel's haltpoll cpuidle governor adapts its poll time.
//! When a window runs out and the worker's sleep then ends within the configured maximum, a
//! longer window would have caught the message: it doubles (from [`GROW_START`], up to the
//! maximum). When the sleep outlasts the maximum, polling could not have helped: it halves
//! (to none below [`GROW_START`]). So where reads come further apart than the maximum (the
//! answers of a server a network round trip away, ~1 ms to Azure) the window stays short
//! instead of being spent on every wait, while a chatty local client keeps it long.
//!
//! The mechanism: reads on this worker's sessions bump a thread-local counter
//! ([`note_activity`], from `Stream::poll_read` and the `tcp` passthrough's reads); one task
//! per worker waits for it, then yields in a loop — each yield makes the single-threaded
//! runtime poll its sockets without blocking (`epoll_wait` with a zero timeout) and run
//! whatever became ready — until the window passes with no new read.

use std::{
    cell::{Cell, RefCell},
    fs::File,
    future::poll_fn,
    os::unix::fs::FileExt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    task::{Poll, Waker},
    time::{Duration, Instant},
};

/// The smallest window worth polling (a window halved below it becomes none).
pub const GROW_START: Duration = Duration::from_micros(25);

/// How often a poll looks at the node's load: a read of `/proc/loadavg` costs about a µs, a
/// round of the runtime's socket poll half that.
const LOAD_CHECK: Duration = Duration::from_micros(5);

thread_local! {
    static ACTIVITY: Cell<u64> = const { Cell::new(0) };
    /// The worker's poller while it sleeps waiting for activity.
    static PARKED: RefCell<Option<Waker>> = const { RefCell::new(None) };
    /// When the read that woke the poller arrived (the poller itself runs later, after the
    /// session that read has done its work).
    static WOKEN_AT: Cell<Option<Instant>> = const { Cell::new(None) };
}

static POLLED_NS: AtomicU64 = AtomicU64::new(0);
static CAUGHT: AtomicU64 = AtomicU64::new(0);
static RAN_OUT: AtomicU64 = AtomicU64::new(0);
static CPU_BUSY: AtomicU64 = AtomicU64::new(0);

/// What the node's workers' polling did, since start (for the metrics endpoint).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Time spent polling.
    pub polled: Duration,
    /// Times a polling worker found new data without having slept: each a wake-up saved.
    pub caught: u64,
    /// Polls that ended because the window passed with no read.
    pub ran_out: u64,
    /// Polls that ended because a thread was waiting for a CPU.
    pub cpu_busy: u64,
}

pub fn stats() -> Stats {
    Stats {
        polled: Duration::from_nanos(POLLED_NS.load(Relaxed)),
        caught: CAUGHT.load(Relaxed),
        ran_out: RAN_OUT.load(Relaxed),
        cpu_busy: CPU_BUSY.load(Relaxed),
    }
}

/// A read on this thread's sessions returned data.
#[inline]
pub fn note_activity() {
    ACTIVITY.with(|a| a.set(a.get().wrapping_add(1)));
    PARKED.with(|p| {
        if let Some(w) = p.borrow_mut().take() {
            WOKEN_AT.set(Some(Instant::now()));
            w.wake();
        }
    });
}

fn activity() -> u64 {
    ACTIVITY.with(Cell::get)
}

/// The adaptive poll window (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    max: Duration,
    cur: Duration,
}

impl Window {
    pub fn new(max: Duration) -> Self {
        Self {
            max,
            cur: GROW_START.min(max),
        }
    }

    pub fn current(&self) -> Duration {
        self.cur
    }

    /// The worker slept for `slept` after its window ran out with no new read.
    pub fn after_sleep(&mut self, slept: Duration) {
        if slept < self.max {
            self.cur = (self.cur * 2).max(GROW_START).min(self.max);
        } else {
            self.cur /= 2;
            if self.cur < GROW_START {
                self.cur = Duration::ZERO;
            }
        }
    }
}

/// Whether the node has CPU to spare: threads runnable node-wide ≤ the CPUs hoopd may use.
pub struct IdleCpu {
    loadavg: File,
    cpus: u32,
}

impl IdleCpu {
    pub fn open() -> std::io::Result<Arc<Self>> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Arc::new(Self {
            loadavg: File::open("/proc/loadavg")?,
            cpus: u32::try_from(cpus).unwrap_or(u32::MAX),
        }))
    }

    /// False also when `/proc/loadavg` cannot be read: no polling without knowing.
    pub fn now(&self) -> bool {
        let mut b = [0u8; 128];
        let Ok(n) = self.loadavg.read_at(&mut b, 0) else {
            return false;
        };
        runnable(&b[..n]).is_some_and(|r| r <= self.cpus)
    }
}

/// `/proc/loadavg`'s runnable count: "0.52 0.58 0.59 3/467 12345" → 3.
pub fn runnable(loadavg: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(loadavg).ok()?;
    let field = text.split_ascii_whitespace().nth(3)?;
    field.split_once('/')?.0.parse().ok()
}

/// The worker's poller: runs for the worker's lifetime (spawned on its runtime).
pub async fn run(max: Duration, idle: Arc<IdleCpu>) {
    let mut window = Window::new(max);
    let mut seen = activity();
    let mut ran_out = false;
    loop {
        let slept = Instant::now();
        poll_fn(|cx| {
            if activity() != seen {
                Poll::Ready(())
            } else {
                PARKED.with(|p| *p.borrow_mut() = Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
        let woken = WOKEN_AT.take().unwrap_or_else(Instant::now);
        if ran_out {
            window.after_sleep(woken.saturating_duration_since(slept));
        }
        seen = activity();
        let start = Instant::now();
        let (mut last, mut checked) = (start, start);
        ran_out = loop {
            if last.elapsed() >= window.current() {
                break true;
            }
            tokio::task::yield_now().await;
            let now = activity();
            if now != seen {
                (seen, last) = (now, Instant::now());
                CAUGHT.fetch_add(1, Relaxed);
            } else if checked.elapsed() >= LOAD_CHECK {
                checked = Instant::now();
                if !idle.now() {
                    break false;
                }
            }
        };
        let polled = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        POLLED_NS.fetch_add(polled, Relaxed);
        if ran_out { &RAN_OUT } else { &CPU_BUSY }.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_micros(200);

    #[test]
    fn the_window_grows_on_short_sleeps_and_shrinks_on_long_ones() {
        let mut w = Window::new(MAX);
        assert_eq!(w.current(), GROW_START);
        let short = Duration::from_micros(60);
        let mut seen = vec![w.current()];
        for _ in 0..5 {
            w.after_sleep(short);
            seen.push(w.current());
        }
        let us = |v: u64| Duration::from_micros(v);
        assert_eq!(seen, [us(25), us(50), us(100), us(200), us(200), us(200)]);
        let long = Duration::from_millis(1);
        let mut shrunk = vec![];
        for _ in 0..5 {
            w.after_sleep(long);
            shrunk.push(w.current());
        }
        assert_eq!(shrunk, [us(100), us(50), us(25), us(0), us(0)]);
        // from none, the next short sleep starts it again
        w.after_sleep(short);
        assert_eq!(w.current(), GROW_START);
        // a sleep of exactly the maximum could not have been caught: shrink
        w.after_sleep(MAX);
        assert_eq!(w.current(), Duration::ZERO);
    }

    #[test]
    fn a_maximum_below_the_start_caps_the_window() {
        let max = Duration::from_micros(10);
        let mut w = Window::new(max);
        assert_eq!(w.current(), max);
        w.after_sleep(Duration::from_micros(5));
        assert_eq!(w.current(), max);
        w.after_sleep(Duration::from_micros(50));
        assert_eq!(w.current(), Duration::ZERO);
    }

    #[test]
    fn runnable_threads_from_loadavg() {
        assert_eq!(runnable(b"0.52 0.58 0.59 3/467 12345\n"), Some(3));
        assert_eq!(runnable(b"1.91 1.26 1.17 12/106 15068"), Some(12));
        for bad in [
            &b""[..],
            b"0.52 0.58 0.59",
            b"0.52 0.58 0.59 x/467 1",
            b"a b c 3 4",
            b"\xff",
        ] {
            assert_eq!(runnable(bad), None, "{bad:?}");
        }
        let idle = IdleCpu::open().expect("this machine has /proc/loadavg");
        let mut b = [0u8; 128];
        let n = idle.loadavg.read_at(&mut b, 0).unwrap();
        let r = runnable(&b[..n]).expect("the kernel's loadavg parses");
        assert!(r >= 1, "this thread is running: {r}");
    }

    /// The poller stops polling once the window passes with no read, and starts again on the
    /// next one: counted by how often the runtime polls it (its yields).
    #[test]
    fn the_poller_sleeps_when_traffic_stops() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // a node with no CPU to spare would never poll: this test needs the polling, so
            // it pretends the CPUs are plentiful
            let idle = Arc::new(IdleCpu {
                loadavg: File::open("/proc/loadavg").unwrap(),
                cpus: u32::MAX,
            });
            let polls = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let counted = polls.clone();
            let mut poller = Box::pin(run(Duration::from_millis(2), idle));
            let counting = poll_fn(move |cx| {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                poller.as_mut().poll(cx)
            });
            let task = tokio::spawn(counting);
            let count = || polls.load(std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let asleep = count();
            assert!(asleep <= 2, "polled {asleep} times with no traffic");
            let before = stats();
            // traffic: the window (25 µs at first) is polled through, then it sleeps again
            note_activity();
            tokio::time::sleep(Duration::from_millis(20)).await;
            let after = count();
            assert!(
                after > asleep + 1,
                "traffic started no polling: {asleep} → {after}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(count(), after, "still polling 20 ms after the last read");
            let d = stats();
            assert_eq!(d.ran_out, before.ran_out + 1, "{before:?} → {d:?}");
            assert_eq!((d.caught, d.cpu_busy), (before.caught, before.cpu_busy));
            assert!(d.polled >= before.polled + GROW_START, "{before:?} → {d:?}");
            task.abort();
        });
    }
}
