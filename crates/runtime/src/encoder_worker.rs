//! The dynamic batcher of one encoder model: items queue one by one, a dedicated thread owning the
//! model forms each batch when it is free (interactive lane first, bulk grouped by length, a
//! token budget and a size cap), drops items whose deadline passed or whose caller left, and runs
//! one forward pass for the whole batch.

use crate::config::BatchConfig;
use crate::error::{Result, RuntimeError};
use crate::metrics as m;
use crate::stats::{Stage, Stats};
use crate::timing::{RequestTiming, RunTimes};
use nlpd_engine::{Encoded, EncoderModel, EncoderOp, OpOutput, TextTokenizer};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Priority lane of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Single requests and small lists: served first.
    Interactive,
    /// Large lists: fill the remaining room, never starved.
    Bulk,
}

struct Job {
    seq: u64,
    enc: Encoded,
    op: EncoderOp,
    lane: Lane,
    task: &'static str,
    deadline: Instant,
    enqueued: Instant,
    /// The result, with the item's encoding handed back (callers need its offsets).
    reply: oneshot::Sender<Result<Done>>,
}

/// An item's result, when it was queued, and when the forward pass that ran it began and ended.
struct Done {
    enc: Encoded,
    out: OpOutput,
    enqueued: Instant,
    started: Instant,
    ended: Instant,
}

/// What the rest of the runtime knows of a loaded encoder (the model itself lives on its thread).
pub struct EncoderInfo {
    pub tokenizer: TextTokenizer,
    pub labels: Vec<String>,
    pub hidden_size: usize,
    pub head: nlpd_engine::HeadKind,
    pub family: nlpd_engine::Family,
    pub architecture: String,
    pub backend: &'static str,
    /// The kernel running the linear layers (its precision: [`nlpd_engine::Kernel::precision`]).
    pub kernel: nlpd_engine::Kernel,
}

/// A loaded encoder and its queue.
pub struct EncoderHandle {
    pub name: String,
    /// Hash of the weights file's path, size and mtime (and the token cap): part of cache keys.
    pub revision: String,
    pub info: EncoderInfo,
    tx: Mutex<Option<Sender<Job>>>,
    depth: Arc<AtomicUsize>,
    seq: AtomicU64,
    cfg: BatchConfig,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl EncoderHandle {
    pub fn spawn(
        name: &str,
        revision: String,
        model: EncoderModel,
        cfg: BatchConfig,
        stats: Arc<Stats>,
    ) -> Result<Arc<Self>> {
        let info = EncoderInfo {
            tokenizer: model.tokenizer().clone(),
            labels: model.labels().to_vec(),
            hidden_size: model.config().hidden_size,
            head: model.config().head,
            family: model.config().family,
            architecture: model.config().architecture.clone(),
            backend: model.backend_name(),
            kernel: model.kernel(),
        };
        let (tx, rx) = mpsc::channel();
        let depth = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            name: name.to_string(),
            model,
            rx,
            cfg: cfg.clone(),
            depth: depth.clone(),
            stats,
            batches: 0,
        };
        let thread = std::thread::Builder::new()
            .name(format!("nlpd-enc-{name}"))
            .spawn(move || worker.run())
            .map_err(|e| RuntimeError::Internal(format!("cannot start worker thread: {e}")))?;
        Ok(Arc::new(EncoderHandle {
            name: name.to_string(),
            revision,
            info,
            tx: Mutex::new(Some(tx)),
            depth,
            seq: AtomicU64::new(0),
            cfg,
            thread: Mutex::new(Some(thread)),
        }))
    }

    pub fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Queues every input of one request (all or none: a full queue refuses the whole request with
    /// 429) and waits for the results (each with its encoding back), in input order. The run's
    /// queue and inference times go to the current request's [`RequestTiming`], if any.
    pub async fn run(
        &self,
        encs: Vec<Encoded>,
        op: EncoderOp,
        task: &'static str,
        lane: Lane,
        deadline: Instant,
    ) -> Result<Vec<(Encoded, OpOutput)>> {
        let n = encs.len();
        if n > self.cfg.max_queue {
            return Err(RuntimeError::TooManyItems {
                items: n,
                max: self.cfg.max_queue,
            });
        }
        let before = self.depth.fetch_add(n, Ordering::SeqCst);
        if before + n > self.cfg.max_queue {
            self.depth.fetch_sub(n, Ordering::SeqCst);
            return Err(RuntimeError::Overloaded {
                model: self.name.clone(),
                depth: before,
                retry_after_s: 1,
            });
        }
        metrics::gauge!(m::QUEUE_DEPTH, "model" => self.name.clone()).set((before + n) as f64);
        let mut receivers = Vec::with_capacity(n);
        {
            let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
            let Some(tx) = guard.as_ref() else {
                self.depth.fetch_sub(n, Ordering::SeqCst);
                return Err(RuntimeError::ShuttingDown);
            };
            let now = Instant::now();
            for (i, enc) in encs.into_iter().enumerate() {
                let (reply, rx) = oneshot::channel();
                let job = Job {
                    seq: self.seq.fetch_add(1, Ordering::Relaxed),
                    enc,
                    op: op.clone(),
                    lane,
                    task,
                    deadline,
                    enqueued: now,
                    reply,
                };
                if tx.send(job).is_err() {
                    self.depth.fetch_sub(n - i, Ordering::SeqCst);
                    return Err(RuntimeError::ShuttingDown);
                }
                receivers.push(rx);
            }
        }
        let timing = RequestTiming::current();
        let mut times = RunTimes::default();
        let mut out = Vec::with_capacity(n);
        for rx in receivers {
            match rx.await {
                Ok(r) => {
                    let d = r?;
                    times.input(d.enqueued, d.started, d.ended);
                    out.push((d.enc, d.out));
                }
                Err(_) => {
                    return Err(RuntimeError::Internal(format!(
                        "worker of `{}` stopped",
                        self.name
                    )))
                }
            }
        }
        if let Some(t) = timing {
            times.record(&t);
        }
        Ok(out)
    }

    /// Stops accepting work; the thread finishes what is queued and exits.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

impl Drop for EncoderHandle {
    fn drop(&mut self) {
        self.close();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    name: String,
    model: EncoderModel,
    rx: Receiver<Job>,
    cfg: BatchConfig,
    depth: Arc<AtomicUsize>,
    stats: Arc<Stats>,
    batches: u64,
}

/// Every this many batches the bulk lane goes first, so a stream of interactive work cannot starve it.
const BULK_TURN: u64 = 4;

impl Worker {
    fn run(mut self) {
        let mut inter: VecDeque<Job> = VecDeque::new();
        let mut bulk: VecDeque<Job> = VecDeque::new();
        let push = |j: Job, inter: &mut VecDeque<Job>, bulk: &mut VecDeque<Job>| match j.lane {
            Lane::Interactive => inter.push_back(j),
            Lane::Bulk => bulk.push_back(j),
        };
        loop {
            if inter.is_empty() && bulk.is_empty() {
                match self.rx.recv() {
                    Ok(j) => push(j, &mut inter, &mut bulk),
                    Err(_) => return,
                }
            }
            while let Ok(j) = self.rx.try_recv() {
                push(j, &mut inter, &mut bulk);
            }
            if !self.cfg.max_wait.is_zero() && inter.len() + bulk.len() < self.cfg.max_batch_size {
                let until = Instant::now() + self.cfg.max_wait;
                while inter.len() + bulk.len() < self.cfg.max_batch_size {
                    let left = until.saturating_duration_since(Instant::now());
                    match self.rx.recv_timeout(left) {
                        Ok(j) => push(j, &mut inter, &mut bulk),
                        Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                            break
                        }
                    }
                }
            }
            self.drop_dead(&mut inter);
            self.drop_dead(&mut bulk);
            let batch = self.form_batch(&mut inter, &mut bulk);
            if !batch.is_empty() {
                self.execute(batch);
            }
        }
    }

    /// Removes items whose deadline passed (answering 504) or whose caller is gone.
    fn drop_dead(&self, q: &mut VecDeque<Job>) {
        let now = Instant::now();
        let before = q.len();
        let mut kept = VecDeque::with_capacity(q.len());
        for j in q.drain(..) {
            if j.reply.is_closed() {
                continue;
            }
            if j.deadline <= now {
                let _ = j.reply.send(Err(RuntimeError::DeadlineExceeded));
                continue;
            }
            kept.push_back(j);
        }
        let dropped = before - kept.len();
        if dropped > 0 {
            self.depth.fetch_sub(dropped, Ordering::SeqCst);
            metrics::counter!(m::DROPPED, "model" => self.name.clone()).increment(dropped as u64);
        }
        *q = kept;
    }

    fn fits(&self, count: usize, max_len: usize) -> bool {
        count <= self.cfg.max_batch_size && count * max_len <= self.cfg.max_batch_tokens
    }

    fn form_batch(&mut self, inter: &mut VecDeque<Job>, bulk: &mut VecDeque<Job>) -> Vec<Job> {
        self.batches += 1;
        let mut batch: Vec<Job> = Vec::new();
        let mut max_len = 0;
        let bulk_first = self.batches.is_multiple_of(BULK_TURN) && !bulk.is_empty();
        if !bulk_first {
            while let Some(j) = inter.front() {
                let l = max_len.max(j.enc.len());
                if !batch.is_empty() && !self.fits(batch.len() + 1, l) {
                    break;
                }
                max_len = l;
                batch.push(inter.pop_front().expect("front exists"));
            }
        }
        if !bulk.is_empty() && (batch.is_empty() || self.fits(batch.len() + 1, max_len)) {
            self.take_bulk(bulk, &mut batch, &mut max_len);
        }
        if bulk_first {
            while let Some(j) = inter.front() {
                let l = max_len.max(j.enc.len());
                if !self.fits(batch.len() + 1, l) {
                    break;
                }
                max_len = l;
                batch.push(inter.pop_front().expect("front exists"));
            }
        }
        batch
    }

    /// Takes bulk items of similar length around the oldest one (which always goes).
    fn take_bulk(&self, bulk: &mut VecDeque<Job>, batch: &mut Vec<Job>, max_len: &mut usize) {
        let window_len = (self.cfg.max_batch_size * 4).min(bulk.len());
        let mut window: Vec<Job> = bulk.drain(..window_len).collect();
        let oldest_seq = window[0].seq;
        window.sort_by_key(|j| (j.enc.len(), j.seq));
        let pivot = window.iter().position(|j| j.seq == oldest_seq).unwrap_or(0);
        let mut take = vec![false; window.len()];
        let (mut lo, mut hi) = (pivot as isize, pivot);
        let mut count = batch.len();
        // The pivot first, then whichever neighbour is closer in length.
        loop {
            let cand = if lo == pivot as isize && !take[pivot] {
                Some(pivot)
            } else {
                let left = (lo > 0).then(|| (lo - 1) as usize);
                let right = (hi + 1 < window.len()).then_some(hi + 1);
                match (left, right) {
                    (Some(l), Some(r)) => {
                        let p = window[pivot].enc.len();
                        if p - window[l].enc.len() <= window[r].enc.len() - p {
                            Some(l)
                        } else {
                            Some(r)
                        }
                    }
                    (Some(l), None) => Some(l),
                    (None, Some(r)) => Some(r),
                    (None, None) => None,
                }
            };
            let Some(c) = cand else { break };
            let l = (*max_len).max(window[c].enc.len());
            if count > 0 && !self.fits(count + 1, l) {
                break;
            }
            take[c] = true;
            count += 1;
            *max_len = l;
            if c < pivot {
                lo = c as isize;
            } else if c > pivot {
                hi = c;
            }
        }
        let mut rest: Vec<Job> = Vec::new();
        for (j, t) in window.into_iter().zip(take) {
            if t {
                batch.push(j);
            } else {
                rest.push(j);
            }
        }
        rest.sort_by_key(|j| j.seq);
        for j in rest.into_iter().rev() {
            bulk.push_front(j);
        }
    }

    fn execute(&self, batch: Vec<Job>) {
        let start = Instant::now();
        let reply = |j: Job, out: Result<OpOutput>, ended: Instant| {
            let _ = j.reply.send(out.map(|out| Done {
                enqueued: j.enqueued,
                started: start,
                ended,
                enc: j.enc,
                out,
            }));
        };
        let tokens = batch.iter().map(|j| j.enc.len()).max().unwrap_or(0) * batch.len();
        for j in &batch {
            let waited = start.duration_since(j.enqueued);
            m::stage(m::QUEUE_DURATION, &self.name, waited);
            self.stats.stage(j.task, &self.name, Stage::Queue, waited);
        }
        let items: Vec<(&Encoded, &EncoderOp)> = batch.iter().map(|j| (&j.enc, &j.op)).collect();
        let result = self.model.run_batch(&items);
        let ended = Instant::now();
        let took = ended.duration_since(start);
        m::stage(m::INFERENCE_DURATION, &self.name, took);
        metrics::histogram!(m::BATCH_SIZE, "model" => self.name.clone()).record(batch.len() as f64);
        metrics::histogram!(m::BATCH_TOKENS, "model" => self.name.clone()).record(tokens as f64);
        self.stats.batch(&self.name, batch.len(), tokens);
        let n = batch.len();
        match result {
            Ok(outs) => {
                for (j, o) in batch.into_iter().zip(outs) {
                    self.stats.stage(j.task, &self.name, Stage::Inference, took);
                    reply(j, Ok(o), ended);
                }
            }
            Err(_) if n > 1 => {
                // One item's failure must not fail its neighbours: run each alone.
                for j in batch {
                    let r = self
                        .model
                        .run_batch(&[(&j.enc, &j.op)])
                        .map_err(RuntimeError::from)
                        .and_then(|v| {
                            v.into_iter().next().ok_or_else(|| {
                                RuntimeError::Internal("no output for an item".into())
                            })
                        });
                    reply(j, r, Instant::now());
                }
            }
            Err(e) => {
                if let Some(j) = batch.into_iter().next() {
                    let _ = j.reply.send(Err(e.into()));
                }
            }
        }
        let left = self.depth.fetch_sub(n, Ordering::SeqCst).saturating_sub(n);
        metrics::gauge!(m::QUEUE_DEPTH, "model" => self.name.clone()).set(left as f64);
    }
}

/// Default deadline when a request sets none.
pub fn deadline_in(d: Duration) -> Instant {
    Instant::now() + d
}
