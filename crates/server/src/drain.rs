//! Graceful drain: what a replica does between the stop signal and its exit.
//!
//! 1. At the signal, [`Drain::start`]: `/health/ready` answers 503 `draining`, `nlpd_draining`
//!    is 1, and every response carries `Connection: close` so keep-alive clients (and load
//!    balancers' pooled connections) reconnect to another replica.
//! 2. The server keeps serving for `shutdown_delay`: the time a load balancer polling readiness,
//!    or Kubernetes' endpoints controller, needs to take the replica out of rotation.
//! 3. Then it stops accepting and finishes the requests in flight, for at most
//!    `shutdown_timeout`; what is still running then is cut off (and counted in the log).
//!
//! [`serve`](crate::serve) runs these steps; this type holds the state the routes read.

use nlpd_runtime::metrics as m;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
    in_flight: AtomicUsize,
}

impl Drain {
    pub fn new() -> Self {
        metrics::gauge!(m::DRAINING).set(0.0);
        metrics::gauge!(m::IN_FLIGHT).set(0.0);
        Drain::default()
    }

    /// Enters the draining state (idempotent).
    pub fn start(&self) {
        self.draining.store(true, Ordering::SeqCst);
        metrics::gauge!(m::DRAINING).set(1.0);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Requests being answered now (their handlers have not returned).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Counts one request in flight until the guard drops.
    pub fn enter(&self) -> InFlight<'_> {
        let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        metrics::gauge!(m::IN_FLIGHT).set(n as f64);
        InFlight(self)
    }
}

pub struct InFlight<'a>(&'a Drain);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let n = self.0.in_flight.fetch_sub(1, Ordering::SeqCst) - 1;
        metrics::gauge!(m::IN_FLIGHT).set(n as f64);
    }
}
