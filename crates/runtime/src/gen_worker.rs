//! The worker of one generative model: a thread owning the model, one generation at a time from a
//! bounded queue, text streamed back as it is produced; a caller that goes away stops its generation.

use crate::error::{Result, RuntimeError};
use crate::metrics as m;
use crate::stats::{Stage, Stats};
use crate::timing::RequestTiming;
use nlpd_engine::generate::{
    ChatMessage, FinishReason, GenModel, GenerateOptions, Generation, JudgePrompt, NliJudge,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc as tmpsc, oneshot};

/// The prompt of a generation.
#[derive(Debug, Clone)]
pub enum GenInput {
    /// Chat messages, rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
    /// Raw text, tokenized as it is (completions).
    Text(String),
}

/// Streamed events of one generation.
#[derive(Debug)]
pub enum GenEvent {
    /// The prompt is tokenized: its length.
    Started {
        prompt_tokens: usize,
    },
    Text(String),
    Done(Generation),
    Failed(RuntimeError),
}

enum Job {
    Generate {
        input: GenInput,
        opts: GenerateOptions,
        task: &'static str,
        deadline: Instant,
        enqueued: Instant,
        events: tmpsc::UnboundedSender<GenEvent>,
        /// The record of the request (queue, tokenize, inference), filled before `Started`.
        timing: Option<Arc<RequestTiming>>,
    },
    Logits {
        input: GenInput,
        reply: oneshot::Sender<Result<Vec<f32>>>,
    },
    /// NLI by the generative judge: entailment / neutral / contradiction scores per pair.
    Nli {
        pairs: Vec<(String, String)>,
        deadline: Instant,
        enqueued: Instant,
        reply: oneshot::Sender<Result<Vec<[f32; 3]>>>,
        timing: Option<Arc<RequestTiming>>,
    },
}

pub struct GeneratorHandle {
    pub name: String,
    /// Hash of the weights file's path, size and mtime: part of cache keys.
    pub revision: String,
    pub architecture: String,
    pub context_length: usize,
    tx: Mutex<Option<Sender<Job>>>,
    depth: Arc<AtomicUsize>,
    max_queue: usize,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl GeneratorHandle {
    pub fn spawn(
        name: &str,
        revision: String,
        model: GenModel,
        max_queue: usize,
        stats: Arc<Stats>,
    ) -> Result<Arc<Self>> {
        let (tx, rx) = mpsc::channel();
        let depth = Arc::new(AtomicUsize::new(0));
        let architecture = model.architecture().to_string();
        let context_length = model.context_length();
        let worker_depth = depth.clone();
        let worker_name = name.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("nlpd-gen-{name}"))
            .spawn(move || run(worker_name, model, rx, worker_depth, stats))
            .map_err(|e| RuntimeError::Internal(format!("cannot start worker thread: {e}")))?;
        Ok(Arc::new(GeneratorHandle {
            name: name.to_string(),
            revision,
            architecture,
            context_length,
            tx: Mutex::new(Some(tx)),
            depth,
            max_queue,
            thread: Mutex::new(Some(thread)),
        }))
    }

    pub fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    fn send(&self, job: Job) -> Result<()> {
        let before = self.depth.fetch_add(1, Ordering::SeqCst);
        if before >= self.max_queue {
            self.depth.fetch_sub(1, Ordering::SeqCst);
            return Err(RuntimeError::Overloaded {
                model: self.name.clone(),
                depth: before,
                retry_after_s: 2,
            });
        }
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref().map(|tx| tx.send(job).is_ok()) {
            Some(true) => Ok(()),
            _ => {
                self.depth.fetch_sub(1, Ordering::SeqCst);
                Err(RuntimeError::ShuttingDown)
            }
        }
    }

    /// Starts a generation; events arrive on the returned channel (dropping it cancels). The
    /// current request's [`RequestTiming`], if any, gets the queue wait and the tokenize time
    /// before `Started` is sent, and the inference time before `Done`.
    pub fn generate(
        &self,
        input: GenInput,
        opts: GenerateOptions,
        task: &'static str,
        deadline: Instant,
    ) -> Result<tmpsc::UnboundedReceiver<GenEvent>> {
        let (events, rx) = tmpsc::unbounded_channel();
        self.send(Job::Generate {
            input,
            opts,
            task,
            deadline,
            enqueued: Instant::now(),
            events,
            timing: RequestTiming::current(),
        })?;
        Ok(rx)
    }

    /// The next-token logits after `input` (one forward pass).
    pub async fn next_token_logits(&self, input: GenInput) -> Result<Vec<f32>> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Logits { input, reply })?;
        rx.await
            .map_err(|_| RuntimeError::Internal(format!("worker of `{}` stopped", self.name)))?
    }

    /// Judges premise / hypothesis pairs (batched passes, in order; see `NliJudge::scores_batch`):
    /// probabilities of entailment, neutral and contradiction per pair.
    pub async fn nli(
        &self,
        pairs: Vec<(String, String)>,
        deadline: Instant,
    ) -> Result<Vec<[f32; 3]>> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Nli {
            pairs,
            deadline,
            enqueued: Instant::now(),
            reply,
            timing: RequestTiming::current(),
        })?;
        rx.await
            .map_err(|_| RuntimeError::Internal(format!("worker of `{}` stopped", self.name)))?
    }

    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

impl Drop for GeneratorHandle {
    fn drop(&mut self) {
        self.close();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

fn prompt_ids(model: &GenModel, input: &GenInput) -> Result<Vec<u32>> {
    let text = match input {
        GenInput::Chat(messages) => model.render_chat(messages)?,
        GenInput::Text(t) => t.clone(),
    };
    Ok(model.encode(&text)?)
}

/// Scores each pair with the model's judge (made on first use), stopping at the deadline.
fn judge_pairs(
    model: &mut GenModel,
    judge: &mut Option<NliJudge>,
    pairs: &[(String, String)],
    deadline: Instant,
) -> Result<Vec<[f32; 3]>> {
    if judge.is_none() {
        *judge = Some(NliJudge::new(model, JudgePrompt::TrueFalse)?);
    }
    let Some(j) = judge.as_mut() else {
        return Err(RuntimeError::Internal("no judge".into()));
    };
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(p, h)| (p.as_str(), h.as_str()))
        .collect();
    let out = j.scores_batch(model, &refs, &mut || Instant::now() < deadline)?;
    if out.len() < pairs.len() {
        return Err(RuntimeError::DeadlineExceeded);
    }
    Ok(out)
}

fn run(
    name: String,
    mut model: GenModel,
    rx: Receiver<Job>,
    depth: Arc<AtomicUsize>,
    stats: Arc<Stats>,
) {
    let mut judge: Option<NliJudge> = None;
    while let Ok(job) = rx.recv() {
        match job {
            Job::Nli {
                pairs,
                deadline,
                enqueued,
                reply,
                timing,
            } => {
                let start = Instant::now();
                if let Some(t) = &timing {
                    t.add_queue(start.duration_since(enqueued));
                }
                stats.stage("nli", &name, Stage::Queue, start.duration_since(enqueued));
                m::stage(m::QUEUE_DURATION, &name, start.duration_since(enqueued));
                let result = if reply.is_closed() {
                    metrics::counter!(m::DROPPED, "model" => name.clone()).increment(1);
                    Err(RuntimeError::DeadlineExceeded)
                } else {
                    judge_pairs(&mut model, &mut judge, &pairs, deadline)
                };
                let took = start.elapsed();
                stats.stage("nli", &name, Stage::Inference, took);
                m::stage(m::INFERENCE_DURATION, &name, took);
                if let Some(t) = &timing {
                    // The judge tokenizes its prompts inside its passes: all of it is inference.
                    t.add_inference(took);
                }
                let _ = reply.send(result);
            }
            Job::Logits { input, reply } => {
                let r =
                    prompt_ids(&model, &input).and_then(|ids| Ok(model.next_token_logits(&ids)?));
                let _ = reply.send(r);
            }
            Job::Generate {
                input,
                opts,
                task,
                deadline,
                enqueued,
                events,
                timing,
            } => {
                let start = Instant::now();
                if let Some(t) = &timing {
                    t.add_queue(start.duration_since(enqueued));
                }
                stats.stage(task, &name, Stage::Queue, start.duration_since(enqueued));
                m::stage(m::QUEUE_DURATION, &name, start.duration_since(enqueued));
                if events.is_closed() {
                    metrics::counter!(m::DROPPED, "model" => name.clone()).increment(1);
                } else if start >= deadline {
                    metrics::counter!(m::DROPPED, "model" => name.clone()).increment(1);
                    let _ = events.send(GenEvent::Failed(RuntimeError::DeadlineExceeded));
                } else {
                    let ids = prompt_ids(&model, &input);
                    let tokenized = Instant::now();
                    if let Some(t) = &timing {
                        t.add_tokenize(tokenized.duration_since(start));
                    }
                    let result = ids.and_then(|ids| {
                        let _ = events.send(GenEvent::Started {
                            prompt_tokens: ids.len(),
                        });
                        let mut on_text = |piece: &str| {
                            Instant::now() < deadline
                                && events.send(GenEvent::Text(piece.to_string())).is_ok()
                        };
                        Ok(model.generate(&ids, &opts, &mut on_text)?)
                    });
                    let took = start.elapsed();
                    stats.stage(task, &name, Stage::Inference, took);
                    m::stage(m::INFERENCE_DURATION, &name, took);
                    if let Some(t) = &timing {
                        t.add_inference(tokenized.elapsed());
                    }
                    let _ = events.send(match result {
                        Ok(g)
                            if g.finish_reason == FinishReason::Cancelled
                                && Instant::now() >= deadline =>
                        {
                            GenEvent::Failed(RuntimeError::DeadlineExceeded)
                        }
                        Ok(g) => GenEvent::Done(g),
                        Err(e) => GenEvent::Failed(e),
                    });
                }
            }
        }
        depth.fetch_sub(1, Ordering::SeqCst);
    }
}
