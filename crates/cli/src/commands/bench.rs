//! `nlpd bench`: a built-in HTTP load generator for any nlpd server (and, for `openai-embed`, any
//! OpenAI-compatible `/v1/embeddings` endpoint). Closed loop by concurrency or open loop by rate,
//! real texts, HDR latency percentiles, errors by status and kind, the server's own stage split
//! from `/v1/stats`, the client's CPU share; a table, JSON, CSV and an SVG plot.

// `nlpd tune` drives its servers with the same client, load, scenarios and reports.
pub(crate) mod client;
pub(crate) mod level;
pub(crate) mod load;
mod plot;
pub(crate) mod report;
pub(crate) mod scenario;
pub(crate) mod server;
pub(crate) mod sys;

use anyhow::{bail, Context, Result};
use client::Client;
use load::{Ctx, Level, Stop};
use nlpd_runtime::config::parse_duration;
use report::{LevelReport, Settings};
use scenario::{BodyOptions, Scenario, Workload};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  # Start a server from --models-dir, sweep closed-loop concurrency, print a table:
  nlpd bench --scenario embed --concurrency 1,8,32 --duration 5s

  # A running server, open loop at 50 and 100 req/s, 4 texts per request, all outputs:
  nlpd bench --url http://10.0.0.5:8080 --rate 50,100 --batch 4 --json --csv out.csv --plot out.svg

  # A weighted mix of tasks:
  nlpd bench --scenario mixed --mix embed=5,classify=3,entities=2 --concurrency 16

  # Any OpenAI-compatible embeddings endpoint (plain HTTP):
  nlpd bench --url http://host:8000 --scenario openai-embed --model my-model --cache --concurrency 8

Output: one row per level. req/s and inputs/s count successful (2xx) replies; latency percentiles
are of successful replies (HDR histogram, microsecond resolution); errors are counted by HTTP status
and, for requests without a reply, by kind (connect: connection refused, timeout, EMFILE ...).
`server ms` is the server's mean time per input in its queue / tokenize / inference / postprocess
stages during the level (the difference of the cumulative totals in GET /v1/stats before and after
the level, so exact for the level); `batch` is its mean forward-pass batch size; both n/a for
servers without nlpd's /v1/stats. `cpu%` is bench's own user+system CPU over the level in % of one
core, measured from the end of the warm-up to the end of the level: near 100 x cores means the
client, not the server, is the bottleneck.

What counts: closed loop with --duration, every reply that arrives after the warm-up from a request
sent before the level's end (the level lasts until the last of them; req/s divides by that time),
with latency percentiles of the requests sent after the warm-up; with --requests, the N requests
sent after the warm-up. Open loop: the requests scheduled after the
warm-up, each timed from its scheduled send time; skipped ones (--max-in-flight) count as errors.
Before the first level one request per route is sent and not counted, so lazy model loading is not
measured and a misconfigured route is explained on stderr.

Exit status: 0 when the run completes, whatever errors the server returned (they are in the
report); 2 for bad flags, an unreadable corpus or a server bench could not start. The `verify`
scenario comes with the verification endpoint. `nlpd tune` sweeps the server's batch settings
under this same load; `nlpd profile` times one model stage by stage without a server.";

#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// The server to load, http://HOST:PORT[/PREFIX] (plain HTTP). Without it bench starts its
    /// own `nlpd serve` on a free 127.0.0.1 port with --models-dir (and any --serve-arg), waits
    /// for /health/ready and stops it at the end.
    #[arg(long, env = "NLPD_BENCH_URL")]
    pub url: Option<String>,
    /// What to send [default: embed; mixed when --mix is given].
    #[arg(long, env = "NLPD_BENCH_SCENARIO", value_enum)]
    pub scenario: Option<Scenario>,
    /// Weights of `--scenario mixed`, SCENARIO=WEIGHT,... [default: embed=5,classify=3,entities=2].
    #[arg(long, env = "NLPD_BENCH_MIX")]
    pub mix: Option<String>,
    /// The `model` field of every request (otherwise the server's default for the task;
    /// OpenAI-compatible servers other than nlpd usually need it).
    #[arg(long, env = "NLPD_BENCH_MODEL")]
    pub model: Option<String>,
    /// Texts, one per line [default: the built-in corpus of 1,024 real sentences].
    #[arg(long, env = "NLPD_BENCH_CORPUS")]
    pub corpus: Option<PathBuf>,
    /// Inputs per request, taken round-robin from the corpus (nli: pairs of neighbouring lines;
    /// rerank: documents after the query line; explain: always 1).
    #[arg(long, env = "NLPD_BENCH_BATCH", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch: u64,
    /// Closed loop: this many requests in flight, each sent when the previous reply arrives. A
    /// list sweeps, one report row per level.
    #[arg(long, env = "NLPD_BENCH_CONCURRENCY", value_delimiter = ',', value_parser = parse_concurrency, default_value = "1,8,32,128", conflicts_with = "rate")]
    pub concurrency: Vec<usize>,
    /// Open loop: requests per second sent on schedule whatever the replies (latency counted from
    /// the scheduled time, so queueing is not hidden). A list sweeps. Replaces --concurrency.
    #[arg(long, env = "NLPD_BENCH_RATE", value_delimiter = ',', value_parser = parse_rate)]
    pub rate: Vec<f64>,
    /// Open loop: most requests outstanding; a scheduled request beyond it is skipped and counted.
    #[arg(long, env = "NLPD_BENCH_MAX_IN_FLIGHT", default_value_t = 10_000, value_parser = parse_concurrency)]
    pub max_in_flight: usize,
    /// How long each level measures (e.g. 500ms, 10s, 2m).
    #[arg(long, env = "NLPD_BENCH_DURATION", default_value = "10s", value_parser = parse_positive_duration, conflicts_with = "requests")]
    pub duration: Duration,
    /// Measure this many requests per level instead of a duration.
    #[arg(long, env = "NLPD_BENCH_REQUESTS", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Load before each level's measurement starts, not counted (warms caches, connections and
    /// the batcher).
    #[arg(long, env = "NLPD_BENCH_WARMUP", default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Longest wait for one reply (connect included); past it the request counts as a `timeout`.
    #[arg(long, env = "NLPD_BENCH_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub timeout: Duration,
    /// Sent as `Authorization: Bearer KEY` (and given to the server bench starts itself).
    #[arg(long, env = "NLPD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Let the server's result cache answer repeated inputs. Without it every request carries
    /// `"cache": false` so each input reaches the model (drop the field with --cache for
    /// endpoints that refuse unknown fields).
    #[arg(long, env = "NLPD_BENCH_CACHE")]
    pub cache: bool,
    /// explain: tokens to generate per request.
    #[arg(long, env = "NLPD_BENCH_MAX_TOKENS", default_value_t = 32)]
    pub max_tokens: usize,
    /// Print one JSON document (settings and every level) on stdout instead of the table.
    #[arg(long, env = "NLPD_BENCH_JSON")]
    pub json: bool,
    /// Also write the levels as CSV (a header and one row per level).
    #[arg(long, env = "NLPD_BENCH_CSV")]
    pub csv: Option<PathBuf>,
    /// Also write an SVG: throughput (req/s) and p99 latency (ms) against concurrency or rate.
    #[arg(long, env = "NLPD_BENCH_PLOT")]
    pub plot: Option<PathBuf>,
    /// An extra argument for the server bench starts (repeatable), e.g.
    /// --serve-arg=--max-batch-size=32. Ignored with --url.
    #[arg(
        long = "serve-arg",
        env = "NLPD_BENCH_SERVE_ARGS",
        value_delimiter = ' ',
        allow_hyphen_values = true
    )]
    pub serve_args: Vec<String>,
    /// How long to wait for the server bench starts to be ready.
    #[arg(long, env = "NLPD_BENCH_READY_TIMEOUT", default_value = "120s", value_parser = parse_positive_duration)]
    pub ready_timeout: Duration,
}

fn parse_concurrency(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) if n > 1_000_000 => Err("must be at most 1000000".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() && r <= 1e7 => Ok(r),
        Ok(_) => Err("must be a number of requests per second above 0".into()),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be longer than 0".into());
    }
    Ok(d)
}

/// What `run` settles before any request.
struct Plan {
    scenario: Scenario,
    mix: Vec<(Scenario, u32)>,
    levels: Vec<Level>,
    stop: Stop,
}

fn plan(args: &Args) -> Result<Plan> {
    let scenario = args.scenario.unwrap_or(if args.mix.is_some() {
        Scenario::Mixed
    } else {
        Scenario::Embed
    });
    if args.mix.is_some() && scenario != Scenario::Mixed {
        bail!(
            "--mix applies to --scenario mixed, not --scenario {}",
            scenario.name()
        );
    }
    if let Some(u) = &args.url {
        client::normalize_base(u)?;
    }
    let mix = if scenario == Scenario::Mixed {
        scenario::parse_mix(args.mix.as_deref().unwrap_or(scenario::DEFAULT_MIX))?
    } else {
        Vec::new()
    };
    if scenario == Scenario::Explain && args.batch > 1 {
        bail!(
            "--batch {}: explain sends one code snippet per request",
            args.batch
        );
    }
    let levels: Vec<Level> = if args.rate.is_empty() {
        args.concurrency
            .iter()
            .map(|&c| Level::Concurrency(c))
            .collect()
    } else {
        args.rate.iter().map(|&r| Level::Rate(r)).collect()
    };
    if levels.is_empty() {
        bail!("--concurrency / --rate: give at least one level");
    }
    let stop = match args.requests {
        Some(n) => Stop::Requests(n),
        None => Stop::Duration(args.duration),
    };
    Ok(Plan {
        scenario,
        mix,
        levels,
        stop,
    })
}

/// File descriptors the run may need: one per connection plus some headroom.
fn needed_files(args: &Args, levels: &[Level]) -> u64 {
    let peak = levels
        .iter()
        .map(|l| match l {
            Level::Concurrency(c) => *c as u64,
            Level::Rate(r) => {
                ((r * args.timeout.as_secs_f64()).ceil() as u64).min(args.max_in_flight as u64)
            }
        })
        .max()
        .unwrap_or(1);
    // The limit is per process: the server bench starts inherits the raised one for its side.
    peak + 256
}

pub fn run(args: Args, models_dir: &Path) -> Result<usize> {
    let plan = plan(&args)?;
    let corpus = scenario::load_corpus(args.corpus.as_deref())?;
    let needed = needed_files(&args, &plan.levels);
    let limit = sys::raise_nofile(needed);
    match limit {
        Some(l) if l.soft < needed => eprintln!(
            "nlpd bench: warning: the open-files limit is {} (hard limit {}) but this run may need {needed} \
(one per connection): connections beyond it fail with EMFILE. Raise it with `ulimit -n {needed}` (as root: \
raise the hard limit) or lower --concurrency / --max-in-flight.",
            l.soft, l.hard
        ),
        Some(l) if l.soft > l.soft_before => {
            tracing::info!(from = l.soft_before, to = l.soft, "raised the open-files limit")
        }
        _ => {}
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        tokio::select! {
            r = bench(args, plan, corpus, models_dir, limit.map(|l| l.soft)) => r,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("nlpd bench: interrupted");
                bail!("interrupted (Ctrl-C): the levels finished so far are above")
            }
        }
    })
}

async fn bench(
    args: Args,
    plan: Plan,
    corpus: Vec<String>,
    models_dir: &Path,
    open_files: Option<u64>,
) -> Result<usize> {
    // The guard lives until the end of this function: dropped on return, error or Ctrl-C.
    let own = match &args.url {
        Some(_) => None,
        None => {
            eprintln!(
                "nlpd bench: starting `nlpd serve` with --models-dir {} ...",
                models_dir.display()
            );
            Some(
                server::OwnServer::start(
                    "bench",
                    models_dir,
                    &args.serve_args,
                    args.ready_timeout,
                    args.api_key.as_deref(),
                )
                .await?,
            )
        }
    };
    let url = match (&own, &args.url) {
        (Some(s), _) => s.url.clone(),
        (None, Some(u)) => client::normalize_base(u)?,
        (None, None) => bail!("no --url and no server started"),
    };
    let client = Client::new(&url, args.api_key.as_deref(), args.timeout)?;
    let corpus_lines = corpus.len();
    let workload = Workload::new(
        plan.scenario,
        &plan.mix,
        corpus,
        BodyOptions {
            batch: args.batch as usize,
            model: args.model.clone(),
            cache: args.cache,
            max_tokens: args.max_tokens,
        },
    );
    let uris = workload
        .kinds
        .iter()
        .map(|k| client.uri(k.path()))
        .collect::<Result<Vec<_>>>()?;

    // One request per route first, not counted: lazy model loading is not measured, and a
    // misconfigured route (unknown model, missing pack model) is reported in words.
    level::prime(&client, &workload, &uris, "bench").await;
    let stats_ok = level::stats_available(&client, "bench").await;

    let settings = Settings {
        nlpd_version: env!("CARGO_PKG_VERSION"),
        started_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        url: url.clone(),
        own_server: own.is_some(),
        scenario: plan.scenario,
        mix: (plan.scenario == Scenario::Mixed)
            .then(|| plan.mix.iter().map(|(s, w)| (s.name(), *w)).collect()),
        model: args.model.clone(),
        batch: args.batch as usize,
        cache: args.cache,
        mode: if args.rate.is_empty() {
            "closed"
        } else {
            "open"
        },
        levels: plan
            .levels
            .iter()
            .map(|l| match l {
                Level::Concurrency(c) => *c as f64,
                Level::Rate(r) => *r,
            })
            .collect(),
        duration_s: matches!(plan.stop, Stop::Duration(_)).then(|| args.duration.as_secs_f64()),
        requests_per_level: args.requests,
        warmup_s: args.warmup.as_secs_f64(),
        timeout_s: args.timeout.as_secs_f64(),
        max_in_flight: (!args.rate.is_empty()).then_some(args.max_in_flight),
        corpus: args
            .corpus
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "built-in".into()),
        corpus_lines,
        open_files_limit: open_files,
    };

    let ctx = Arc::new(Ctx {
        client,
        workload,
        uris,
        warmup: args.warmup,
        stop: plan.stop,
        max_in_flight: args.max_in_flight,
        progress: std::io::stderr().is_terminal(),
    });
    let table = !args.json;
    if table {
        println!(
            "nlpd bench: {} -> {url}{}, batch {}, {} loop, {} per level after {:.1}s warm-up{}",
            plan.scenario.name(),
            if own.is_some() { " (own server)" } else { "" },
            args.batch,
            settings.mode,
            match plan.stop {
                Stop::Duration(d) => format!("{:.1}s", d.as_secs_f64()),
                Stop::Requests(n) => format!("{n} requests"),
            },
            args.warmup.as_secs_f64(),
            if args.cache {
                ", server cache allowed"
            } else {
                ""
            }
        );
        println!("{}", report::table_header());
    }

    let mut levels = Vec::new();
    for &lv in &plan.levels {
        let label = match lv {
            Level::Concurrency(c) => format!("c={c}"),
            Level::Rate(r) => format!("{}/s", report::num(r)),
        };
        let r = level::measure(&ctx, lv, &label, stats_ok).await;
        if table {
            println!("{}", report::table_row(&r));
        }
        levels.push(r);
    }

    let emfile = ctx.client.emfile.load(std::sync::atomic::Ordering::Relaxed);
    if emfile > 0 {
        eprintln!(
            "nlpd bench: {emfile} connection(s) failed with EMFILE (too many open files): the open-files limit is {}. \
Raise it (`ulimit -n`) or lower --concurrency / --max-in-flight.",
            open_files.map(|n| n.to_string()).unwrap_or_else(|| "unknown".into())
        );
    }
    if args.json {
        #[derive(serde::Serialize)]
        struct Doc<'a> {
            settings: &'a Settings,
            levels: &'a [LevelReport],
        }
        let doc = Doc {
            settings: &settings,
            levels: &levels,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).context("cannot write the JSON report")?
        );
    }
    if let Some(path) = &args.csv {
        std::fs::write(path, report::csv(&levels))
            .with_context(|| format!("cannot write --csv {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let x_label = if args.rate.is_empty() {
            "concurrency (requests in flight)"
        } else {
            "offered rate (req/s)"
        };
        let throughput = plot::Series {
            title: "Throughput",
            y_label: "successful req/s",
            color: "#1f77b4",
            points: levels
                .iter()
                .map(|l| (l.x(), Some(l.requests_per_s)))
                .collect(),
        };
        let p99 = plot::Series {
            title: "p99 latency",
            y_label: "p99 (ms)",
            color: "#d62728",
            points: levels
                .iter()
                .map(|l| (l.x(), l.latency.as_ref().map(|x| x.p99_ms)))
                .collect(),
        };
        let caption = format!(
            "nlpd bench --scenario {} --batch {} ({} loop) against {url}",
            plan.scenario.name(),
            args.batch,
            settings.mode
        );
        std::fs::write(path, plot::svg(&throughput, &p99, x_label, &caption))
            .with_context(|| format!("cannot write --plot {}", path.display()))?;
    }
    drop(own);
    Ok(0)
}
