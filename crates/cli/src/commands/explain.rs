use super::model_path;
use crate::io::{opt_text_field, progress, records, text_field, Output};
use anyhow::{Context, Result};
use nlpd_engine::generate::{GenModel, GenerateOptions};
use nlpd_runtime::prompts::{explain_messages, Detail};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// GGUF file, directory holding one, or pack name [default: smollm2-135m-instruct].
    #[arg(long, env = "NLPD_EXPLAIN_MODEL")]
    model: Option<String>,
    /// Read JSONL ({"code": ..., "language"?: ...}) from this file instead of stdin.
    #[arg(long, env = "NLPD_INPUT")]
    input: Option<PathBuf>,
    /// `brief` (what the code does) or `detailed` (purpose, inputs and outputs, steps, edge
    /// cases); a record's own "detail" field wins.
    #[arg(long, env = "NLPD_EXPLAIN_DETAIL", default_value = "brief", value_parser = parse_detail)]
    detail: Detail,
    /// Most tokens to generate per input [default: 256 brief, 512 detailed].
    #[arg(long, env = "NLPD_MAX_TOKENS")]
    max_tokens: Option<usize>,
    /// Sampling temperature; 0 is greedy (deterministic).
    #[arg(long, env = "NLPD_TEMPERATURE", default_value_t = 0.0)]
    temperature: f64,
    /// Nucleus sampling threshold (with a temperature above 0).
    #[arg(long, env = "NLPD_TOP_P")]
    top_p: Option<f64>,
    /// Random seed for sampling.
    #[arg(long, env = "NLPD_SEED", default_value_t = nlpd_engine::generate::DEFAULT_SEED)]
    seed: u64,
    /// Stop when this text is generated (repeatable).
    #[arg(long, env = "NLPD_STOP")]
    stop: Vec<String>,
    /// Penalty for repeating recent tokens (1.0 = off); small models loop without it.
    #[arg(long, env = "NLPD_REPEAT_PENALTY", default_value_t = 1.1)]
    repeat_penalty: f32,
    /// Write one JSON line per input ({"explanation", "tokens", "finish_reason"}) instead of streaming text.
    #[arg(long, env = "NLPD_JSON")]
    json: bool,
}

pub fn run(args: Args, models_dir: &Path) -> Result<usize> {
    let path = model_path(args.model.as_deref(), "explain", models_dir)?;
    let mut model =
        GenModel::load(&path).with_context(|| format!("cannot load model {}", path.display()))?;
    let opts = GenerateOptions {
        max_tokens: 0,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
        stop: args.stop.clone(),
        repeat_penalty: args.repeat_penalty,
        constraint: None,
    };
    let mut out = Output::new();
    // Streamed text goes to stdout; the bar only shows for --input files with --json on a terminal.
    let bar = if args.json {
        progress(args.input.as_deref())
    } else {
        indicatif::ProgressBar::hidden()
    };
    for rec in records(args.input.as_deref())? {
        bar.inc(1);
        let item = rec.value.and_then(|m| {
            let code = text_field(&m, "code")
                .or_else(|_| text_field(&m, "text"))?
                .to_string();
            let lang = opt_text_field(&m, "language")?.map(str::to_string);
            let detail = match opt_text_field(&m, "detail")? {
                None => args.detail,
                Some(d) => Detail::parse(d).ok_or_else(|| {
                    format!("field `detail` must be \"brief\" or \"detailed\", not {d:?}")
                })?,
            };
            Ok((code, lang, detail))
        });
        let (code, lang, detail) = match item {
            Ok(x) => x,
            Err(e) => {
                out.error(rec.line, &e)?;
                continue;
            }
        };
        let prompt = model
            .render_chat(&explain_messages(&code, lang.as_deref(), detail))
            .and_then(|p| model.encode(&p));
        let ids = match prompt {
            Ok(ids) => ids,
            Err(e) => {
                out.error(rec.line, &e.to_string())?;
                continue;
            }
        };
        let streaming = !args.json;
        let opts = GenerateOptions {
            max_tokens: args
                .max_tokens
                .unwrap_or_else(|| detail.default_max_tokens()),
            ..opts.clone()
        };
        let result = model.generate(&ids, &opts, &mut |piece| {
            if streaming {
                let w = out.raw();
                let ok = w
                    .write_all(piece.as_bytes())
                    .and_then(|_| w.flush())
                    .is_ok();
                return ok;
            }
            true
        });
        match result {
            Ok(g) if args.json => out.value(&json!({
                "explanation": g.text.trim(),
                "tokens": g.token_ids.len(),
                "prompt_tokens": g.prompt_tokens,
                "finish_reason": g.finish_reason.as_str(),
            }))?,
            Ok(_) => {
                out.raw().write_all(b"\n")?;
                out.flush()?;
            }
            Err(e) => out.error(rec.line, &e.to_string())?,
        }
    }
    bar.finish_and_clear();
    Ok(out.failed)
}

fn parse_detail(s: &str) -> Result<Detail, String> {
    Detail::parse(s).ok_or_else(|| format!("expected `brief` or `detailed`, not `{s}`"))
}
