//! The batched asynchronous writer of the prediction log: one task takes rows from the bounded
//! queue, flushes every `flush_rows` rows or `flush_interval` after the first waiting row,
//! merges repeats of one key (the database sees each key once per statement) and upserts them in
//! multi-row INSERT ... ON CONFLICT DO UPDATE statements. A failed write drops its rows with a
//! counter and a rate-limited warning; nothing here ever reaches a request.

use super::counters::{Counters, DropReason};
use super::db::{Db, DbRow, ROWS_PER_STATEMENT};
use super::log::LogRow;
use crate::metrics as m;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Starts the writer. It stops when `stop` turns true (after writing what is queued then) or
/// when every sender is gone.
pub(crate) fn spawn(
    db: Db,
    mut rx: mpsc::Receiver<LogRow>,
    flush_rows: usize,
    flush_interval: Duration,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let flush_rows = flush_rows.max(1);
    tokio::spawn(async move {
        let mut buf: Vec<LogRow> = Vec::with_capacity(flush_rows);
        let mut stopping = false;
        loop {
            if buf.is_empty() {
                tokio::select! {
                    n = rx.recv_many(&mut buf, flush_rows) => {
                        if n == 0 {
                            break;
                        }
                        counters.pending.store(buf.len() as u64, Ordering::Relaxed);
                    }
                    _ = stop.changed(), if !stopping => {
                        stopping = true;
                        rx.close();
                        continue;
                    }
                }
            }
            if !stopping {
                let deadline = tokio::time::Instant::now() + flush_interval;
                while buf.len() < flush_rows {
                    let room = flush_rows - buf.len();
                    tokio::select! {
                        n = rx.recv_many(&mut buf, room) => {
                            if n == 0 {
                                break;
                            }
                            counters.pending.store(buf.len() as u64, Ordering::Relaxed);
                        }
                        _ = tokio::time::sleep_until(deadline) => break,
                        _ = stop.changed() => {
                            stopping = true;
                            rx.close();
                            break;
                        }
                    }
                }
            }
            if stopping {
                while buf.len() < flush_rows {
                    match rx.try_recv() {
                        Ok(r) => buf.push(r),
                        Err(_) => break,
                    }
                }
            }
            metrics::gauge!(m::STORE_QUEUE_DEPTH).set(rx.len() as f64);
            flush(&db, &mut buf, &counters).await;
        }
        metrics::gauge!(m::STORE_QUEUE_DEPTH).set(0.0);
    })
}

/// Repeats of one key within a flush, merged into one row.
struct Merged<'a> {
    first: &'a LogRow,
    last: &'a LogRow,
    text: Option<&'a str>,
    pair: Option<&'a str>,
    latency_ms: Option<f64>,
    count: i64,
    created_at: i64,
    last_seen_at: i64,
}

/// A log row's upsert key: input hash, parameters hash, model, task.
type MergeKey<'a> = (&'a [u8; 32], &'a [u8; 32], &'a str, &'a str);

fn merge(rows: &[LogRow]) -> Vec<Merged<'_>> {
    let mut index: HashMap<MergeKey<'_>, usize> = HashMap::new();
    let mut out: Vec<Merged<'_>> = Vec::new();
    for r in rows {
        let k = (
            &r.input_hash,
            &r.meta.params_hash,
            r.meta.model.as_str(),
            r.meta.task,
        );
        match index.get(&k) {
            Some(&i) => {
                let m = &mut out[i];
                m.last = r;
                m.count += 1;
                m.text = m.text.or(r.text.as_deref());
                m.pair = m.pair.or(r.pair.as_deref());
                m.latency_ms = r.latency_ms.or(m.latency_ms);
                m.created_at = m.created_at.min(r.at_ms);
                m.last_seen_at = m.last_seen_at.max(r.at_ms);
            }
            None => {
                index.insert(k, out.len());
                out.push(Merged {
                    first: r,
                    last: r,
                    text: r.text.as_deref(),
                    pair: r.pair.as_deref(),
                    latency_ms: r.latency_ms,
                    count: 1,
                    created_at: r.at_ms,
                    last_seen_at: r.at_ms,
                });
            }
        }
    }
    out
}

/// Writes (or drops) every row of `buf` and empties it.
async fn flush(db: &Db, buf: &mut Vec<LogRow>, counters: &Counters) {
    if buf.is_empty() {
        return;
    }
    let t0 = Instant::now();
    counters.pending.store(buf.len() as u64, Ordering::Relaxed);
    let merged = merge(buf);
    let rows: Vec<DbRow<'_>> = merged
        .iter()
        .map(|m| DbRow {
            input_hash: &m.first.input_hash,
            model: &m.first.meta.model,
            task: m.first.meta.task,
            params_hash: &m.first.meta.params_hash,
            params: &m.last.meta.params,
            revision: &m.last.meta.revision,
            input_text: m.text,
            input_pair: m.pair,
            result: m.last.value.encode(),
            latency_ms: m.latency_ms,
            hit_count: m.count,
            created_at: m.created_at,
            last_seen_at: m.last_seen_at,
        })
        .collect();
    let mut ok = true;
    match db.ensure_migrated().await {
        Err(e) => {
            ok = false;
            counters.set_error(&e);
            counters.dropped(DropReason::DbError, buf.len() as u64);
        }
        Ok(()) => {
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let n: u64 = chunk.iter().map(|r| r.hit_count as u64).sum();
                match db.upsert(chunk).await {
                    Ok(()) => {
                        counters.written.fetch_add(n, Ordering::Relaxed);
                        metrics::counter!(m::STORE_ROWS_WRITTEN).increment(n);
                    }
                    Err(e) => {
                        ok = false;
                        counters.set_error(&e);
                        counters.dropped(DropReason::DbError, n);
                    }
                }
            }
        }
    }
    drop(rows);
    drop(merged);
    buf.clear();
    counters.pending.store(0, Ordering::Relaxed);
    counters.flushes.fetch_add(1, Ordering::Relaxed);
    if !ok {
        counters.failed_flushes.fetch_add(1, Ordering::Relaxed);
    }
    metrics::histogram!(m::STORE_FLUSH_DURATION, "result" => if ok { "ok" } else { "error" })
        .record(t0.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::super::log::Meta;
    use super::*;
    use crate::cache::{CachedValue, EncoderResult};
    use nlpd_engine::OpOutput;

    fn row(meta: &Arc<Meta>, input: u8, at_ms: i64, latency: Option<f64>) -> LogRow {
        LogRow {
            meta: meta.clone(),
            input_hash: [input; 32],
            text: (input == 1).then(|| "one".to_string()),
            pair: None,
            value: Arc::new(CachedValue::Encoder(EncoderResult {
                tokens: 1,
                output: OpOutput::Embedding(vec![at_ms as f32]),
                encoding: None,
            })),
            latency_ms: latency,
            at_ms,
        }
    }

    #[test]
    fn repeats_merge_into_one_counted_row() {
        let meta_for = |task: &'static str| {
            Arc::new(Meta {
                model: "m".into(),
                revision: "r".into(),
                task,
                params: "{}".into(),
                params_hash: [9; 32],
            })
        };
        let (meta, other_task) = (meta_for("embed"), meta_for("rerank"));
        let rows = vec![
            row(&meta, 1, 10, Some(5.0)),
            row(&meta, 2, 11, Some(6.0)),
            row(&meta, 1, 12, None),
            row(&other_task, 1, 13, None),
            row(&meta, 1, 14, None),
        ];
        let m = merge(&rows);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].count, 3);
        assert_eq!((m[0].created_at, m[0].last_seen_at), (10, 14));
        assert_eq!(
            m[0].latency_ms,
            Some(5.0),
            "a hit keeps the computed latency"
        );
        assert_eq!(m[0].text, Some("one"));
        assert_eq!(m[0].last.at_ms, 14);
        assert_eq!((m[1].count, m[2].count), (1, 1));
        assert_eq!(m[2].first.meta.task, "rerank");
    }

    #[test]
    fn drops_are_counted_by_reason() {
        let c = Counters::new();
        c.dropped(DropReason::QueueFull, 3);
        c.dropped(DropReason::DbError, 2);
        c.dropped(DropReason::DbError, 0);
        assert_eq!(c.dropped_queue_full.load(Ordering::Relaxed), 3);
        assert_eq!(c.dropped_db_error.load(Ordering::Relaxed), 2);
        assert_eq!(c.dropped_total(), 5);
    }
}
