//! The settings of `nlpd serve`, layered: built-in defaults < the `--config` TOML file <
//! `NLPD_*` environment variables < flags.
//!
//! clap parses the flags, the environment and the defaults as it always does, each value
//! through the flag's own parser (durations and sizes included), so a bad one is refused at the
//! edge and named. Then the file, deserialized into [`FileConfig`] (typed; unknown keys are
//! errors), fills every setting whose value is still clap's default or absent: whatever the
//! environment or a flag set stays. The process environment is only ever read.
//!
//! The file is `--config` / `NLPD_CONFIG` for `serve`. The other commands have no `--config`;
//! for them `NLPD_CONFIG` (as before) supplies the global settings (`models-dir`, `log`,
//! `log-format`) and, where the command has them, `backend` and `quantize`.

use crate::commands::EngineArgs;
use crate::{Cli, Command, LogFormat};
use anyhow::{Context, Result};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use nlpd_engine::{BackendKind, Quantize};
use nlpd_runtime::cache::Policy;
use nlpd_runtime::config::{parse_bytes, parse_duration};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The precedence, as `--help` and the error messages say it.
pub const PRECEDENCE: &str = "defaults < --config file < NLPD_* environment < flags";

/// A `--config` file: every setting of `nlpd serve`, keyed by its flag name (`max-batch-size`;
/// `max_batch_size` too, and the plural `models`, `default-models`, `default-prompts`,
/// `api-keys` of the list flags). Absent keys are `None`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    // The global settings (flags of every command).
    #[serde(alias = "models_dir")]
    pub models_dir: Option<PathBuf>,
    pub log: Option<String>,
    #[serde(alias = "log_format")]
    pub log_format: Option<LogFormat>,
    // `nlpd serve`.
    pub host: Option<String>,
    pub port: Option<u16>,
    #[serde(rename = "model", alias = "models")]
    pub models: Option<List>,
    #[serde(
        rename = "default-model",
        alias = "default-models",
        alias = "default_model",
        alias = "default_models"
    )]
    pub default_models: Option<List>,
    #[serde(
        rename = "default-prompt",
        alias = "default-prompts",
        alias = "default_prompt",
        alias = "default_prompts"
    )]
    pub default_prompts: Option<List>,
    pub backend: Option<BackendKind>,
    pub quantize: Option<Quantize>,
    pub preload: Option<bool>,
    #[serde(alias = "memory_budget")]
    pub memory_budget: Option<Size>,
    #[serde(alias = "max_batch_tokens")]
    pub max_batch_tokens: Option<usize>,
    #[serde(alias = "max_batch_size")]
    pub max_batch_size: Option<usize>,
    #[serde(alias = "max_wait_us")]
    pub max_wait_us: Option<u64>,
    #[serde(alias = "max_queue")]
    pub max_queue: Option<usize>,
    #[serde(
        rename = "api-key",
        alias = "api-keys",
        alias = "api_key",
        alias = "api_keys"
    )]
    pub api_keys: Option<List>,
    #[serde(alias = "api_key_file")]
    pub api_key_file: Option<PathBuf>,
    #[serde(alias = "max_input_tokens")]
    pub max_input_tokens: Option<usize>,
    #[serde(alias = "max_request_bytes")]
    pub max_request_bytes: Option<Size>,
    #[serde(alias = "max_inputs_per_request")]
    pub max_inputs_per_request: Option<usize>,
    #[serde(alias = "max_new_tokens")]
    pub max_new_tokens: Option<usize>,
    #[serde(alias = "rate_limit")]
    pub rate_limit: Option<f64>,
    #[serde(alias = "request_timeout")]
    pub request_timeout: Option<Dur>,
    #[serde(alias = "cache_l1_bytes")]
    pub cache_l1_bytes: Option<Size>,
    #[serde(alias = "cache_policy")]
    pub cache_policy: Option<Policy>,
    #[serde(alias = "cache_ttl")]
    pub cache_ttl: Option<Dur>,
    #[serde(alias = "redis_url")]
    pub redis_url: Option<String>,
    #[serde(alias = "cache_prefix")]
    pub cache_prefix: Option<String>,
    #[serde(alias = "redis_timeout_ms")]
    pub redis_timeout_ms: Option<u64>,
    #[serde(alias = "redis_breaker_failures")]
    pub redis_breaker_failures: Option<u32>,
    #[serde(alias = "redis_breaker_cooldown")]
    pub redis_breaker_cooldown: Option<Dur>,
    #[serde(alias = "data_dir")]
    pub data_dir: Option<PathBuf>,
    #[serde(alias = "database_url")]
    pub database_url: Option<String>,
    #[serde(alias = "log_predictions")]
    pub log_predictions: Option<bool>,
    #[serde(alias = "log_inputs")]
    pub log_inputs: Option<bool>,
    #[serde(alias = "warm_cache")]
    pub warm_cache: Option<usize>,
    #[serde(alias = "store_flush_rows")]
    pub store_flush_rows: Option<usize>,
    #[serde(alias = "store_flush_interval")]
    pub store_flush_interval: Option<Dur>,
    #[serde(alias = "store_queue_rows")]
    pub store_queue_rows: Option<usize>,
    #[serde(alias = "evidence_refresh")]
    pub evidence_refresh: Option<Dur>,
    #[serde(alias = "shutdown_delay")]
    pub shutdown_delay: Option<Dur>,
    #[serde(alias = "shutdown_timeout")]
    pub shutdown_timeout: Option<Dur>,
}

/// A duration: `"500ms"`, `"5s"`, `"10m"`, `"1h"`, `"1d"` (as on the command line) or a plain
/// number of seconds (`5`, `0.25`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dur(pub Duration);

/// A byte size: `"256MiB"`, `"2GiB"`, `"1.5GB"` (as on the command line) or a plain number of
/// bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Size(pub u64);

/// A list flag's values: an array of strings or one comma-separated string (as in the
/// environment); commas inside array items separate values too, as on the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct List(pub Vec<String>);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"500ms\", \"5s\", \"10m\" or a number of seconds")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                parse_duration(s).map(Dur).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Dur, E> {
                Ok(Dur(Duration::from_secs(n)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                u64::try_from(n)
                    .map(|n| Dur(Duration::from_secs(n)))
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &self))
            }
            fn visit_f64<E: de::Error>(self, x: f64) -> Result<Dur, E> {
                Duration::try_from_secs_f64(x)
                    .map(Dur)
                    .map_err(|_| E::invalid_value(de::Unexpected::Float(x), &self))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as \"256MiB\", \"2GiB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Size, E> {
                parse_bytes(s).map(Size).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Size, E> {
                Ok(Size(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Size, E> {
                u64::try_from(n)
                    .map(Size)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &self))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for List {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = List;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of strings or one comma-separated string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<List, E> {
                Ok(List(s.split(',').map(str::to_string).collect()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    out.extend(item.split(',').map(str::to_string));
                }
                Ok(List(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl From<Dur> for Duration {
    fn from(d: Dur) -> Duration {
        d.0
    }
}

impl From<Size> for u64 {
    fn from(s: Size) -> u64 {
        s.0
    }
}

impl From<List> for Vec<String> {
    fn from(l: List) -> Vec<String> {
        l.0
    }
}

impl FileConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        FileConfig::parse(&text).map_err(|e| anyhow::anyhow!("config file {}, {e}", path.display()))
    }

    /// The settings of a TOML document; the error says the line, the key and what is wrong.
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        let de = toml::Deserializer::parse(text)
            .map_err(|e| format!("{}: not valid TOML: {}", line_of(text, &e), e.message()))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let at = line_of(text, e.inner());
            let msg = e.inner().message();
            if let Some(key) = unknown_key(msg) {
                return format!("{at}: unknown key `{key}`{}", did_you_mean(&key));
            }
            if let Some(key) = msg
                .strip_prefix("duplicate field `")
                .and_then(|r| r.split('`').next())
            {
                return format!(
                    "{at}: `{key}` is set twice (a key and its other spelling are one setting)"
                );
            }
            let key = e.path().to_string();
            let key = key.split('.').next().unwrap_or(&key);
            format!("{at}: `{key}`: {msg}")
        })
    }

    /// Lays the file's global settings (`models-dir`, `log`, `log-format`) under `cli`.
    fn apply_global(&mut self, cli: &mut Cli, l: &mut Layer) {
        l.set("models_dir", &mut cli.models_dir, self.models_dir.take());
        l.set("log", &mut cli.log, self.log.take());
        l.set("log_format", &mut cli.log_format, self.log_format.take());
    }

    /// Lays `backend` and `quantize` under a command's engine flags.
    fn apply_engine(&mut self, e: &mut EngineArgs, l: &mut Layer) {
        l.set("backend", &mut e.backend, self.backend.take());
        l.set("quantize", &mut e.quantize, self.quantize.take());
    }

    /// Lays every `nlpd serve` setting under `a`.
    fn apply_serve(&mut self, a: &mut super::Args, l: &mut Layer) {
        self.apply_engine(&mut a.engine, l);
        l.set("host", &mut a.host, self.host.take());
        l.set("port", &mut a.port, self.port.take());
        l.set("models", &mut a.models, self.models.take());
        l.set(
            "default_models",
            &mut a.default_models,
            self.default_models.take(),
        );
        l.set(
            "default_prompts",
            &mut a.default_prompts,
            self.default_prompts.take(),
        );
        l.set("preload", &mut a.preload, self.preload.take());
        l.set(
            "memory_budget",
            &mut a.memory_budget,
            self.memory_budget.take().map(|s| Some(s.0)),
        );
        l.set(
            "max_batch_tokens",
            &mut a.max_batch_tokens,
            self.max_batch_tokens.take(),
        );
        l.set(
            "max_batch_size",
            &mut a.max_batch_size,
            self.max_batch_size.take(),
        );
        l.set("max_wait_us", &mut a.max_wait_us, self.max_wait_us.take());
        l.set("max_queue", &mut a.max_queue, self.max_queue.take());
        l.set("api_keys", &mut a.api_keys, self.api_keys.take());
        l.set(
            "api_key_file",
            &mut a.api_key_file,
            self.api_key_file.take().map(Some),
        );
        l.set(
            "max_input_tokens",
            &mut a.max_input_tokens,
            self.max_input_tokens.take().map(Some),
        );
        l.set(
            "max_request_bytes",
            &mut a.max_request_bytes,
            self.max_request_bytes.take(),
        );
        l.set(
            "max_inputs_per_request",
            &mut a.max_inputs_per_request,
            self.max_inputs_per_request.take(),
        );
        l.set(
            "max_new_tokens",
            &mut a.max_new_tokens,
            self.max_new_tokens.take(),
        );
        l.set(
            "rate_limit",
            &mut a.rate_limit,
            self.rate_limit.take().map(Some),
        );
        l.set(
            "request_timeout",
            &mut a.request_timeout,
            self.request_timeout.take(),
        );
        l.set(
            "cache_l1_bytes",
            &mut a.cache_l1_bytes,
            self.cache_l1_bytes.take(),
        );
        l.set(
            "cache_policy",
            &mut a.cache_policy,
            self.cache_policy.take(),
        );
        l.set("cache_ttl", &mut a.cache_ttl, self.cache_ttl.take());
        l.set(
            "redis_url",
            &mut a.redis_url,
            self.redis_url.take().map(Some),
        );
        l.set(
            "cache_prefix",
            &mut a.cache_prefix,
            self.cache_prefix.take(),
        );
        l.set(
            "redis_timeout_ms",
            &mut a.redis_timeout_ms,
            self.redis_timeout_ms.take(),
        );
        l.set(
            "redis_breaker_failures",
            &mut a.redis_breaker_failures,
            self.redis_breaker_failures.take(),
        );
        l.set(
            "redis_breaker_cooldown",
            &mut a.redis_breaker_cooldown,
            self.redis_breaker_cooldown.take(),
        );
        l.set("data_dir", &mut a.data_dir, self.data_dir.take());
        l.set(
            "database_url",
            &mut a.database_url,
            self.database_url.take().map(Some),
        );
        l.set(
            "log_predictions",
            &mut a.log_predictions,
            self.log_predictions.take(),
        );
        l.set("log_inputs", &mut a.log_inputs, self.log_inputs.take());
        l.set("warm_cache", &mut a.warm_cache, self.warm_cache.take());
        l.set(
            "store_flush_rows",
            &mut a.store_flush_rows,
            self.store_flush_rows.take(),
        );
        l.set(
            "store_flush_interval",
            &mut a.store_flush_interval,
            self.store_flush_interval.take(),
        );
        l.set(
            "store_queue_rows",
            &mut a.store_queue_rows,
            self.store_queue_rows.take(),
        );
        l.set(
            "evidence_refresh",
            &mut a.evidence_refresh,
            self.evidence_refresh.take(),
        );
        l.set(
            "shutdown_delay",
            &mut a.shutdown_delay,
            self.shutdown_delay.take(),
        );
        l.set(
            "shutdown_timeout",
            &mut a.shutdown_timeout,
            self.shutdown_timeout.take(),
        );
    }
}

/// Where clap took each setting's value from (by argument id; `None`: absent).
type Sources<'a> = &'a dyn Fn(&str) -> Option<ValueSource>;

/// One layer of the file under the values clap parsed: a file value replaces only a default.
struct Layer<'a> {
    sources: Sources<'a>,
    /// The file's keys that took effect, and those the environment or a flag overrode (as
    /// argument ids).
    applied: Vec<&'static str>,
    overridden: Vec<&'static str>,
}

impl<'a> Layer<'a> {
    fn new(sources: Sources<'a>) -> Self {
        Layer {
            sources,
            applied: Vec::new(),
            overridden: Vec::new(),
        }
    }

    fn set<T, V: Into<T>>(&mut self, id: &'static str, slot: &mut T, file: Option<V>) {
        let Some(v) = file else { return };
        match (self.sources)(id) {
            None | Some(ValueSource::DefaultValue) => {
                *slot = v.into();
                self.applied.push(id);
            }
            Some(_) => self.overridden.push(id),
        }
    }
}

/// The flag (and file key) of an argument id.
fn key_of(id: &str) -> String {
    match id {
        "models" => "model".into(),
        "default_models" => "default-model".into(),
        "default_prompts" => "default-prompt".into(),
        "api_keys" => "api-key".into(),
        _ => id.replace('_', "-"),
    }
}

/// What the file did, for the start-up lines of `nlpd serve`.
pub struct Report {
    pub path: PathBuf,
    pub applied: Vec<String>,
    pub overridden: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(" ")
            }
        };
        write!(
            f,
            "config file {}: applied {}; overridden by NLPD_* or flags: {} ({PRECEDENCE})",
            self.path.display(),
            list(&self.applied),
            list(&self.overridden)
        )
    }
}

/// Lays `file` under what clap parsed into `cli` (`matches`: its matches, the subcommand's
/// within): `serve` takes every setting, the other commands the global and engine ones.
/// `top`/`sub` say where each value of the top level and of the subcommand came from.
fn apply(
    mut file: FileConfig,
    cli: &mut Cli,
    top: Sources,
    sub: Sources,
) -> (Vec<String>, Vec<String>) {
    let mut global = Layer::new(top);
    file.apply_global(cli, &mut global);
    let mut own = Layer::new(sub);
    match &mut cli.command {
        Command::Serve(a) => file.apply_serve(a, &mut own),
        Command::Embed(a) => file.apply_engine(&mut a.engine, &mut own),
        Command::Classify(a) => file.apply_engine(&mut a.engine, &mut own),
        Command::Entities(a) => file.apply_engine(&mut a.engine, &mut own),
        Command::Verify(a) => file.apply_engine(&mut a.engine, &mut own),
        Command::Train(a) => file.apply_engine(&mut a.engine, &mut own),
        Command::Profile(a) => file.apply_engine(&mut a.engine, &mut own),
        Command::Explain(_) | Command::Models(_) | Command::Bench(_) | Command::Tune(_) => {}
    }
    let keys = |a: &[&str], b: &[&str]| a.iter().chain(b).map(|id| key_of(id)).collect();
    (
        keys(&global.applied, &own.applied),
        keys(&global.overridden, &own.overridden),
    )
}

/// The config file of this run: `--config` / `NLPD_CONFIG` for `serve`, `NLPD_CONFIG`
/// (`env_config`) for the other commands.
fn config_path(cli: &Cli, env_config: Option<OsString>) -> Option<PathBuf> {
    match &cli.command {
        Command::Serve(a) => a.config.clone(),
        _ => env_config.filter(|p| !p.is_empty()).map(PathBuf::from),
    }
}

/// Lays the config file (if any) under the parsed command line; for `serve`, what it did.
pub fn layer(cli: &mut Cli, matches: &ArgMatches) -> Result<Option<Report>> {
    let Some(path) = config_path(cli, std::env::var_os("NLPD_CONFIG")) else {
        return Ok(None);
    };
    let file = FileConfig::load(&path)?;
    let sub = matches.subcommand().map(|(_, m)| m).unwrap_or(matches);
    let (applied, overridden) = apply(file, cli, &|id| matches.value_source(id), &|id| {
        sub.value_source(id)
    });
    Ok(matches!(cli.command, Command::Serve(_)).then_some(Report {
        path,
        applied,
        overridden,
    }))
}

/// Parses the command line, flags and NLPD_* variables (clap's errors exit with status 2; a bad
/// value from the environment says which variable it came from).
pub fn parse() -> (Cli, ArgMatches) {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let mut cmd = Cli::command();
    let matches = match cmd.try_get_matches_from_mut(&argv) {
        Ok(m) => m,
        Err(e) => note_env_source(e, &cmd, &argv, &|v| std::env::var_os(v)).exit(),
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit());
    (cli, matches)
}

/// Adds to a clap error about a bad value that it came from an environment variable, when it
/// did (the flag is not on the command line and the variable holds the value).
fn note_env_source(
    mut e: clap::Error,
    cmd: &clap::Command,
    argv: &[OsString],
    env: &dyn Fn(&str) -> Option<OsString>,
) -> clap::Error {
    if !matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return e;
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        e.get(ContextKind::InvalidArg),
        e.get(ContextKind::InvalidValue),
    ) else {
        return e;
    };
    // `--cache-ttl <CACHE_TTL>`: the flag's long name (subcommands not taken stay unbuilt, so
    // their arguments cannot be displayed to compare).
    let Some(long) = arg
        .strip_prefix("--")
        .and_then(|r| r.split([' ', '=']).next())
    else {
        return e;
    };
    let args = cmd
        .get_arguments()
        .chain(cmd.get_subcommands().flat_map(|s| s.get_arguments()));
    let found = args.filter(|a| a.get_long() == Some(long)).find_map(|a| {
        let var = a.get_env()?.to_str()?.to_string();
        let long = format!("--{long}");
        let on_line = argv.iter().skip(1).any(|t| {
            t.to_str()
                .is_some_and(|t| t == long || t.starts_with(&format!("{long}=")))
        });
        let held = env(&var)?;
        let held = held.to_string_lossy();
        let holds = held == *value || held.split(',').any(|p| p == value);
        (!on_line && holds).then_some((var, long))
    });
    if let Some((var, long)) = found {
        e.insert(
            ContextKind::Suggested,
            ContextValue::StyledStrs(vec![format!(
                "the value comes from the environment variable {var} (a {long} flag would override it)"
            )
            .into()]),
        );
    }
    e
}

/// `line N` of the error's span.
fn line_of(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => format!(
            "line {}",
            text[..span.start.min(text.len())].matches('\n').count() + 1
        ),
        None => "at the top".to_string(),
    }
}

/// The key of serde's "unknown field `KEY`, expected one of ..." message.
fn unknown_key(msg: &str) -> Option<String> {
    msg.strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next())
        .map(str::to_string)
}

/// Every key a config file may hold: the flag names of `nlpd serve` and the global flags, and
/// the plural spellings of the list flags.
pub fn valid_keys() -> Vec<String> {
    let cmd = Cli::command();
    let serve = cmd
        .find_subcommand("serve")
        .expect("nlpd has a serve command");
    let mut keys: Vec<String> = cmd
        .get_arguments()
        .chain(serve.get_arguments())
        .filter_map(|a| a.get_long())
        .filter(|l| !matches!(*l, "config" | "help" | "version"))
        .map(str::to_string)
        .collect();
    keys.extend(["models", "default-models", "default-prompts", "api-keys"].map(String::from));
    keys.sort();
    keys.dedup();
    keys
}

/// `" (did you mean `a` or `b`?)"`, or `""` when no valid key is close to `key`.
fn did_you_mean(key: &str) -> String {
    let norm = key.to_ascii_lowercase().replace('_', "-");
    let mut close: Vec<(usize, String)> = valid_keys()
        .into_iter()
        .filter_map(|k| {
            let d = edit_distance(&norm, &k);
            let near = d <= 2.max(k.len() / 3)
                || (norm.len() >= 3 && (k.contains(&norm) || norm.contains(&k)));
            near.then_some((d, k))
        })
        .collect();
    close.sort();
    let names: Vec<String> = close
        .into_iter()
        .take(3)
        .map(|(_, k)| format!("`{k}`"))
        .collect();
    match names.len() {
        0 => " (the keys are the flag names of `nlpd serve --help`)".to_string(),
        1 => format!(" (did you mean {}?)", names[0]),
        _ => format!(
            " (did you mean {} or {}?)",
            names[..names.len() - 1].join(", "),
            names[names.len() - 1]
        ),
    }
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nlpd ARGV` parsed with every environment variable of the command line ignored: these
    /// tests neither read nor change the process environment.
    fn parse_argv(argv: &[&str]) -> (Cli, ArgMatches) {
        let no_env = |a: clap::Arg| a.env(None::<&'static str>);
        let mut cmd = Cli::command().mut_args(no_env);
        let subs: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        for s in subs {
            cmd = cmd.mut_subcommand(s, |c| c.mut_args(no_env));
        }
        let matches = cmd
            .try_get_matches_from(std::iter::once("nlpd").chain(argv.iter().copied()))
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let cli = Cli::from_arg_matches(&matches).unwrap();
        (cli, matches)
    }

    /// `argv` with `toml` laid under it; `env` names the argument ids whose value came from the
    /// environment (the value itself is whatever `argv` gave them).
    fn layered(argv: &[&str], toml: &str, env: &[&str]) -> (Cli, Vec<String>, Vec<String>) {
        let (mut cli, m) = parse_argv(argv);
        let file = FileConfig::parse(toml).unwrap_or_else(|e| panic!("{toml}: {e}"));
        let sub = m.subcommand().map(|(_, s)| s.clone()).unwrap();
        let from = |matches: &ArgMatches, id: &str| {
            if env.contains(&id) {
                Some(ValueSource::EnvVariable)
            } else {
                matches.value_source(id)
            }
        };
        let (applied, overridden) = apply(file, &mut cli, &|id| from(&m, id), &|id| from(&sub, id));
        (cli, applied, overridden)
    }

    fn serve(cli: &Cli) -> &super::super::Args {
        match &cli.command {
            Command::Serve(a) => a,
            _ => panic!("not serve"),
        }
    }

    const FILE: &str = r#"
models-dir = "/srv/models"
max-batch-size = 8
max-wait-us = 250
cache-ttl = "10m"
cache-l1-bytes = "64MiB"
quantize = "int8"
model = ["a=/m/a", "b=/m/b:classify"]
"#;

    #[test]
    fn a_key_only_in_the_file_applies() {
        let (cli, applied, overridden) = layered(&["serve"], FILE, &[]);
        let a = serve(&cli);
        assert_eq!(cli.models_dir, PathBuf::from("/srv/models"));
        assert_eq!(a.max_batch_size, 8);
        assert_eq!(a.max_wait_us, 250);
        assert_eq!(a.cache_ttl, Duration::from_secs(600));
        assert_eq!(a.cache_l1_bytes, 64 << 20);
        assert_eq!(a.engine.quantize, Quantize::Int8);
        assert_eq!(a.models, ["a=/m/a", "b=/m/b:classify"]);
        assert_eq!(applied.len(), 7, "{applied:?}");
        assert!(applied.contains(&"model".to_string()), "{applied:?}");
        assert!(overridden.is_empty());
    }

    #[test]
    fn defaults_apply_when_neither_file_nor_flag_sets_a_key() {
        let (cli, ..) = layered(&["serve"], FILE, &[]);
        let a = serve(&cli);
        assert_eq!(a.max_batch_tokens, 16384);
        assert_eq!(a.cache_policy, Policy::TinyLfu);
        assert_eq!(a.shutdown_delay, Duration::from_secs(5));
        assert_eq!(a.max_request_bytes, 8 << 20);
        assert_eq!(a.request_timeout, Duration::from_secs(30));
        assert_eq!(a.memory_budget, None);
        assert!(a.log_predictions);
        // An empty file changes nothing either.
        let (cli, applied, _) = layered(&["serve"], "", &[]);
        assert!(applied.is_empty());
        assert_eq!(serve(&cli).max_batch_size, 64);
    }

    #[test]
    fn a_flag_beats_the_file() {
        let argv = [
            "serve",
            "--max-batch-size",
            "4",
            "--cache-ttl",
            "5s",
            "--models-dir",
            "/flag",
            "--model",
            "c=/m/c",
        ];
        let (cli, applied, overridden) = layered(&argv, FILE, &[]);
        let a = serve(&cli);
        assert_eq!(a.max_batch_size, 4);
        assert_eq!(a.cache_ttl, Duration::from_secs(5));
        assert_eq!(cli.models_dir, PathBuf::from("/flag"));
        assert_eq!(a.models, ["c=/m/c"]);
        // The rest of the file still applies.
        assert_eq!(a.max_wait_us, 250);
        assert_eq!(a.engine.quantize, Quantize::Int8);
        for k in ["max-batch-size", "cache-ttl", "models-dir", "model"] {
            assert!(overridden.contains(&k.to_string()), "{k}: {overridden:?}");
            assert!(!applied.contains(&k.to_string()), "{k}: {applied:?}");
        }
    }

    #[test]
    fn the_environment_beats_the_file() {
        // `--max-batch-size 16` stands for NLPD_MAX_BATCH_SIZE=16: its source says environment.
        let argv = ["serve", "--max-batch-size", "16", "--quantize", "none"];
        let (cli, _, overridden) = layered(&argv, FILE, &["max_batch_size", "quantize"]);
        let a = serve(&cli);
        assert_eq!(a.max_batch_size, 16);
        assert_eq!(a.engine.quantize, Quantize::None);
        assert_eq!(a.max_wait_us, 250);
        assert_eq!(overridden, ["quantize", "max-batch-size"]);
    }

    #[test]
    fn other_commands_take_only_the_global_and_engine_keys() {
        let (cli, applied, _) = layered(&["embed"], FILE, &[]);
        assert_eq!(cli.models_dir, PathBuf::from("/srv/models"));
        match &cli.command {
            Command::Embed(a) => assert_eq!(a.engine.quantize, Quantize::Int8),
            _ => unreachable!(),
        }
        assert_eq!(applied, ["models-dir", "quantize"]);
        let (cli, applied, _) = layered(&["models", "list"], FILE, &[]);
        assert_eq!(cli.models_dir, PathBuf::from("/srv/models"));
        assert_eq!(applied, ["models-dir"]);
    }

    #[test]
    fn every_key_spelling_of_before_still_reads() {
        let text = r#"
models = "a=/m/a,b=/m/b"
default-models = ["classify=b"]
default_prompt = "a=query"
api-keys = ["k1", "k2,k3"]
max_batch_size = 2
log-format = "json"
log = "debug"
backend = "candle"
cache-policy = "tiny-lfu"
log-predictions = false
preload = true
port = 0
rate-limit = 5
request-timeout = 2.5
memory-budget = 1000000
shutdown-delay = 0
"#;
        let (cli, ..) = layered(&["serve"], text, &[]);
        let a = serve(&cli);
        assert_eq!(a.models, ["a=/m/a", "b=/m/b"]);
        assert_eq!(a.default_models, ["classify=b"]);
        assert_eq!(a.default_prompts, ["a=query"]);
        assert_eq!(a.api_keys, ["k1", "k2", "k3"]);
        assert_eq!(a.max_batch_size, 2);
        assert!(matches!(cli.log_format, LogFormat::Json));
        assert_eq!(cli.log, "debug");
        assert_eq!(a.engine.backend, BackendKind::Candle);
        assert_eq!(a.cache_policy, Policy::TinyLfu);
        assert!(!a.log_predictions && a.preload);
        assert_eq!(a.port, 0);
        assert_eq!(a.rate_limit, Some(5.0));
        assert_eq!(a.request_timeout, Duration::from_millis(2500));
        assert_eq!(a.memory_budget, Some(1_000_000));
        assert_eq!(a.shutdown_delay, Duration::ZERO);
    }

    #[test]
    fn what_tune_writes_reads_back() {
        // `nlpd tune --write` (tune/write.rs): a comment and three integer keys.
        let text = "# nlpd tune: 812 inputs/s, p99 41 ms\nmax-batch-tokens = 4096\nmax-batch-size = 8\nmax-wait-us = 2000\n";
        let (cli, applied, _) = layered(&["serve"], text, &[]);
        let a = serve(&cli);
        assert_eq!(
            (a.max_batch_tokens, a.max_batch_size, a.max_wait_us),
            (4096, 8, 2000)
        );
        assert_eq!(applied.len(), 3);
    }

    #[test]
    fn an_unknown_key_is_named_with_the_close_valid_ones() {
        let e = FileConfig::parse("port = 1\nmax-batch-sise = 8\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("unknown key `max-batch-sise`"), "{e}");
        assert!(e.contains("`max-batch-size`"), "{e}");
        assert!(!e.contains("store-queue-rows"), "only the close keys: {e}");
        let e = FileConfig::parse("ttl = \"1h\"\n").unwrap_err();
        assert!(e.contains("`cache-ttl`"), "{e}");
        let e = FileConfig::parse("[notes]\nowner = \"ops\"\n").unwrap_err();
        assert!(e.contains("unknown key `notes`"), "{e}");
        let e = FileConfig::parse("zzzzzzzz = 1\n").unwrap_err();
        assert!(e.contains("flag names"), "{e}");
    }

    #[test]
    fn a_bad_value_names_the_key_and_the_line() {
        for (text, key, line, what) in [
            (
                "\n\ncache-ttl = \"5 fortnights\"\n",
                "cache-ttl",
                3,
                "unknown duration unit",
            ),
            ("shutdown-delay = -1\n", "shutdown-delay", 1, "a duration"),
            ("port = \"eighty\"\n", "port", 1, "invalid type: string"),
            ("port = 70000\n", "port", 1, "u16"),
            (
                "memory-budget = \"2 XB\"\n",
                "memory-budget",
                1,
                "unknown size unit",
            ),
            ("port = 1\nquantize = \"int3\"\n", "quantize", 2, "int3"),
            ("cache-policy = \"fifo\"\n", "cache-policy", 1, "fifo"),
            (
                "backend = \"gpu\"\n",
                "backend",
                1,
                "expected one of `auto`, `candle`, `fast`",
            ),
            (
                "log-format = \"xml\"\n",
                "log-format",
                1,
                "expected `text` or `json`",
            ),
            ("preload = \"yes\"\n", "preload", 1, "a boolean"),
            ("model = [1, 2]\n", "model[0]", 1, "invalid type: integer"),
        ] {
            let e = FileConfig::parse(text).unwrap_err();
            assert!(e.contains(&format!("`{key}`")), "{text}: {e}");
            assert!(e.contains(&format!("line {line}:")), "{text}: {e}");
            assert!(e.contains(what), "{text}: {e}");
        }
        let e = FileConfig::parse("model = \"a=b\"\nmodels = \"c=d\"\n").unwrap_err();
        assert!(e.contains("set twice"), "{e}");
        let e = FileConfig::parse("port = = 1\n").unwrap_err();
        assert!(e.contains("line 1: not valid TOML"), "{e}");
    }

    #[test]
    fn the_error_names_the_file() {
        let dir = std::env::temp_dir().join(format!("nlpd-config-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nlpd.toml");
        std::fs::write(&path, "max-batch-size = 8\ncache-ttl = \"soon\"\n").unwrap();
        let e = format!("{:#}", FileConfig::load(&path).unwrap_err());
        std::fs::remove_dir_all(&dir).ok();
        assert!(
            e.starts_with(&format!(
                "config file {}, line 2: `cache-ttl`",
                path.display()
            )),
            "{e}"
        );
        let e = format!(
            "{:#}",
            FileConfig::load(&dir.join("none.toml")).unwrap_err()
        );
        assert!(e.contains("cannot read config file"), "{e}");
    }

    #[test]
    fn every_flag_of_serve_is_a_key_of_the_file() {
        // An inline table is the wrong type for every setting: the error must be a type error,
        // not an unknown key. (`apply` checks the other way round: in debug builds clap panics
        // on an argument id it does not have, and every key is set in the tests above.)
        for key in valid_keys() {
            let e = FileConfig::parse(&format!("{key} = {{}}\n")).unwrap_err();
            assert!(!e.contains("unknown key"), "{key}: {e}");
        }
        // FULL sets every key once (the list flags in their singular spelling): each applies.
        let (_, mut applied, _) = layered(&["serve"], FULL, &[]);
        applied.sort();
        let plurals = ["models", "default-models", "default-prompts", "api-keys"];
        let mut want = valid_keys();
        want.retain(|k| !plurals.contains(&k.as_str()));
        assert_eq!(applied, want);
    }

    /// Every key once.
    const FULL: &str = r#"
models-dir = "models"
log = "info"
log-format = "text"
host = "127.0.0.1"
port = 9000
model = "a=/m/a"
default-model = "embed=a"
default-prompt = "a=query"
backend = "fast"
quantize = "none"
preload = true
memory-budget = "2GiB"
max-batch-tokens = 8192
max-batch-size = 32
max-wait-us = 500
max-queue = 1000
api-key = ["k"]
api-key-file = "keys.txt"
max-input-tokens = 256
max-request-bytes = "4MiB"
max-new-tokens = 512
max-inputs-per-request = 100
rate-limit = 50.5
request-timeout = "10s"
cache-l1-bytes = 0
cache-policy = "lru"
cache-ttl = "1d"
redis-url = "redis://127.0.0.1:6379/0"
cache-prefix = "nlpd-test:"
redis-timeout-ms = 50
redis-breaker-failures = 3
redis-breaker-cooldown = "10s"
data-dir = "/var/lib/nlpd"
database-url = "off"
log-predictions = false
log-inputs = true
warm-cache = 10
store-flush-rows = 128
store-flush-interval = "1s"
store-queue-rows = 1000
evidence-refresh = 0
shutdown-delay = "10s"
shutdown-timeout = "30s"
"#;

    #[test]
    fn a_bad_environment_value_is_said_to_come_from_the_environment() {
        let mut cmd = Cli::command();
        let argv: Vec<OsString> = ["nlpd", "serve", "--cache-ttl", "soon"]
            .iter()
            .map(OsString::from)
            .collect();
        let e = cmd.try_get_matches_from_mut(&argv).unwrap_err();
        // The flag is on the command line: no note, whatever the environment holds.
        let env = |_: &str| Some(OsString::from("soon"));
        let e = note_env_source(e, &cmd, &argv, &env).to_string();
        assert!(
            e.contains("--cache-ttl") && !e.contains("environment variable"),
            "{e}"
        );
        // The same error with the flag absent and NLPD_CACHE_TTL holding the value.
        let e = cmd.try_get_matches_from_mut(&argv).unwrap_err();
        let bare: Vec<OsString> = ["nlpd", "serve"].iter().map(OsString::from).collect();
        let env = |v: &str| (v == "NLPD_CACHE_TTL").then(|| OsString::from("soon"));
        let e = note_env_source(e, &cmd, &bare, &env).to_string();
        assert!(
            e.contains("the value comes from the environment variable NLPD_CACHE_TTL"),
            "{e}"
        );
    }

    #[test]
    fn the_example_of_the_operations_guide_loads() {
        let doc = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/OPERATIONS.md"),
        )
        .unwrap();
        let at = doc.find("Example `nlpd.toml`:").expect("the example");
        let block = doc[at..].split("```toml\n").nth(1).unwrap();
        let toml = block.split("```").next().unwrap();
        let (cli, applied, _) = layered(&["serve"], toml, &[]);
        let a = serve(&cli);
        assert_eq!(a.cache_ttl, Duration::from_secs(600));
        assert_eq!(a.memory_budget, Some(1 << 30));
        assert_eq!(a.models.len(), 2);
        assert!(applied.len() >= 10, "{applied:?}");
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("port", "port"), 0);
        assert_eq!(edit_distance("prot", "port"), 2);
        assert_eq!(edit_distance("max-batch-sise", "max-batch-size"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
