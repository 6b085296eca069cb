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
//! Only into idle CPU, judged on two time scales:
//! - Over the last sampling interval ([`PRESSURE_INTERVAL`]): a worker starts no window while
//!   the kernel's CPU pressure (`/proc/pressure/cpu`, PSI: the share of wall time in which some
//!   thread waited for a CPU) exceeded [`PRESSURE_LIMIT`]. On a saturated node a poll can only take CPU from a
//!   thread that has work, and a wake-up saved there saves no halted vCPU: measured at
//!   pgbench -c 8 (2 vCPUs, ~78% pressure), polling gated by the runnable count alone cost
//!   hoopd ~2 µs of CPU per transaction and 5–10% of the throughput, while at -c 1 (5–6%
//!   pressure) it is what keeps the added latency low. Without PSI (a kernel built or booted
//!   without it) only the next check applies.
//! - Within a window: every few µs it checks how many threads the node has runnable
//!   (`/proc/loadavg`, this one included) and stops as soon as that exceeds the CPUs hoopd may
//!   use, so no thread waits behind a polling worker for longer than that. Without
//!   `/proc/loadavg` hoopd cannot tell, and does not poll.
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
static SKIPPED: AtomicU64 = AtomicU64::new(0);

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
    /// Windows not started because the node's CPUs were under pressure.
    pub skipped: u64,
}

pub fn stats() -> Stats {
    Stats {
        polled: Duration::from_nanos(POLLED_NS.load(Relaxed)),
        caught: CAUGHT.load(Relaxed),
        ran_out: RAN_OUT.load(Relaxed),
        cpu_busy: CPU_BUSY.load(Relaxed),
        skipped: SKIPPED.load(Relaxed),
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

/// Whether the node has CPU to spare: now (threads runnable node-wide ≤ the CPUs hoopd may
/// use) and lately (CPU pressure, where the kernel reports it).
pub struct IdleCpu {
    loadavg: File,
    cpus: u32,
    pressure: Option<Pressure>,
}

impl IdleCpu {
    /// Fails without `/proc/loadavg`; without `/proc/pressure/cpu` it judges by the runnable
    /// count alone, and says so.
    pub fn open() -> std::io::Result<Arc<Self>> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let loadavg = File::open("/proc/loadavg")?;
        let pressure = match Pressure::open(PRESSURE_PATH, PRESSURE_LIMIT) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::info!(
                    error = %e,
                    "no CPU pressure information ({PRESSURE_PATH}): busy polling is limited by \
                     the runnable thread count alone"
                );
                None
            }
        };
        Ok(Arc::new(Self {
            loadavg,
            cpus: u32::try_from(cpus).unwrap_or(u32::MAX),
            pressure,
        }))
    }

    /// Whether a poll window may start: the node's CPUs were not under pressure lately.
    pub fn lately(&self) -> bool {
        self.pressure.as_ref().is_none_or(|p| !p.contended())
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

/// Where the kernel reports CPU pressure (PSI).
pub const PRESSURE_PATH: &str = "/proc/pressure/cpu";

/// How often the CPU pressure is sampled (by whichever worker first finds it stale).
pub const PRESSURE_INTERVAL: Duration = Duration::from_millis(10);

/// Above this share of wall time with some thread waiting for a CPU, no window starts.
/// Measured on the 2-vCPU CI machine: 5–6% with one pgbench client through hoopd (polling
/// on), 62–82% with 2 to 8 clients, through hoopd, pgbouncer or direct.
pub const PRESSURE_LIMIT: f64 = 0.25;

/// The node's recent CPU pressure, from PSI's cumulative "some" stall time.
pub struct Pressure {
    file: File,
    limit: f64,
    /// The last sample: when, and the stall total then (µs).
    last: std::sync::Mutex<Option<(Instant, u64)>>,
    contended: std::sync::atomic::AtomicBool,
}

impl Pressure {
    /// Opens `path` (a PSI file) and takes the first sample; fails where the kernel keeps no
    /// pressure information (the file missing, or unreadable: PSI disabled at boot).
    pub fn open(path: &str, limit: f64) -> std::io::Result<Self> {
        let p = Self {
            file: File::open(path)?,
            limit,
            last: std::sync::Mutex::new(None),
            contended: std::sync::atomic::AtomicBool::new(false),
        };
        let total = p.read()?;
        *p.last.lock().unwrap() = Some((Instant::now(), total));
        Ok(p)
    }

    fn read(&self) -> std::io::Result<u64> {
        let mut b = [0u8; 256];
        let n = self.file.read_at(&mut b, 0)?;
        some_total(&b[..n]).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "no \"some ... total=\" line",
            )
        })
    }

    /// Whether the share of wall time with some thread waiting for a CPU, over the last
    /// sampling interval, exceeded the limit. Samples again when the last sample is older than
    /// [`PRESSURE_INTERVAL`] (one worker samples; the others read its result). A failed read
    /// counts as contended: no polling without knowing.
    pub fn contended(&self) -> bool {
        if let Ok(mut last) = self.last.try_lock() {
            let now = Instant::now();
            let due = last.is_none_or(|(at, _)| now.duration_since(at) >= PRESSURE_INTERVAL);
            if due {
                let busy = match (self.read(), *last) {
                    (Ok(total), Some((at, before))) => {
                        *last = Some((now, total));
                        stall_share(now.duration_since(at), total.saturating_sub(before))
                            > self.limit
                    }
                    (Ok(total), None) => {
                        *last = Some((now, total));
                        false
                    }
                    (Err(_), _) => {
                        *last = None;
                        true
                    }
                };
                self.contended.store(busy, Relaxed);
            }
        }
        self.contended.load(Relaxed)
    }
}

/// The share of `wall` that `stalled_us` µs of stall time is (0 for no wall time).
pub fn stall_share(wall: Duration, stalled_us: u64) -> f64 {
    let wall_us = wall.as_secs_f64() * 1e6;
    if wall_us <= 0.0 {
        0.0
    } else {
        stalled_us as f64 / wall_us
    }
}

/// A PSI file's cumulative "some" stall time in µs:
/// "some avg10=1.00 avg60=0.50 avg300=0.10 total=12345\nfull ..." → 12345.
pub fn some_total(psi: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(psi).ok()?;
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_ascii_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
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
        if !idle.lately() {
            // a saturated node: the next read wakes the worker as without polling
            SKIPPED.fetch_add(1, Relaxed);
            ran_out = false;
            continue;
        }
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

    #[test]
    fn cpu_pressure_from_psi() {
        let psi = b"some avg10=20.30 avg60=19.37 avg300=18.26 total=13725649037\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(some_total(psi), Some(13_725_649_037));
        for bad in [
            &b""[..],
            b"full avg10=0.00 avg60=0.00 avg300=0.00 total=5\n",
            b"some avg10=1.00 avg60=0.50 avg300=0.10\n",
            b"some avg10=1.00 total=x\n",
            b"\xff",
        ] {
            assert_eq!(some_total(bad), None, "{bad:?}");
        }
        let ms = Duration::from_millis;
        assert_eq!(stall_share(ms(10), 2_500), 0.25);
        assert_eq!(stall_share(ms(10), 0), 0.0);
        assert_eq!(stall_share(Duration::ZERO, 100), 0.0);
        // not a PSI file, or none at all: no gate (the caller polls by the runnable count)
        assert!(Pressure::open("/proc/loadavg", PRESSURE_LIMIT).is_err());
        assert!(Pressure::open("/nonexistent/pressure/cpu", PRESSURE_LIMIT).is_err());
    }

    /// Threads spinning on more than every CPU put the node under pressure, and the gate sees
    /// it within a sampling interval or two; a limit above 100% is never reached.
    #[test]
    fn spinning_threads_on_every_cpu_are_cpu_pressure() {
        if let Err(e) = std::fs::read(PRESSURE_PATH) {
            panic!("this machine's kernel keeps CPU pressure information: {e}");
        }
        let gate = Pressure::open(PRESSURE_PATH, PRESSURE_LIMIT).unwrap();
        let never = Pressure::open(PRESSURE_PATH, 1.01).unwrap();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinners: Vec<_> = (0..cpus * 3)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        let mut seen = vec![];
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            std::thread::sleep(PRESSURE_INTERVAL + Duration::from_millis(2));
            seen.push(gate.contended());
            assert!(!never.contended(), "a limit above 100% was exceeded");
            if seen.ends_with(&[true, true]) {
                break;
            }
        }
        stop.store(true, Relaxed);
        for s in spinners {
            s.join().unwrap();
        }
        assert!(
            seen.ends_with(&[true, true]),
            "{} spinning threads on {cpus} CPUs, samples: {seen:?}",
            cpus * 3
        );
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
                pressure: None,
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
