//! Bundles executed at their timetag, on the fleet clock.
//!
//! A timetag is an NTP instant; Convoy reads it as fleet time (Unix-epoch nanoseconds, the
//! same scale as [`TimeNow::now_ns`]), so every bike fires a broadcast bundle at the same
//! fleet instant. One dedicated thread holds a bounded min-heap of pending jobs ordered by
//! (due time, arrival) and sleeps on a condition variable until the earliest is due; it
//! re-reads the fleet clock at every wake and never sleeps longer than [`MAX_NAP`], so a
//! clock correction by the sync layer is honoured. A thread with an exact timed wait (Linux
//! futex + hrtimer, timer slack 50 µs) keeps the firing error far below tokio's 1 ms timer
//! granularity; the job itself only queues requests without blocking. Jobs still pending at
//! shutdown are dropped and counted.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock::TimeNow;

/// Longest single wait, so a stepped fleet clock is noticed within this long.
pub const MAX_NAP: Duration = Duration::from_millis(20);

struct Pending<J> {
    due_ns: u64,
    seq: u64,
    job: J,
}

impl<J> PartialEq for Pending<J> {
    fn eq(&self, o: &Self) -> bool {
        (self.due_ns, self.seq) == (o.due_ns, o.seq)
    }
}
impl<J> Eq for Pending<J> {}
impl<J> PartialOrd for Pending<J> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<J> Ord for Pending<J> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.due_ns, self.seq).cmp(&(o.due_ns, o.seq))
    }
}

struct State<J> {
    heap: BinaryHeap<Reverse<Pending<J>>>,
    seq: u64,
    stop: bool,
}

struct Shared<J> {
    state: Mutex<State<J>>,
    cv: Condvar,
    capacity: usize,
}

impl<J> Shared<J> {
    fn lock(&self) -> MutexGuard<'_, State<J>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A timetag scheduler: jobs of type `J` handed to a runner at their due fleet time.
pub struct Scheduler<J> {
    shared: Arc<Shared<J>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl<J> std::fmt::Debug for Scheduler<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("pending", &self.shared.lock().heap.len())
            .field("capacity", &self.shared.capacity)
            .finish()
    }
}

impl<J: Send + 'static> Scheduler<J> {
    /// Starts the scheduler thread; `run(job, lateness_ns)` is called on it for every due
    /// job (lateness: how long after its due time it ran, 0 if on time).
    pub fn spawn<C, R>(clock: C, capacity: usize, run: R) -> std::io::Result<Self>
    where
        C: TimeNow + Send + 'static,
        R: Fn(J, u64) + Send + 'static,
    {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                heap: BinaryHeap::new(),
                seq: 0,
                stop: false,
            }),
            cv: Condvar::new(),
            capacity,
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("osc-timetag".into())
            .spawn(move || worker(&s, &clock, &run))?;
        Ok(Self {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `job` for fleet time `due_ns`; gives it back when `capacity` jobs wait already
    /// or the scheduler has stopped.
    pub fn schedule(&self, due_ns: u64, job: J) -> Result<(), J> {
        let mut st = self.shared.lock();
        if st.stop || st.heap.len() >= self.shared.capacity {
            return Err(job);
        }
        st.seq += 1;
        let seq = st.seq;
        let wake = st.heap.peek().is_none_or(|Reverse(p)| due_ns < p.due_ns);
        st.heap.push(Reverse(Pending { due_ns, seq, job }));
        drop(st);
        if wake {
            self.shared.cv.notify_one();
        }
        Ok(())
    }

    /// Jobs waiting.
    pub fn pending(&self) -> usize {
        self.shared.lock().heap.len()
    }

    /// Stops the thread and drops what is pending; returns how many jobs were dropped.
    pub fn stop(&self) -> usize {
        let dropped = {
            let mut st = self.shared.lock();
            st.stop = true;
            let n = st.heap.len();
            st.heap.clear();
            n
        };
        self.shared.cv.notify_one();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            if t.join().is_err() {
                tracing::error!("OSC timetag scheduler thread panicked");
            }
        }
        dropped
    }
}

impl<J> Drop for Scheduler<J> {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.cv.notify_one();
    }
}

fn worker<J, C: TimeNow, R: Fn(J, u64)>(shared: &Shared<J>, clock: &C, run: &R) {
    let mut st = shared.lock();
    loop {
        if st.stop {
            return;
        }
        let Some(Reverse(next)) = st.heap.peek() else {
            st = shared.cv.wait(st).unwrap_or_else(PoisonError::into_inner);
            continue;
        };
        let now = clock.now_ns();
        if next.due_ns <= now {
            if let Some(Reverse(p)) = st.heap.pop() {
                drop(st);
                run(p.job, now - p.due_ns);
                st = shared.lock();
            }
            continue;
        }
        let nap = Duration::from_nanos(next.due_ns - now).min(MAX_NAP);
        st = shared
            .cv
            .wait_timeout(st, nap)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn mono() -> u64 {
        crate::clock::mono_ns()
    }

    #[test]
    fn fires_in_due_order_and_is_bounded() {
        let (tx, rx) = mpsc::channel();
        let s = Scheduler::spawn(mono, 3, move |j: u32, _| {
            let _ = tx.send(j);
        })
        .unwrap();
        let now = mono();
        s.schedule(now + 30_000_000, 3).unwrap();
        s.schedule(now + 10_000_000, 1).unwrap();
        s.schedule(now + 10_000_000, 2).unwrap(); // same time: arrival order
        assert_eq!(s.schedule(now + 5_000_000, 9), Err(9), "full");
        let got: Vec<u32> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(2)).unwrap())
            .collect();
        assert_eq!(got, vec![1, 2, 3]);
        // Past due times run at once.
        s.schedule(0, 4).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(2)), Ok(4));
        s.schedule(now + 60_000_000_000, 5).unwrap();
        assert_eq!(s.stop(), 1);
        assert_eq!(s.schedule(now, 6), Err(6), "stopped");
    }

    #[test]
    fn follows_a_stepped_clock() {
        // The clock jumps 10 s ahead after the job is queued: the job fires within MAX_NAP
        // of the jump, not 10 s later.
        let jump = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let j = jump.clone();
        let clock = move || mono() + j.load(std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let s = Scheduler::spawn(clock.clone(), 4, move |(), _| {
            let _ = tx.send(());
        })
        .unwrap();
        s.schedule(clock() + 5_000_000_000, ()).unwrap();
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        jump.store(10_000_000_000, std::sync::atomic::Ordering::Relaxed);
        assert!(rx.recv_timeout(Duration::from_secs(2)).is_ok());
        s.stop();
    }
}
