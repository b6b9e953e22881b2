//! The `nlpd` binary: `serve` and the one-shot task commands (`embed`, `classify`, `entities`,
//! `explain`), `models`, `train`, `bench`, `tune` and `profile`.

mod alloc;
mod commands;
mod io;

/// Counts allocations while `nlpd profile` runs; otherwise the system allocator plus one
/// relaxed load per allocation.
#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "nlpd",
    version,
    about = "Fast NLP inference: embeddings, classification, entities and code explanation",
    long_about = "nlpd runs NLP models on the CPU. The one-shot commands read JSONL (or plain text lines) from \
stdin or --input and write one JSON line per input line to stdout; a bad line gives an error line \
({\"line\": N, \"error\": ...}) and the command exits non-zero at the end.\n\n--model takes a model \
directory, a GGUF file, or a pack name (all-MiniLM-L6-v2 / minilm, sentiment, rampart-pii-ner / \
rampart, smollm2-135m-instruct / smollm2, qwen2.5-coder-0.5b-instruct / qwen) looked up in \
--models-dir."
)]
struct Cli {
    /// Directory holding the model pack (`make models` fills it).
    #[arg(long, env = "NLPD_MODELS_DIR", default_value = "models", global = true)]
    models_dir: PathBuf,
    /// Log filter for stderr (e.g. `info`, `nlpd=debug`).
    #[arg(long, env = "NLPD_LOG", default_value = "warn", global = true)]
    log: String,
    /// Log lines as `text` (colour only when stderr is a terminal) or `json` (one object per
    /// line: timestamp, level, target, fields; for log collectors).
    #[arg(long, env = "NLPD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// `--log-format` and the config file's `log-format` (one vocabulary, clap and serde derived).
#[derive(Clone, Copy, Debug, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum LogFormat {
    Text,
    Json,
}

/// Logs go to stderr, filtered by `--log`, in `--log-format`.
fn init_logging(filter: &str, format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Sentence embeddings: {"text": ...} → {"embedding": [f32, ...]}.
    Embed(commands::embed::Args),
    /// Sequence classification: {"text": ..., "text_pair"?: ...} → {"label", "scores"}.
    Classify(commands::classify::Args),
    /// Entity extraction: {"text": ...} → {"entities": [{"label", "start", "end", "text", "score"}]}.
    Entities(commands::entities::Args),
    /// Explain code with a generative model: {"code": ..., "language"?: ...} → streamed text.
    Explain(commands::explain::Args),
    /// Verify claims against evidence documents: embed, retrieve, NLI, verdict.
    ///
    /// The --evidence documents are split into passages (sentence-aware, at most
    /// --passage-tokens word pieces) and embedded into an in-memory index (nothing is stored;
    /// `nlpd serve` keeps its corpus in the store). Each claim then retrieves its --top-k most
    /// similar passages (cosine >= --min-score), every (passage, claim) pair is judged by NLI, and
    /// the verdict is SUPPORTED, REFUTED or NOT_ENOUGH_INFO with a confidence (docs/API.md,
    /// "Verification", explains the aggregation). One JSON line per claim, shaped like a result of
    /// POST /v1/verify; a summary with the time per stage on stderr.
    Verify(Box<commands::verify::Args>),
    /// The model pack: `list` what it holds, `info` on any model.
    #[command(subcommand)]
    Models(commands::models::Command),
    /// Serve every task over HTTP with dynamic batching (see `nlpd serve --help`).
    Serve(Box<commands::serve::Args>),
    /// Train a classification head on a frozen encoder from labelled JSONL.
    ///
    /// The texts of --data are embedded once with the encoder (its own pooling and normalization,
    /// the fast batched path), a stratified --val-split is held out, and a linear or MLP head is
    /// trained on the embeddings with class-weighted cross-entropy and AdamW, keeping the epoch
    /// with the best validation macro-F1 (early stopping after --patience epochs without one).
    /// Accuracy, macro-F1 and the confusion matrix are printed for the validation split and every
    /// --test file.
    ///
    /// --out becomes a model directory that `nlpd classify --model DIR` and `nlpd serve --model
    /// NAME=DIR` load as a sequence classifier: config.json (id2label, label2id, the encoder's path
    /// relative to DIR, pooling), model.safetensors (the head only) and train.json (command, data
    /// and encoder hashes, seed, options, per-epoch history, metrics). The same data, encoder,
    /// options and seed give the same model.safetensors bit for bit. docs/MODELS.md shows the
    /// command that made the pack's sentiment head.
    Train(Box<commands::train::Args>),
    /// Load-test a server: latency percentiles and throughput per concurrency or rate level.
    ///
    /// Drives any nlpd server (--url, or one bench starts itself) and, with `--scenario
    /// openai-embed`, any OpenAI-compatible /v1/embeddings endpoint, with real texts. Closed loop
    /// (--concurrency, a list sweeps) or open loop (--rate: requests sent on schedule whatever the
    /// replies, latency from the scheduled time, so coordinated omission does not hide queueing).
    /// Reports req/s, inputs/s, p50/p90/p95/p99/max, errors by status and kind, the server's
    /// queue/tokenize/inference/postprocess split and the client's own CPU; --json, --csv, --plot.
    /// docs/TOOLS.md explains the numbers.
    Bench(Box<commands::bench::Args>),
    /// Sweep the batcher's settings under load and recommend (and store) the best.
    ///
    /// For one model and scenario, starts a fresh `nlpd serve` per setting (every combination
    /// of --max-batch-tokens, --max-batch-size and --max-wait-us), drives it with the closed
    /// loop of `nlpd bench` at --concurrency, and records inputs/s, p50/p99 latency and the
    /// server's peak resident memory. Recommends the highest throughput among the settings
    /// with p99 <= --p99-target, peak memory <= --memory-limit and no failed requests (or, when
    /// none qualifies, says so and names the closest); --write stores it for `nlpd serve
    /// --config`. docs/TOOLS.md shows a run.
    Tune(Box<commands::tune::Args>),
    /// Time an encoder stage by stage over a corpus, in this process (no server).
    ///
    /// Loads the model, tokenizes the corpus and runs it in length-sorted batches, and prints
    /// the wall time of load, tokenize, batch assembly, the encoder split into embeddings,
    /// attention and feed-forward, pooling/head and postprocessing, with the peak resident
    /// memory and the heap allocations of load and run; --json for a document. The engine's
    /// probes are off in every other command and in the server.
    Profile(Box<commands::profile::Args>),
}

fn main() -> ExitCode {
    // Flags, NLPD_* variables and defaults, then the config file under them (serve/config.rs).
    let (mut cli, matches) = commands::serve::config::parse();
    match commands::serve::config::layer(&mut cli, &matches) {
        Ok(Some(report)) => eprintln!("nlpd: {report}"),
        Ok(None) => {}
        Err(e) => {
            eprintln!("nlpd: error: {e:#}");
            return ExitCode::from(2);
        }
    }
    init_logging(&cli.log, cli.log_format);
    let result = match cli.command {
        Command::Embed(a) => commands::embed::run(a, &cli.models_dir),
        Command::Classify(a) => commands::classify::run(a, &cli.models_dir),
        Command::Entities(a) => commands::entities::run(a, &cli.models_dir),
        Command::Explain(a) => commands::explain::run(a, &cli.models_dir),
        Command::Serve(a) => commands::serve::run(*a, &cli.models_dir),
        Command::Models(c) => commands::models::run(c, &cli.models_dir),
        Command::Train(a) => commands::train::run(*a, &cli.models_dir),
        Command::Bench(a) => commands::bench::run(*a, &cli.models_dir),
        Command::Verify(a) => commands::verify::run(*a, &cli.models_dir),
        Command::Tune(a) => commands::tune::run(*a, &cli.models_dir),
        Command::Profile(a) => commands::profile::run(*a, &cli.models_dir),
    };
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failed) => {
            eprintln!("nlpd: {failed} input line(s) failed");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("nlpd: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
