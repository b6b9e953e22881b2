//! The circuit breaker in front of Redis: `failures` consecutive failures open it; while open no
//! call goes to Redis; after `cooldown` one call at a time may probe (half-open); a success closes
//! it, a failure opens it for another cool-down. Each state change is reported once to the caller
//! (who logs it and sets the metric).

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The value of the `nlpd_redis_breaker_state` gauge.
    pub fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
    opened_total: u64,
}

#[derive(Debug)]
pub struct Breaker {
    failures: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
}

/// A call the breaker let through; report its outcome with [`Breaker::success`] or
/// [`Breaker::failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    probe: bool,
}

impl Breaker {
    pub fn new(failures: u32, cooldown: Duration) -> Self {
        Breaker {
            failures: failures.max(1),
            cooldown,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                opened_at: None,
                probe_in_flight: false,
                opened_total: 0,
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn state(&self) -> BreakerState {
        self.with(|i| i.state)
    }

    pub fn opened_total(&self) -> u64 {
        self.with(|i| i.opened_total)
    }

    /// May a call go to Redis now? Returns the permit and, when this call moved the breaker to
    /// half-open, that new state.
    pub fn allow(&self, now: Instant) -> (Option<Permit>, Option<BreakerState>) {
        self.with(|i| match i.state {
            BreakerState::Closed => (Some(Permit { probe: false }), None),
            BreakerState::Open => {
                let cooled = i
                    .opened_at
                    .is_none_or(|t| now.saturating_duration_since(t) >= self.cooldown);
                if cooled {
                    i.state = BreakerState::HalfOpen;
                    i.probe_in_flight = true;
                    (Some(Permit { probe: true }), Some(BreakerState::HalfOpen))
                } else {
                    (None, None)
                }
            }
            BreakerState::HalfOpen => {
                if i.probe_in_flight {
                    (None, None)
                } else {
                    i.probe_in_flight = true;
                    (Some(Permit { probe: true }), None)
                }
            }
        })
    }

    /// The call succeeded; returns the new state when it changed.
    pub fn success(&self, permit: Permit) -> Option<BreakerState> {
        self.with(|i| {
            i.consecutive_failures = 0;
            if permit.probe {
                i.probe_in_flight = false;
            }
            if i.state != BreakerState::Closed {
                i.state = BreakerState::Closed;
                i.opened_at = None;
                return Some(BreakerState::Closed);
            }
            None
        })
    }

    /// The call failed; returns the new state when it changed.
    pub fn failure(&self, permit: Permit, now: Instant) -> Option<BreakerState> {
        self.with(|i| {
            if permit.probe {
                i.probe_in_flight = false;
            }
            i.consecutive_failures = i.consecutive_failures.saturating_add(1);
            let open = match i.state {
                BreakerState::Closed => i.consecutive_failures >= self.failures,
                // A failed probe, or a failure of a call let through before the breaker opened.
                BreakerState::HalfOpen => permit.probe,
                BreakerState::Open => false,
            };
            if open {
                i.state = BreakerState::Open;
                i.opened_at = Some(now);
                i.opened_total += 1;
                return Some(BreakerState::Open);
            }
            None
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_probes_after_cooldown_and_closes() {
        let b = Breaker::new(3, Duration::from_secs(5));
        let t0 = Instant::now();
        for i in 0..2 {
            let (p, _) = b.allow(t0);
            assert_eq!(b.failure(p.unwrap(), t0), None, "failure {i}");
        }
        // A success resets the count.
        let (p, _) = b.allow(t0);
        assert_eq!(b.success(p.unwrap()), None);
        for _ in 0..2 {
            let (p, _) = b.allow(t0);
            b.failure(p.unwrap(), t0);
        }
        let (p, _) = b.allow(t0);
        assert_eq!(b.failure(p.unwrap(), t0), Some(BreakerState::Open));
        assert_eq!(b.allow(t0 + Duration::from_secs(1)), (None, None));
        // Cool-down over: one probe, the others wait.
        let later = t0 + Duration::from_secs(5);
        let (probe, change) = b.allow(later);
        assert_eq!(change, Some(BreakerState::HalfOpen));
        assert!(probe.is_some());
        assert_eq!(b.allow(later), (None, None));
        // A failed probe opens it again for a new cool-down.
        assert_eq!(b.failure(probe.unwrap(), later), Some(BreakerState::Open));
        assert_eq!(b.allow(later + Duration::from_secs(4)), (None, None));
        let (probe, _) = b.allow(later + Duration::from_secs(5));
        assert_eq!(b.success(probe.unwrap()), Some(BreakerState::Closed));
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.opened_total(), 2);
        assert!(b.allow(later).0.is_some());
    }

    #[test]
    fn a_late_failure_does_not_reopen_a_probing_breaker() {
        let b = Breaker::new(1, Duration::ZERO);
        let t = Instant::now();
        let (old, _) = b.allow(t);
        let (p, _) = b.allow(t);
        assert_eq!(b.failure(p.unwrap(), t), Some(BreakerState::Open));
        let (probe, _) = b.allow(t);
        assert!(probe.is_some());
        // The call that started while closed fails now: the probe decides, not it.
        assert_eq!(b.failure(old.unwrap(), t), None);
        assert_eq!(b.success(probe.unwrap()), Some(BreakerState::Closed));
    }
}
