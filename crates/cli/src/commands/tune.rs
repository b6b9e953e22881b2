//! `nlpd tune`: sweeps the batcher's settings (`max_batch_tokens`, `max_batch_size`,
//! `max_wait_us`) for one model and scenario, a fresh `nlpd serve` per setting under the same
//! closed-loop load, and recommends the fastest setting that meets a p99 target and a memory
//! limit; `--write` stores it in a config file `nlpd serve --config` reads.

mod choose;
mod grid;
mod report;
mod write;

use super::bench::client::Client;
use super::bench::load::{Ctx, Level, Stop};
use super::bench::scenario::{self, BodyOptions, Scenario, Workload};
use super::bench::{level, server, sys};
use anyhow::{bail, Context, Result};
use choose::Constraints;
use grid::{Setting, Sweep};
use indicatif::{ProgressBar, ProgressStyle};
use nlpd_runtime::config::{parse_bytes, parse_duration};
use report::Row;
use serde::Serialize;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const EXAMPLES: &str = "\
Examples:
  # Batch sizes 4..64 with and without a 2 ms wait, 32 clients, p99 under 100 ms, 1 GiB:
  nlpd tune --p99-target 100 --memory-limit 1GiB

  # Sweep the token budget too, for entity extraction, and store the result:
  nlpd tune --scenario entities --max-batch-tokens 2048..16384 --max-batch-size 16,32 \\
      --max-wait-us 0 --write nlpd.toml
  nlpd serve --config nlpd.toml

  # A model directory of your own, int8, 4 texts per request, JSON:
  nlpd tune --model ./my-encoder --serve-arg=--quantize=int8 --batch 4 --json

How it works: for each setting (every combination of --max-batch-tokens, --max-batch-size and
--max-wait-us) tune starts `nlpd serve` on a free local port with those flags, sends one
uncounted request per route (the model loads), runs the same closed loop as `nlpd bench
--concurrency N` (warm-up, then --duration), reads the server's peak resident memory (VmHWM of its
process: the high-water mark over its whole life, model load included) and stops it.

The recommendation: among the settings with p99 <= --p99-target, peak RSS <= --memory-limit and
no failed request, the highest inputs/s; settings within 2% of the best count as tied and the
lowest p99 among them wins. When no setting meets the constraints, tune says so and names the
closest (the smallest relative excess over the limits); --write then writes nothing and tune exits
with status 2.

--write FILE sets max-batch-tokens, max-batch-size and max-wait-us at the top level of FILE
(created if missing); its other keys, tables and comments are kept.

Measurements share the machine with the server: on a small machine the client's own CPU (the
`cpu%` of `nlpd bench`) competes with it, so compare settings with each other, not with numbers
from another machine.";

#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// What to send (one scenario; `mixed` is not swept).
    #[arg(long, env = "NLPD_TUNE_SCENARIO", value_enum, default_value = "embed")]
    pub scenario: Scenario,
    /// The model to tune: a pack name or a model directory. The servers tune starts serve only
    /// it, and every request names it. Without it they serve the installed pack and requests go
    /// to the scenario's default model.
    #[arg(long, env = "NLPD_TUNE_MODEL")]
    pub model: Option<String>,
    /// Token budgets per forward pass: a list (4096,8192) or a doubling range MIN..MAX
    /// (2048..16384 = 2048,4096,8192,16384).
    #[arg(long, env = "NLPD_TUNE_MAX_BATCH_TOKENS", default_value = "16384", value_parser = grid::parse_tokens)]
    pub max_batch_tokens: Sweep,
    /// Most inputs per forward pass: a list or a doubling range MIN..MAX.
    #[arg(long, env = "NLPD_TUNE_MAX_BATCH_SIZE", default_value = "4..64", value_parser = grid::parse_sizes)]
    pub max_batch_size: Sweep,
    /// Microseconds a free worker waits for its batch to fill: a list (0 = never wait).
    #[arg(long, env = "NLPD_TUNE_MAX_WAIT_US", default_value = "0,2000", value_parser = grid::parse_waits)]
    pub max_wait_us: Sweep,
    /// Requests in flight (closed loop, as `nlpd bench --concurrency`); the p99 is at this load.
    #[arg(long, env = "NLPD_TUNE_CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub concurrency: u64,
    /// Inputs per request, taken round-robin from the corpus.
    #[arg(long, env = "NLPD_TUNE_BATCH", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch: u64,
    /// How long each setting is measured (e.g. 2s, 10s).
    #[arg(long, env = "NLPD_TUNE_DURATION", default_value = "5s", value_parser = parse_positive_duration)]
    pub duration: Duration,
    /// Load before each measurement, not counted (fills the batcher and the server's buffers).
    #[arg(long, env = "NLPD_TUNE_WARMUP", default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Highest acceptable p99 latency: milliseconds (50) or a duration (50ms, 0.2s).
    #[arg(long, env = "NLPD_TUNE_P99_TARGET", value_parser = parse_p99_target)]
    pub p99_target: Option<f64>,
    /// Highest acceptable peak resident memory of the server (e.g. 2GiB, 800MiB, 1.5GB).
    #[arg(long, env = "NLPD_TUNE_MEMORY_LIMIT", value_parser = parse_memory_limit)]
    pub memory_limit: Option<u64>,
    /// Texts, one per line [default: the built-in corpus of 1,024 real sentences].
    #[arg(long, env = "NLPD_TUNE_CORPUS")]
    pub corpus: Option<PathBuf>,
    /// Print one JSON document (settings, one row per setting, the recommendation) instead of
    /// the table.
    #[arg(long, env = "NLPD_TUNE_JSON")]
    pub json: bool,
    /// Store the recommended max-batch-tokens, max-batch-size and max-wait-us in this TOML file
    /// (`nlpd serve --config FILE`), keeping its other keys.
    #[arg(long, env = "NLPD_TUNE_WRITE")]
    pub write: Option<PathBuf>,
    /// An extra argument for every server tune starts (repeatable), e.g. --serve-arg=--quantize=int8.
    /// The swept flags, --host, --port and --models-dir are tune's.
    #[arg(
        long = "serve-arg",
        env = "NLPD_TUNE_SERVE_ARGS",
        value_delimiter = ' ',
        allow_hyphen_values = true
    )]
    pub serve_args: Vec<String>,
    /// Longest wait for one reply; past it the request counts as a failure.
    #[arg(long, env = "NLPD_TUNE_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub timeout: Duration,
    /// How long to wait for each server to be ready.
    #[arg(long, env = "NLPD_TUNE_READY_TIMEOUT", default_value = "120s", value_parser = parse_positive_duration)]
    pub ready_timeout: Duration,
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be longer than 0".into());
    }
    Ok(d)
}

/// `50` → 50 ms; `50ms`, `0.2s` → as written.
fn parse_p99_target(s: &str) -> Result<f64, String> {
    let ms = match s.trim().parse::<f64>() {
        Ok(v) => v,
        Err(_) => parse_duration(s)?.as_secs_f64() * 1000.0,
    };
    if !(ms > 0.0 && ms.is_finite()) {
        return Err("must be a positive number of milliseconds".into());
    }
    Ok(ms)
}

fn parse_memory_limit(s: &str) -> Result<u64, String> {
    match parse_bytes(s)? {
        0 => Err("must be above 0".into()),
        b => Ok(b),
    }
}

/// The settings of the run (in the JSON).
#[derive(Debug, Serialize)]
struct RunSettings {
    nlpd_version: &'static str,
    scenario: Scenario,
    model: Option<String>,
    concurrency: u64,
    batch: u64,
    duration_s: f64,
    warmup_s: f64,
    corpus: String,
    max_batch_tokens: Vec<u64>,
    max_batch_size: Vec<u64>,
    max_wait_us: Vec<u64>,
    p99_target_ms: Option<f64>,
    memory_limit_bytes: Option<u64>,
    serve_args: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Recommendation {
    #[serde(flatten)]
    setting: Setting,
    /// Its row (0-based index into `results`).
    index: usize,
    meets_constraints: bool,
    reason: String,
}

/// The model flags: the server's `--model NAME=PATH` and the requests' `model` field.
fn model_target(model: Option<&str>, models_dir: &Path) -> Result<Option<(String, String)>> {
    let Some(m) = model else { return Ok(None) };
    let path = nlpd_runtime::resolve_model(m, models_dir).context("--model")?;
    let path = path.canonicalize().unwrap_or(path);
    let name = nlpd_runtime::pack::find(m)
        .map(|p| p.dir.to_string())
        .or_else(|| {
            path.file_name()
                .map(|n| n.to_string_lossy().trim_end_matches(".gguf").to_string())
        })
        .filter(|n| !n.is_empty() && !n.contains(['=', ',', ':']))
        .unwrap_or_else(|| "tuned".to_string());
    Ok(Some((name.clone(), format!("{name}={}", path.display()))))
}

pub fn run(args: Args, models_dir: &Path) -> Result<usize> {
    if args.scenario == Scenario::Mixed {
        bail!("--scenario mixed: tune sweeps one scenario at a time (bench measures mixes)");
    }
    if args.scenario == Scenario::Explain && args.batch > 1 {
        bail!(
            "--batch {}: explain sends one code snippet per request",
            args.batch
        );
    }
    grid::check_serve_args(&args.serve_args, args.model.is_some()).map_err(anyhow::Error::msg)?;
    let target = model_target(args.model.as_deref(), models_dir)?;
    let corpus = scenario::load_corpus(args.corpus.as_deref())?;
    if let Some(w) = &args.write {
        // Fail before the sweep, not after it, when the file cannot be merged into.
        if let Ok(text) = std::fs::read_to_string(w) {
            text.parse::<toml::Table>()
                .with_context(|| format!("--write {}: it is not valid TOML", w.display()))?;
        }
    }
    let settings = grid::grid(
        &args.max_batch_tokens,
        &args.max_batch_size,
        &args.max_wait_us,
    );
    sys::raise_nofile(args.concurrency + 256);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        tokio::select! {
            r = tune(args, settings, target, corpus, models_dir) => r,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("nlpd tune: interrupted");
                bail!("interrupted (Ctrl-C): the settings measured so far are above")
            }
        }
    })
}

fn progress(n: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(n as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{prefix:>5} [{bar:20}] {pos}/{len} settings {wide_msg}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix("tune");
    pb
}

/// Starts a server with `setting`, measures one closed-loop level against it, stops it.
async fn measure(
    args: &Args,
    setting: Setting,
    target: &Option<(String, String)>,
    corpus: &[String],
    models_dir: &Path,
    constraints: &Constraints,
    first: bool,
) -> Result<Row> {
    let mut serve_args = setting.serve_args();
    if let Some((_, spec)) = target {
        serve_args.push(format!("--model={spec}"));
    }
    serve_args.extend(args.serve_args.iter().cloned());
    let own = server::OwnServer::start("tune", models_dir, &serve_args, args.ready_timeout, None)
        .await
        .with_context(|| format!("setting {}", setting.label()))?;
    let client = Client::new(&own.url, None, args.timeout)?;
    // The same inputs in the same order for every setting.
    let workload = Workload::new(
        args.scenario,
        &[],
        corpus.to_vec(),
        BodyOptions {
            batch: args.batch as usize,
            model: target.as_ref().map(|(name, _)| name.clone()),
            cache: false,
            max_tokens: 32,
        },
    );
    let uris = workload
        .kinds
        .iter()
        .map(|k| client.uri(k.path()))
        .collect::<Result<Vec<_>>>()?;
    let failed = level::prime(&client, &workload, &uris, "tune").await;
    if first && failed == workload.kinds.len() {
        bail!(
            "the first {} request failed (see above): every setting would fail the same way",
            args.scenario.name()
        );
    }
    let stats_ok = level::stats_available(&client, "tune").await;
    let ctx = Arc::new(Ctx {
        client,
        workload,
        uris,
        warmup: args.warmup,
        stop: Stop::Duration(args.duration),
        max_in_flight: args.concurrency as usize,
        progress: false,
    });
    let lv = Level::Concurrency(args.concurrency as usize);
    let r = level::measure(&ctx, lv, &setting.label(), stats_ok).await;
    let peak = own.peak_rss_bytes();
    drop(own);
    Ok(Row::new(setting, &r, peak, constraints))
}

async fn tune(
    args: Args,
    settings: Vec<Setting>,
    target: Option<(String, String)>,
    corpus: Vec<String>,
    models_dir: &Path,
) -> Result<usize> {
    let constraints = Constraints {
        p99_ms: args.p99_target,
        memory_bytes: args.memory_limit,
    };
    let run_settings = RunSettings {
        nlpd_version: env!("CARGO_PKG_VERSION"),
        scenario: args.scenario,
        model: target.as_ref().map(|(n, _)| n.clone()),
        concurrency: args.concurrency,
        batch: args.batch,
        duration_s: args.duration.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        corpus: args
            .corpus
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "built-in".into()),
        max_batch_tokens: args.max_batch_tokens.0.clone(),
        max_batch_size: args.max_batch_size.0.clone(),
        max_wait_us: args.max_wait_us.0.clone(),
        p99_target_ms: args.p99_target,
        memory_limit_bytes: args.memory_limit,
        serve_args: args.serve_args.clone(),
    };
    let table = !args.json;
    if table {
        println!(
            "nlpd tune: {} {}, {} setting(s), concurrency {}, batch {}, {:.1}s per setting after {:.1}s warm-up; constraints: {}",
            args.scenario.name(),
            run_settings.model.as_deref().unwrap_or("(default model)"),
            settings.len(),
            args.concurrency,
            args.batch,
            args.duration.as_secs_f64(),
            args.warmup.as_secs_f64(),
            choose::constraint_words(&constraints)
        );
        println!("{}", report::table_header());
    }
    let pb = progress(settings.len());
    let started = Instant::now();
    let mut rows = Vec::with_capacity(settings.len());
    for (i, &s) in settings.iter().enumerate() {
        pb.set_message(s.label());
        let row = measure(&args, s, &target, &corpus, models_dir, &constraints, i == 0).await;
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                pb.finish_and_clear();
                return Err(e);
            }
        };
        if table {
            pb.suspend(|| println!("{}", report::table_row(i, &row)));
        }
        rows.push(row);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let measures: Vec<_> = rows.iter().map(Row::measure).collect();
    let choice = choose::choose(&measures, &constraints).context("no setting was measured")?;
    let best = settings[choice.index];
    if table {
        println!(
            "recommendation: #{} {} ({:.0}s for {} settings)\n  why: {}",
            choice.index + 1,
            best.label(),
            started.elapsed().as_secs_f64(),
            settings.len(),
            choice.reason
        );
    } else {
        #[derive(Serialize)]
        struct Doc<'a> {
            settings: &'a RunSettings,
            results: &'a [Row],
            recommendation: Recommendation,
        }
        let doc = Doc {
            settings: &run_settings,
            results: &rows,
            recommendation: Recommendation {
                setting: best,
                index: choice.index,
                meets_constraints: choice.meets_constraints,
                reason: choice.reason.clone(),
            },
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).context("cannot write the JSON report")?
        );
    }
    if let Some(path) = &args.write {
        if !choice.meets_constraints {
            bail!(
                "--write {}: not written, because no setting meets the constraints (relax --p99-target / --memory-limit or widen the sweep)",
                path.display()
            );
        }
        let keys = [
            ("max-batch-tokens", best.max_batch_tokens as i64),
            ("max-batch-size", best.max_batch_size as i64),
            ("max-wait-us", best.max_wait_us as i64),
        ];
        let comment = format!(
            "nlpd tune: {} at concurrency {}: {}",
            args.scenario.name(),
            args.concurrency,
            choice.reason
        );
        write::write(path, &keys, &comment)?;
        eprintln!("nlpd tune: wrote {} to {}", best.label(), path.display());
    }
    Ok(0)
}
