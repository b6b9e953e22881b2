use super::{load_encoder, model_path, EngineArgs, CHUNK_LINES};
use crate::io::{opt_text_field, process_batched, progress, records, text_field};
use anyhow::Result;
use nlpd_engine::TextInput;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Sequence classification model directory (or pack name).
    #[arg(long, env = "NLPD_CLASSIFY_MODEL")]
    model: Option<String>,
    /// Read JSONL from this file instead of stdin.
    #[arg(long, env = "NLPD_INPUT")]
    input: Option<PathBuf>,
    /// Also print the raw logits in label-id order.
    #[arg(long, env = "NLPD_RAW")]
    raw: bool,
    /// Refuse inputs longer than the model's limit instead of truncating them.
    #[arg(long, env = "NLPD_STRICT")]
    strict: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

pub fn run(args: Args, models_dir: &Path) -> Result<usize> {
    let model = load_encoder(
        &model_path(args.model.as_deref(), "classify", models_dir)?,
        &args.engine,
    )?;
    let labels = model.labels().to_vec();
    let raw = args.raw;
    process_batched(
        records(args.input.as_deref())?,
        &progress(args.input.as_deref()),
        CHUNK_LINES,
        |m| {
            let text = text_field(m, "text")?.to_string();
            let pair = opt_text_field(m, "text_pair")?.map(str::to_string);
            Ok((text, pair))
        },
        |items| {
            let inputs: Vec<TextInput> = items
                .iter()
                .map(|(a, b)| match b {
                    Some(b) => TextInput::Pair(a, b),
                    None => TextInput::Single(a),
                })
                .collect();
            model
                .classify(&inputs, !args.strict)
                .map_err(|e| e.to_string())
        },
        |c| {
            let best = c
                .scores
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (i, &s)| if s > b.1 { (i, s) } else { b },
                )
                .0;
            let scores: Map<String, Value> = labels
                .iter()
                .zip(&c.scores)
                .map(|(l, s)| (l.clone(), json!(s)))
                .collect();
            let mut out = json!({ "label": labels.get(best), "scores": scores });
            if raw {
                out["logits"] = json!(c.logits);
            }
            out
        },
    )
}
