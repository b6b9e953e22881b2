//! `nlpd profile`: one encoder model over a corpus, in this process through the engine (no
//! server), with the time split by stage (load, tokenize, batch assembly, embeddings, attention,
//! feed-forward, pooling and heads, postprocessing), the peak resident memory and the allocations.

mod report;

use super::bench::scenario::DEFAULT_CORPUS;
use super::bench::sys;
use super::{load_encoder, model_path, EngineArgs};
use crate::alloc;
use anyhow::{bail, Context, Result};
use nlpd_engine::profile::{self as probes, Stage};
use nlpd_engine::{
    entities_of, Aggregation, EncoderModel, EncoderOp, OpOutput, TextInput, TokenPredictions,
};
use report::{Memory, Report, StageTime};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const EXAMPLES: &str = "\
Examples:
  # The pack's embedding model over the built-in corpus of 1,024 sentences:
  nlpd profile

  # Entity extraction over your own texts, batches of 8, JSON:
  nlpd profile --model rampart --corpus texts.txt --batch 8 --json

  # Compare the fast encoder with candle's, int8 and bf16 (the header names the kernel):
  nlpd profile --backend candle
  nlpd profile --quantize int8
  nlpd profile --quantize bf16

What is measured: wall-clock time of each stage, in this process. `load` reads the model
directory and prepares the weights; `tokenize` encodes every input; then the inputs, sorted by
length as the server's batcher groups them, run in batches of --batch: `batch` pads each batch
into tensors, `encoder` is the forward pass, split into `embeddings`, `attention` (Q/K/V and
output projections, attention itself, residual and LayerNorm, all layers), `feed_forward`
(up/down projections, activation, residual and LayerNorm) and `encoder other` (checks, thread
hand-off, padding the output); `pooling_head` pools and runs the task head; `postprocess` turns
logits into results (softmax, normalization; entity aggregation for entities).
When the fast encoder runs a batch as groups of sequences on several threads at once, each
group's per-stage thread times are scaled to the section's wall time, so stages add up to the
time waited, not to CPU time. `unattributed` is the rest of the total (the command's own loop).

Memory: resident set (VmRSS) before and after loading, and the peak (VmHWM, the kernel's
high-water mark) at the end. Allocations: heap allocations and requested bytes during load and
during the run, counted by nlpd's global allocator only while profiling.

The probes are off in every other command and in the server (one relaxed atomic load per probe;
see docs/TOOLS.md for the measured cost).";

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Pooled sentence embeddings.
    Embed,
    /// Sequence classification (a model with a classification head).
    Classify,
    /// Token classification and entity aggregation (a model with a token head).
    Entities,
}

#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// Model directory or pack name [default: all-MiniLM-L6-v2].
    #[arg(long, env = "NLPD_PROFILE_MODEL")]
    pub model: Option<String>,
    /// What to run [default: what the model's head does: entities for a token head, classify
    /// for a classification head, else embed].
    #[arg(long, env = "NLPD_PROFILE_TASK", value_enum)]
    pub task: Option<Task>,
    /// Texts, one per line [default: the built-in corpus of 1,024 real sentences].
    #[arg(long, env = "NLPD_PROFILE_CORPUS")]
    pub corpus: Option<PathBuf>,
    /// Only the first N texts of the corpus.
    #[arg(long, env = "NLPD_PROFILE_LIMIT", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Inputs per forward pass.
    #[arg(long, env = "NLPD_PROFILE_BATCH", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch: u64,
    /// Print one JSON document instead of the table.
    #[arg(long, env = "NLPD_PROFILE_JSON")]
    pub json: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

fn corpus(path: Option<&Path>, limit: Option<u64>) -> Result<Vec<String>> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read --corpus {}", p.display()))?,
        None => DEFAULT_CORPUS.to_string(),
    };
    let mut lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if lines.is_empty() {
        bail!(
            "--corpus {}: no non-empty line",
            path.map(|p| p.display().to_string()).unwrap_or_default()
        );
    }
    if let Some(n) = limit {
        lines.truncate(n as usize);
    }
    Ok(lines)
}

/// The task a model's head does by default.
fn default_task(model: &EncoderModel) -> Task {
    if model.check_op(&EncoderOp::Tokens).is_ok() {
        Task::Entities
    } else if model.check_op(&EncoderOp::Classify).is_ok() {
        Task::Classify
    } else {
        Task::Embed
    }
}

fn op_of(task: Task) -> EncoderOp {
    match task {
        Task::Embed => EncoderOp::Embed {
            normalize: false,
            dimensions: None,
        },
        Task::Classify => EncoderOp::Classify,
        Task::Entities => EncoderOp::Tokens,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn run(args: Args, models_dir: &Path) -> Result<usize> {
    let texts = corpus(args.corpus.as_deref(), args.limit)?;
    let path = model_path(args.model.as_deref(), "embed", models_dir)?;
    let rss_before = sys::status_bytes(None, "VmRSS");

    // Everything from here to the end of the run is timed.
    probes::set_enabled(true);
    let _ = probes::take();
    alloc::set_counting(true);
    let a0 = alloc::counts();
    let started = Instant::now();

    let model = load_encoder(&path, &args.engine)?;
    let load = started.elapsed();
    let a_load = alloc::counts();
    // The load may run encoder code (none today); its probes belong to the load.
    let _ = probes::take();
    let rss_loaded = sys::status_bytes(None, "VmRSS");

    let task = args.task.unwrap_or_else(|| default_task(&model));
    let op = op_of(task);
    model.check_op(&op).with_context(|| {
        format!(
            "--task {}: {} cannot do it",
            report::task_name(task),
            path.display()
        )
    })?;

    let t0 = Instant::now();
    let inputs: Vec<TextInput> = texts.iter().map(|t| TextInput::Single(t)).collect();
    let encs = model.encode(&inputs, true).context("tokenize the corpus")?;
    let tokenize = t0.elapsed();
    let tokens: usize = encs.iter().map(|e| e.len()).sum();

    // Length-sorted batches, as the server's batcher forms them.
    let mut order: Vec<usize> = (0..encs.len()).collect();
    order.sort_by_key(|&i| encs[i].len());
    let mut outputs: Vec<Option<OpOutput>> = (0..encs.len()).map(|_| None).collect();
    for chunk in order.chunks(args.batch as usize) {
        let items: Vec<_> = chunk.iter().map(|&i| (&encs[i], &op)).collect();
        let outs = model.run_batch(&items).context("forward pass")?;
        for (&i, o) in chunk.iter().zip(outs) {
            outputs[i] = Some(o);
        }
    }
    // Entities: aggregation into spans with character offsets (postprocessing).
    let mut aggregate = Duration::ZERO;
    if task == Task::Entities {
        let t0 = Instant::now();
        let mut spans = 0usize;
        for ((enc, out), text) in encs.into_iter().zip(outputs).zip(&texts) {
            let probs = match out {
                Some(OpOutput::TokenProbs(p)) => p,
                _ => Vec::new(),
            };
            let p = TokenPredictions {
                encoded: enc,
                probs,
            };
            if let nlpd_engine::EntityOutput::Spans(s) =
                entities_of(text, &p, model.labels(), Aggregation::Simple)
            {
                spans += s.len();
            }
        }
        std::hint::black_box(spans);
        aggregate = t0.elapsed();
    }
    let total = started.elapsed();
    let a_end = alloc::counts();
    alloc::set_counting(false);
    probes::set_enabled(false);
    let engine = probes::take();

    let encoder = engine.get(Stage::Encoder);
    let layers = engine.get(Stage::Embeddings)
        + engine.get(Stage::Attention)
        + engine.get(Stage::FeedForward);
    let stages = vec![
        StageTime::new("load", load, false),
        StageTime::new("tokenize", tokenize, false),
        StageTime::new("batch", engine.get(Stage::Batch), false),
        StageTime::new("embeddings", engine.get(Stage::Embeddings), true),
        StageTime::new("attention", engine.get(Stage::Attention), true),
        StageTime::new("feed_forward", engine.get(Stage::FeedForward), true),
        StageTime::new("encoder_other", encoder.saturating_sub(layers), true),
        StageTime::new("pooling_head", engine.get(Stage::PoolingHead), false),
        StageTime::new(
            "postprocess",
            engine.get(Stage::Postprocess) + aggregate,
            false,
        ),
    ];
    let accounted: Duration = stages.iter().map(|s| s.duration()).sum();
    let r = Report {
        model: path.display().to_string(),
        backend: model.backend_name(),
        precision: model.kernel().precision().precision(),
        kernel: model.kernel().as_str(),
        task,
        threads: rayon::current_num_threads(),
        inputs: texts.len(),
        tokens,
        batch: args.batch as usize,
        forward_passes: engine.calls,
        corpus: args
            .corpus
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "built-in".into()),
        total_ms: ms(total),
        encoder_ms: ms(encoder),
        unattributed_ms: ms(total.saturating_sub(accounted)),
        stages,
        memory: Memory {
            rss_before_load_bytes: rss_before,
            rss_after_load_bytes: rss_loaded,
            peak_rss_bytes: sys::status_bytes(None, "VmHWM"),
        },
        allocations: report::Allocations {
            load: a_load.since(a0),
            run: a_end.since(a_load),
        },
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).context("cannot write the JSON report")?
        );
    } else {
        print!("{}", report::table(&r));
    }
    Ok(0)
}
