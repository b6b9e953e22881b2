//! The prediction log's counters (rows written, dropped and why), shared by the request side
//! that queues rows, the writer that flushes them and the stats.

use crate::metrics as m;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one warning about dropped rows per this interval (the counters keep the rest).
const WARN_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The queue was full (the database is slower than the traffic, or down).
    QueueFull,
    /// The write failed (database unreachable, timed out, or refused the statement).
    DbError,
    /// The server stopped before the rows were written.
    Shutdown,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::DbError => "db_error",
            DropReason::Shutdown => "shutdown",
        }
    }
}

/// The store's counters, shared by the request side, the writer and the stats.
pub(crate) struct Counters {
    pub written: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_db_error: AtomicU64,
    pub dropped_shutdown: AtomicU64,
    pub flushes: AtomicU64,
    pub failed_flushes: AtomicU64,
    /// Rows the writer took from the queue and has not written or dropped yet (they count as
    /// queued).
    pub pending: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    started: Instant,
    /// Milliseconds after `started` of the last warning (0: none yet).
    warned_at_ms: AtomicU64,
    /// Rows dropped since the last warning.
    unwarned: AtomicU64,
}

impl Counters {
    pub fn new() -> Self {
        // On /metrics from the start, so a "rows dropped" alert has a series to watch.
        metrics::counter!(m::STORE_ROWS_WRITTEN).increment(0);
        for reason in [
            DropReason::QueueFull,
            DropReason::DbError,
            DropReason::Shutdown,
        ] {
            metrics::counter!(m::STORE_DROPPED, "reason" => reason.as_str()).increment(0);
        }
        Counters {
            written: AtomicU64::new(0),
            dropped_queue_full: AtomicU64::new(0),
            dropped_db_error: AtomicU64::new(0),
            dropped_shutdown: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            failed_flushes: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            last_error: Mutex::new(None),
            started: Instant::now(),
            warned_at_ms: AtomicU64::new(0),
            unwarned: AtomicU64::new(0),
        }
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_error(&self, e: &super::StoreError) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }

    /// Counts `n` dropped rows and warns, at most once per [`WARN_EVERY`].
    pub fn dropped(&self, reason: DropReason, n: u64) {
        if n == 0 {
            return;
        }
        let c = match reason {
            DropReason::QueueFull => &self.dropped_queue_full,
            DropReason::DbError => &self.dropped_db_error,
            DropReason::Shutdown => &self.dropped_shutdown,
        };
        c.fetch_add(n, Ordering::Relaxed);
        metrics::counter!(m::STORE_DROPPED, "reason" => reason.as_str()).increment(n);
        self.unwarned.fetch_add(n, Ordering::Relaxed);
        let now = self.started.elapsed().as_millis() as u64 + 1;
        let last = self.warned_at_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < WARN_EVERY.as_millis() as u64 {
            return;
        }
        if self
            .warned_at_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            let rows = self.unwarned.swap(0, Ordering::Relaxed);
            tracing::warn!(
                rows,
                reason = reason.as_str(),
                last_error = self.last_error().as_deref().unwrap_or(""),
                "prediction log: rows dropped (requests are unaffected; next warning in 10 s at the earliest)"
            );
        }
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped_queue_full.load(Ordering::Relaxed)
            + self.dropped_db_error.load(Ordering::Relaxed)
            + self.dropped_shutdown.load(Ordering::Relaxed)
    }
}
