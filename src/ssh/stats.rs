//! Process-wide counters of SSH work, for the benchmark and `-v`: how many round trips
//! (one per command channel), how many connections, and how long the process waited on
//! the hosts. `busy` is wall time during which at least one command or handshake was in
//! flight on any host; the rest of a run's wall time is orchestration (rendering,
//! deciding, waiting on nothing remote).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// What `snapshot` reports, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SshStats {
    /// Commands run, one session channel each (uploads and sudo probes included).
    pub round_trips: u64,
    pub connections: u64,
    /// Summed over hosts: time inside remote commands.
    pub remote_ms: u64,
    /// Summed over hosts: time connecting (TCP, handshake, authentication).
    pub connect_ms: u64,
    /// Wall time with at least one command or connect in flight.
    pub busy_ms: u64,
}

struct State {
    stats: SshStats,
    in_flight: usize,
    busy_since: Option<Instant>,
    busy: Duration,
}

/// One set of counters; the process uses [`GLOBAL`], tests their own.
pub(crate) struct Counters {
    state: Mutex<State>,
}

pub(crate) static GLOBAL: Counters = Counters::new();

impl Counters {
    const fn new() -> Counters {
        Counters {
            state: Mutex::new(State {
                stats: SshStats {
                    round_trips: 0,
                    connections: 0,
                    remote_ms: 0,
                    connect_ms: 0,
                    busy_ms: 0,
                },
                in_flight: 0,
                busy_since: None,
                busy: Duration::ZERO,
            }),
        }
    }

    /// Starts counting one remote wait, until the returned guard is dropped (so failed
    /// and timed-out waits count too).
    pub(crate) fn start(&'static self, kind: Kind) -> Wait {
        let now = Instant::now();
        if let Ok(mut st) = self.state.lock() {
            st.in_flight += 1;
            if st.in_flight == 1 {
                st.busy_since = Some(now);
            }
        }
        Wait {
            counters: self,
            kind,
            started: now,
        }
    }

    fn finish(&self, kind: Kind, started: Instant) {
        let now = Instant::now();
        let ms = now.duration_since(started).as_millis() as u64;
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        match kind {
            Kind::Command => {
                st.stats.round_trips += 1;
                st.stats.remote_ms += ms;
            }
            Kind::Connect => {
                st.stats.connections += 1;
                st.stats.connect_ms += ms;
            }
        }
        st.in_flight = st.in_flight.saturating_sub(1);
        if st.in_flight == 0
            && let Some(since) = st.busy_since.take()
        {
            st.busy += now.duration_since(since);
        }
    }

    /// The counters so far (busy time includes the waits still in flight).
    fn snapshot(&self) -> SshStats {
        let Ok(st) = self.state.lock() else {
            return SshStats::default();
        };
        let open = st.busy_since.map(|s| s.elapsed()).unwrap_or_default();
        SshStats {
            busy_ms: (st.busy + open).as_millis() as u64,
            ..st.stats
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Command,
    Connect,
}

/// One remote wait in progress.
pub(crate) struct Wait {
    counters: &'static Counters,
    kind: Kind,
    started: Instant,
}

impl Drop for Wait {
    fn drop(&mut self) {
        self.counters.finish(self.kind, self.started);
    }
}

/// This process's SSH work so far.
pub fn snapshot() -> SshStats {
    GLOBAL.snapshot()
}

impl SshStats {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &SshStats) -> SshStats {
        SshStats {
            round_trips: self.round_trips.saturating_sub(earlier.round_trips),
            connections: self.connections.saturating_sub(earlier.connections),
            remote_ms: self.remote_ms.saturating_sub(earlier.remote_ms),
            connect_ms: self.connect_ms.saturating_sub(earlier.connect_ms),
            busy_ms: self.busy_ms.saturating_sub(earlier.busy_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_waits_count_each_but_busy_wall_time_once() {
        static COUNTERS: Counters = Counters::new();
        let t0 = Instant::now();
        let a = COUNTERS.start(Kind::Command);
        let b = COUNTERS.start(Kind::Command);
        std::thread::sleep(Duration::from_millis(50));
        drop(a);
        drop(b);
        let t1 = Instant::now();
        std::thread::sleep(Duration::from_millis(50)); // idle: not busy
        let t2 = Instant::now();
        let c = COUNTERS.start(Kind::Connect);
        std::thread::sleep(Duration::from_millis(20));
        drop(c);
        let t3 = Instant::now();
        let s = COUNTERS.snapshot();
        assert_eq!((s.round_trips, s.connections), (2, 1), "{s:?}");
        assert!(s.remote_ms >= 100, "two 50 ms waits, summed: {s:?}");
        assert!(s.connect_ms >= 20, "{s:?}");
        // Bounds from the clock, not from the sleeps (a loaded machine oversleeps): the
        // overlapping pair counts once and the idle gap not at all, so busy time fits in
        // the two busy stretches; counting either twice or the gap would exceed them.
        let stretches = (t1 - t0 + (t3 - t2)).as_millis() as u64;
        assert!(s.busy_ms >= 69, "{s:?}");
        assert!(s.busy_ms <= stretches + 2, "{s:?} vs {stretches} ms");
    }

    #[test]
    fn since_is_the_difference() {
        let earlier = SshStats {
            round_trips: 3,
            connections: 1,
            remote_ms: 10,
            connect_ms: 5,
            busy_ms: 12,
        };
        let later = SshStats {
            round_trips: 10,
            connections: 1,
            remote_ms: 40,
            connect_ms: 5,
            busy_ms: 30,
        };
        let d = later.since(&earlier);
        assert_eq!(
            (d.round_trips, d.connections, d.remote_ms, d.busy_ms),
            (7, 0, 30, 18)
        );
    }
}
