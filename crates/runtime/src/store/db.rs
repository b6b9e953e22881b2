//! The database behind the store: a SQLite or PostgreSQL connection pool, the migrations, the
//! bulk upsert of the prediction log and the query cache warming reads. Both backends run the
//! same SQL but for the placeholders (`?N` / `$N`); the schemas differ only in column types.

use super::migrate;
use super::{Backend, Result, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub(super) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// One merged prediction log row, ready to write.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DbRow<'a> {
    pub input_hash: &'a [u8],
    pub model: &'a str,
    pub task: &'a str,
    pub params_hash: &'a [u8],
    pub params: &'a str,
    pub revision: &'a str,
    pub input_text: Option<&'a str>,
    pub input_pair: Option<&'a str>,
    pub result: Vec<u8>,
    pub latency_ms: Option<f64>,
    pub hit_count: i64,
    pub created_at: i64,
    pub last_seen_at: i64,
}

/// One input cache warming recomputes: the most frequent first, per model.
#[derive(Debug, Clone, PartialEq)]
pub struct TopInput {
    pub model: String,
    /// The operation as JSON ([`super::OpParams`]).
    pub params: String,
    pub text: String,
    pub pair: Option<String>,
    /// Times served, over every task that asked the same of the model.
    pub hits: i64,
}

const COLUMNS: [&str; 13] = [
    "input_hash",
    "model",
    "task",
    "params_hash",
    "params",
    "revision",
    "input_text",
    "input_pair",
    "result",
    "latency_ms",
    "hit_count",
    "created_at",
    "last_seen_at",
];

/// Rows per INSERT statement: 13 parameters each stays far below SQLite's (32766) and
/// PostgreSQL's (65535) limits.
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

/// A repeat adds its count, refreshes the last-seen time, the result and its revision; the
/// latency and input text are kept when the repeat has none (a hit; `--log-inputs` off).
const ON_CONFLICT: &str = " ON CONFLICT (input_hash, model, task, params_hash) DO UPDATE SET \
    hit_count = predictions.hit_count + excluded.hit_count, \
    last_seen_at = excluded.last_seen_at, \
    params = excluded.params, \
    revision = excluded.revision, \
    result = excluded.result, \
    latency_ms = COALESCE(excluded.latency_ms, predictions.latency_ms), \
    input_text = COALESCE(excluded.input_text, predictions.input_text), \
    input_pair = COALESCE(excluded.input_pair, predictions.input_pair)";

/// The N most served inputs with stored text per model, same input and parameters summed over
/// tasks (they share one cache entry).
const TOP_INPUTS: &str = "SELECT model, params, input_text, input_pair, hits FROM ( \
      SELECT model, params, input_text, input_pair, hits, \
             ROW_NUMBER() OVER (PARTITION BY model ORDER BY hits DESC, last_seen DESC) AS pos \
      FROM ( \
        SELECT model, MAX(params) AS params, MAX(input_text) AS input_text, \
               MAX(input_pair) AS input_pair, CAST(SUM(hit_count) AS BIGINT) AS hits, \
               MAX(last_seen_at) AS last_seen \
        FROM predictions WHERE input_text IS NOT NULL \
        GROUP BY model, params_hash, input_hash \
      ) AS grouped \
    ) AS ranked WHERE pos <= {N} ORDER BY model, pos";

fn upsert_sql(backend: Backend, rows: usize) -> String {
    let mut s = format!("INSERT INTO predictions ({}) VALUES ", COLUMNS.join(", "));
    let mut n = 0;
    for r in 0..rows {
        s.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..COLUMNS.len() {
            n += 1;
            if c > 0 {
                s.push_str(", ");
            }
            s.push_str(&placeholder(backend, n));
        }
        s.push(')');
    }
    s.push_str(ON_CONFLICT);
    s
}

pub(super) fn placeholder(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => format!("?{n}"),
        Backend::Postgres => format!("${n}"),
    }
}

/// Binds every column of every row, in [`COLUMNS`] order.
macro_rules! bind_rows {
    ($query:expr, $rows:expr) => {{
        let mut q = $query;
        for r in $rows {
            q = q
                .bind(r.input_hash)
                .bind(r.model)
                .bind(r.task)
                .bind(r.params_hash)
                .bind(r.params)
                .bind(r.revision)
                .bind(r.input_text)
                .bind(r.input_pair)
                .bind(r.result.as_slice())
                .bind(r.latency_ms)
                .bind(r.hit_count)
                .bind(r.created_at)
                .bind(r.last_seen_at);
        }
        q
    }};
}

#[derive(Clone)]
pub(crate) struct Db {
    backend: Backend,
    pub(super) pool: Pool,
    timeout: Duration,
    migrated: Arc<AtomicBool>,
    migrating: Arc<tokio::sync::Mutex<()>>,
}

impl Db {
    /// A pool that connects on first use: a database that is down at start does not stop the
    /// server (PostgreSQL), it only makes writes fail until it is back. A SQLite file's directory
    /// is created when missing.
    pub fn connect(backend: Backend, url: &str, timeout: Duration) -> Result<Self> {
        let bad = |source| StoreError::BadUrl {
            url: super::redact_url(url),
            source,
        };
        let pool = match backend {
            Backend::Sqlite => {
                let opts = SqliteConnectOptions::from_str(url)
                    .map_err(bad)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(timeout);
                let path = opts.get_filename();
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    if !dir.exists() && path.to_str() != Some(":memory:") {
                        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                            path: dir.to_path_buf(),
                            source,
                        })?;
                    }
                }
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(4)
                        .acquire_timeout(timeout)
                        .connect_lazy_with(opts),
                )
            }
            Backend::Postgres => {
                let opts = PgConnectOptions::from_str(url)
                    .map_err(bad)?
                    .application_name("nlpd");
                Pool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(4)
                        .acquire_timeout(timeout)
                        .connect_lazy_with(opts),
                )
            }
        };
        Ok(Db {
            backend,
            pool,
            timeout,
            migrated: Arc::new(AtomicBool::new(false)),
            migrating: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn is_migrated(&self) -> bool {
        self.migrated.load(Ordering::Acquire)
    }

    /// Runs `f` under the store's operation timeout.
    pub(super) async fn timed<T>(&self, f: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    /// Applies the migrations once (later calls return at once); retried by the next call after
    /// a failure.
    pub async fn ensure_migrated(&self) -> Result<()> {
        if self.is_migrated() {
            return Ok(());
        }
        let _guard = self.migrating.lock().await;
        if self.is_migrated() {
            return Ok(());
        }
        self.timed(async {
            let m = migrate::migrator(self.backend).await?;
            match &self.pool {
                Pool::Sqlite(p) => m.run(p).await?,
                Pool::Postgres(p) => m.run(p).await?,
            }
            Ok(())
        })
        .await?;
        self.migrated.store(true, Ordering::Release);
        Ok(())
    }

    /// Upserts rows (at most [`ROWS_PER_STATEMENT`], each key at most once) in one statement.
    pub async fn upsert(&self, rows: &[DbRow<'_>]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let sql = upsert_sql(self.backend, rows.len());
        self.timed(async {
            // Not prepared for reuse: the statement's text changes with the number of rows.
            match &self.pool {
                Pool::Sqlite(p) => {
                    bind_rows!(sqlx::query(&sql).persistent(false), rows)
                        .execute(p)
                        .await?;
                }
                Pool::Postgres(p) => {
                    bind_rows!(sqlx::query(&sql).persistent(false), rows)
                        .execute(p)
                        .await?;
                }
            }
            Ok(())
        })
        .await
    }

    /// The `per_model` most served inputs with stored text of every model, most served first.
    pub async fn top_inputs(&self, per_model: usize) -> Result<Vec<TopInput>> {
        let sql = TOP_INPUTS.replace("{N}", &placeholder(self.backend, 1));
        let n = per_model.min(i64::MAX as usize) as i64;
        self.timed(async {
            let rows = match &self.pool {
                Pool::Sqlite(p) => sqlx::query(&sql)
                    .bind(n)
                    .fetch_all(p)
                    .await?
                    .iter()
                    .map(top_input)
                    .collect::<std::result::Result<Vec<_>, _>>()?,
                Pool::Postgres(p) => sqlx::query(&sql)
                    .bind(n)
                    .fetch_all(p)
                    .await?
                    .iter()
                    .map(top_input)
                    .collect::<std::result::Result<Vec<_>, _>>()?,
            };
            Ok(rows)
        })
        .await
    }

    /// Closes every connection (waits for ones in use).
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

fn top_input<R: Row>(row: &R) -> std::result::Result<TopInput, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(TopInput {
        model: row.try_get(0)?,
        params: row.try_get(1)?,
        text: row.try_get(2)?,
        pair: row.try_get(3)?,
        hits: row.try_get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_sql_numbers_every_parameter() {
        let s = upsert_sql(Backend::Postgres, 2);
        assert!(s.contains("($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13), ($14,"));
        assert!(s.contains("$26)"));
        assert!(!s.contains("$27"));
        let s = upsert_sql(Backend::Sqlite, 1);
        assert!(s.contains("(?1, ?2,") && s.contains("?13)") && !s.contains("?14"));
        assert!(s.contains("ON CONFLICT (input_hash, model, task, params_hash)"));
    }
}
