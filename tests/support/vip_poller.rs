//! A client of the API through the VIP: `/readyz` every 100 ms from this machine, with the
//! real kubectl, while a test breaks or changes the control plane. Shared by the lab tests
//! that measure how long the API was unreachable.
#![allow(dead_code)] // each test binary uses part of it

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

pub struct VipPoller {
    started: Instant,
    /// (seconds since start, answered ready).
    samples: Arc<Mutex<Vec<(f64, bool)>>>,
    /// (seconds since start, what kubectl said) for each failed poll.
    failures: Arc<Mutex<Vec<(f64, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl VipPoller {
    /// Starts polling `https://VIP:8443/readyz` with the credentials of KUBECONFIG; a poll
    /// unanswered after 2 s fails (fault tests: how soon the VIP answers again).
    pub fn start(kubeconfig: PathBuf, vip: &str) -> VipPoller {
        VipPoller::start_waiting(kubeconfig, vip, 2)
    }

    /// Like `start`, but a poll waits up to 10 s for its answer, as a client would: for the
    /// tests that demand no failed poll at all, where an answer slowed by a busy test
    /// machine is not an outage (an error answer, a refused or cut connection still fails).
    pub fn start_patient(kubeconfig: PathBuf, vip: &str) -> VipPoller {
        VipPoller::start_waiting(kubeconfig, vip, 10)
    }

    fn start_waiting(kubeconfig: PathBuf, vip: &str, timeout_secs: u64) -> VipPoller {
        let started = Instant::now();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let server = format!("https://{vip}:8443");
        let (s, f, halt) = (samples.clone(), failures.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let out = Command::new(KUBECTL)
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args(["--server", &server])
                    .arg(format!("--request-timeout={timeout_secs}s"))
                    .args(["get", "--raw", "/readyz"])
                    .stdin(Stdio::null())
                    .output();
                let ok = out.as_ref().is_ok_and(|o| o.status.success());
                let at = sent.duration_since(started).as_secs_f64();
                s.lock().unwrap().push((at, ok));
                if !ok {
                    let said = match &out {
                        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                        Err(e) => e.to_string(),
                    };
                    f.lock().unwrap().push((at, said));
                }
                if let Some(rest) = Duration::from_millis(100).checked_sub(sent.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
        });
        VipPoller {
            started,
            samples,
            failures,
            stop,
            thread: Some(thread),
        }
    }

    /// Seconds since the poller started (the time base of its samples).
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Waits until the API answered for STABLE seconds in a row after the fault at FAULT
    /// (seconds since start); panics after LIMIT with the poll history.
    pub fn wait_recovered(&self, fault: f64, stable: f64, limit: f64) -> Gap {
        loop {
            let samples: Vec<(f64, bool)> = self
                .samples
                .lock()
                .unwrap()
                .iter()
                .copied()
                .filter(|(t, _)| *t >= fault)
                .collect();
            let last_failure = samples.iter().rev().find(|(_, ok)| !ok).map(|(t, _)| *t);
            let since = last_failure.unwrap_or(fault);
            let good_after = samples.iter().filter(|(t, ok)| *ok && *t > since).count();
            if self.now() - since >= stable && good_after >= 3 {
                let first_failure = samples.iter().find(|(_, ok)| !ok).map(|(t, _)| t - fault);
                let first_back = first_failure.and_then(|f| {
                    samples
                        .iter()
                        .find(|(t, ok)| *ok && *t - fault > f)
                        .map(|(t, _)| t - fault)
                });
                return Gap {
                    polls: samples.len(),
                    failed: samples.iter().filter(|(_, ok)| !ok).count(),
                    first_failure,
                    first_back,
                    last_failure: last_failure.map(|t| t - fault),
                };
            }
            let history: Vec<String> = samples
                .iter()
                .map(|(t, ok)| format!("{:.1}{}", t - fault, if *ok { "+" } else { "-" }))
                .collect();
            assert!(
                self.now() - fault < limit,
                "the API did not answer steadily through the VIP within {limit}s: {}",
                history.join(" ")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops polling: (polls, failed polls, longest time from a failed poll to the next good
    /// one, or to the last poll when none came).
    pub fn finish(mut self) -> (usize, usize, f64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let samples = self.samples.lock().unwrap().clone();
        longest_outage(&samples)
    }

    /// Each failed poll so far: "at 12.3s: what kubectl said", one per line.
    pub fn failures(&self) -> String {
        self.failures
            .lock()
            .unwrap()
            .iter()
            .map(|(t, said)| format!("at {t:.1}s: {said}\n"))
            .collect()
    }
}

fn longest_outage(samples: &[(f64, bool)]) -> (usize, usize, f64) {
    let failed = samples.iter().filter(|(_, ok)| !ok).count();
    let mut longest: f64 = 0.0;
    let mut down_since: Option<f64> = None;
    for (t, ok) in samples {
        match (ok, down_since) {
            (false, None) => down_since = Some(*t),
            (true, Some(since)) => {
                longest = longest.max(t - since);
                down_since = None;
            }
            _ => {}
        }
    }
    if let (Some(since), Some((last, _))) = (down_since, samples.last()) {
        longest = longest.max(last - since);
    }
    (samples.len(), failed, longest)
}

impl Drop for VipPoller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What a client polling the VIP saw after a fault (seconds after it).
#[derive(Debug)]
pub struct Gap {
    pub polls: usize,
    pub failed: usize,
    pub first_failure: Option<f64>,
    /// The first good answer after the first failure: the client-visible outage.
    pub first_back: Option<f64>,
    pub last_failure: Option<f64>,
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = |v: Option<f64>| v.map(|v| format!("{v:.1}s")).unwrap_or_else(|| "-".into());
        write!(
            f,
            "first failed poll at {}, answering again at {}, last failed poll at {}; {} of {} polls failed",
            s(self.first_failure),
            s(self.first_back),
            s(self.last_failure),
            self.failed,
            self.polls
        )
    }
}

#[test]
fn an_outage_is_measured_from_the_first_failed_poll_to_the_next_good_one() {
    let samples = [
        (0.0, true),
        (1.0, false),
        (1.5, false),
        (3.5, true),
        (4.0, false),
    ];
    let (polls, failed, longest) = longest_outage(&samples);
    assert_eq!((polls, failed), (5, 3));
    assert!((longest - 2.5).abs() < 1e-9, "{longest}");
}
