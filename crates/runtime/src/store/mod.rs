//! The prediction store: a SQLite file (the default, under the data dir) or a PostgreSQL
//! database, migrated at start. It holds the prediction log (one row per input, model, task and
//! parameters, with a count, written in batches by a background task so requests never wait for
//! it) and is what cache warming reads. The evidence corpus of the verification pipeline (its
//! documents and embedded passages) lives beside it.
//!
//! - [`Store::open`] connects (lazily: a database that is down at start degrades the log, it
//!   does not stop the server), migrates, and starts the writer when logging is on.
//! - [`PredictionLog::encoder`] is the request side: it never waits and never fails.
//! - [`warm_cache`] fills the result cache from the log after the server is ready.
//! - [`Store::shutdown`] writes what is queued, within a bounded wait.

mod counters;
mod db;
mod evidence;
mod log;
mod migrate;
mod warm;
mod writer;

pub use db::TopInput;
pub use evidence::{EvidenceDocument, EvidencePassage};
pub use log::{OpParams, PredictionLog};
pub use warm::{warm_cache, WarmStats};

use counters::{Counters, DropReason};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://PATH` (created when missing) or `postgres://user[:password]@host[:port]/db`.
    pub url: String,
    /// Write the prediction log.
    pub log_predictions: bool,
    /// Keep each input's text in the log (off: the hash only).
    pub log_inputs: bool,
    /// At start, compute this many of the most served logged inputs per model into the cache.
    pub warm_cache: usize,
    /// Flush the log when this many rows wait...
    pub flush_rows: usize,
    /// ...or this long after the first waiting row.
    pub flush_interval: Duration,
    /// Rows the queue holds; beyond it rows are dropped (and counted).
    pub queue_rows: usize,
    /// Longest wait for one database operation (connect, migrate, one write).
    pub timeout: Duration,
}

impl StoreConfig {
    pub fn new(url: impl Into<String>) -> Self {
        StoreConfig {
            url: url.into(),
            log_predictions: true,
            log_inputs: false,
            warm_cache: 0,
            flush_rows: 256,
            flush_interval: Duration::from_millis(200),
            queue_rows: 16_384,
            timeout: Duration::from_secs(5),
        }
    }

    /// The default database: `nlpd.db` in `data_dir`.
    pub fn sqlite_in(data_dir: &Path) -> Self {
        Self::new(sqlite_url(&data_dir.join("nlpd.db")))
    }

    /// The URL with any password hidden.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// `sqlite://PATH` for a file.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// A URL with the password (between `user:` and `@`) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Result<Self> {
        let u = url.trim_start();
        if u.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if u.starts_with("postgres://") || u.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL `{0}`: expected sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("database URL `{url}`: {source}")]
    BadUrl { url: String, source: sqlx::Error },
    #[error("cannot create the database directory {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub struct Store {
    cfg: StoreConfig,
    db: db::Db,
    log: Option<PredictionLog>,
    counters: Arc<Counters>,
    writer: Mutex<Option<JoinHandle<()>>>,
    stop: watch::Sender<bool>,
    warm: warm::WarmProgress,
}

impl Store {
    /// Connects and migrates. A SQLite database that cannot be opened or migrated is an error
    /// (a configuration problem); a PostgreSQL server that cannot be reached is not: the server
    /// runs, log rows are dropped and counted, and the migrations run when it answers again.
    pub async fn open(cfg: StoreConfig) -> Result<Arc<Self>> {
        let backend = Backend::of(&cfg.url)?;
        let db = db::Db::connect(backend, cfg.url.trim(), cfg.timeout)?;
        let counters = Arc::new(Counters::new());
        let mut migrated = db.ensure_migrated().await;
        if migrated.is_err() && backend == Backend::Sqlite {
            // Another process opening the same new file may be migrating it right now (SQLite
            // has no advisory lock for sqlx's migrator): once more, after it is done.
            tokio::time::sleep(Duration::from_millis(500)).await;
            migrated = db.ensure_migrated().await;
        }
        if let Err(e) = migrated {
            match backend {
                Backend::Sqlite => return Err(e),
                Backend::Postgres => {
                    tracing::warn!(
                        url = %cfg.redacted_url(), error = %e,
                        "store: PostgreSQL unavailable at start; prediction log rows are dropped until it answers"
                    );
                    counters.set_error(&e);
                }
            }
        }
        let (stop, stop_rx) = watch::channel(false);
        let (log, writer) = if cfg.log_predictions {
            let (tx, rx) = mpsc::channel(cfg.queue_rows.max(1));
            let handle = writer::spawn(
                db.clone(),
                rx,
                cfg.flush_rows,
                cfg.flush_interval,
                counters.clone(),
                stop_rx,
            );
            let log = PredictionLog {
                tx,
                log_inputs: cfg.log_inputs,
                counters: counters.clone(),
            };
            (Some(log), Some(handle))
        } else {
            (None, None)
        };
        tracing::info!(
            backend = backend.as_str(), url = %cfg.redacted_url(), migrated = db.is_migrated(),
            log_predictions = cfg.log_predictions, log_inputs = cfg.log_inputs,
            warm_cache = cfg.warm_cache, "store open"
        );
        Ok(Arc::new(Store {
            cfg,
            db,
            log,
            counters,
            writer: Mutex::new(writer),
            stop,
            warm: warm::WarmProgress::default(),
        }))
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// The prediction log (`None` when `--log-predictions=false`).
    pub fn log(&self) -> Option<&PredictionLog> {
        self.log.as_ref()
    }

    /// Rows waiting to be written: in the queue and in the writer's current batch.
    pub fn queue_depth(&self) -> usize {
        let queued = self
            .log
            .as_ref()
            .map(|l| l.tx.max_capacity() - l.tx.capacity())
            .unwrap_or(0);
        queued + self.counters.pending.load(Ordering::Relaxed) as usize
    }

    /// The most served logged inputs with stored text, `per_model` per model (what cache warming
    /// computes).
    pub async fn top_inputs(&self, per_model: usize) -> Result<Vec<TopInput>> {
        self.db.ensure_migrated().await?;
        self.db.top_inputs(per_model).await
    }

    /// Stores an evidence document and its passages, replacing one with the same id; the
    /// replaced document's `created_at` when there was one.
    pub async fn put_evidence(
        &self,
        doc: &EvidenceDocument,
        passages: &[EvidencePassage],
    ) -> Result<Option<i64>> {
        self.db.ensure_migrated().await?;
        self.db.put_evidence(doc, passages).await
    }

    /// An evidence document and its passages in order.
    pub async fn evidence_document(
        &self,
        id: &str,
    ) -> Result<Option<(EvidenceDocument, Vec<EvidencePassage>)>> {
        self.db.ensure_migrated().await?;
        self.db.evidence_document(id).await
    }

    /// Deletes an evidence document and its passages; its `created_at`, or `None` when there
    /// was none.
    pub async fn delete_evidence(&self, id: &str) -> Result<Option<i64>> {
        self.db.ensure_migrated().await?;
        self.db.delete_evidence(id).await
    }

    /// Every evidence passage, by document and position (what the vector index is built from).
    pub async fn evidence_passages(&self) -> Result<Vec<EvidencePassage>> {
        self.db.ensure_migrated().await?;
        self.db.evidence_passages().await
    }

    /// The evidence tables' fingerprint: changes whenever a document is added, replaced or
    /// deleted (by this replica or another on the same database).
    pub async fn evidence_fingerprint(&self) -> Result<(i64, i64)> {
        self.db.ensure_migrated().await?;
        self.db.evidence_fingerprint().await
    }

    /// Saves new embeddings of passages embedded again (another model or revision).
    pub async fn update_evidence_embeddings(&self, passages: &[EvidencePassage]) -> Result<()> {
        self.db.ensure_migrated().await?;
        self.db.update_evidence_embeddings(passages).await
    }

    /// Brings the gauges up to date: call before rendering metrics.
    pub fn refresh_metrics(&self) {
        metrics::gauge!(crate::metrics::STORE_QUEUE_DEPTH).set(self.queue_depth() as f64);
    }

    /// Writes what is queued and stops the writer, waiting at most `wait`; rows still unwritten
    /// then are dropped (counted as `shutdown`). Closes the database connections.
    pub async fn shutdown(&self, wait: Duration) {
        let _ = self.stop.send(true);
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut h) = handle {
            if tokio::time::timeout(wait, &mut h).await.is_err() {
                let left = self.queue_depth() as u64;
                h.abort();
                self.counters.dropped(DropReason::Shutdown, left);
                tracing::warn!(
                    rows = left,
                    "store: the prediction log was not flushed within {wait:?}; rows dropped"
                );
            }
        }
        let _ = tokio::time::timeout(wait, self.db.close()).await;
    }

    /// Statistics for `/v1/stats`.
    pub fn stats(&self) -> StoreStats {
        let c = &self.counters;
        StoreStats {
            backend: self.backend().as_str(),
            url: self.cfg.redacted_url(),
            migrated: self.db.is_migrated(),
            log_predictions: self.cfg.log_predictions,
            log_inputs: self.cfg.log_inputs,
            rows_written: c.written.load(Ordering::Relaxed),
            rows_dropped: c.dropped_total(),
            dropped: DroppedStats {
                queue_full: c.dropped_queue_full.load(Ordering::Relaxed),
                db_error: c.dropped_db_error.load(Ordering::Relaxed),
                shutdown: c.dropped_shutdown.load(Ordering::Relaxed),
            },
            queue_depth: self.queue_depth(),
            queue_capacity: if self.cfg.log_predictions {
                self.cfg.queue_rows.max(1)
            } else {
                0
            },
            flushes: c.flushes.load(Ordering::Relaxed),
            failed_flushes: c.failed_flushes.load(Ordering::Relaxed),
            last_error: c.last_error(),
            warm: self.warm.stats(self.cfg.warm_cache),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreStats {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// The database URL, password redacted.
    pub url: String,
    /// Whether the schema is in place (false while PostgreSQL has been unreachable since start).
    pub migrated: bool,
    pub log_predictions: bool,
    pub log_inputs: bool,
    /// Log rows (served inputs) written.
    pub rows_written: u64,
    /// Log rows dropped, all reasons.
    pub rows_dropped: u64,
    pub dropped: DroppedStats,
    /// Rows waiting to be written.
    pub queue_depth: usize,
    pub queue_capacity: usize,
    pub flushes: u64,
    pub failed_flushes: u64,
    /// The last database error, if any.
    pub last_error: Option<String>,
    pub warm: WarmStats,
}

#[derive(Debug, Clone, Serialize)]
pub struct DroppedStats {
    pub queue_full: u64,
    pub db_error: u64,
    pub shutdown: u64,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
