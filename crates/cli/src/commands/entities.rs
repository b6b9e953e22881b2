use super::{load_encoder, model_path, EngineArgs, CHUNK_LINES};
use crate::io::{process_batched, progress, records, text_field};
use anyhow::Result;
use nlpd_engine::{Aggregation, EntityOutput};
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Token classification model directory or pack name [default: rampart-pii-ner].
    #[arg(long, env = "NLPD_ENTITIES_MODEL")]
    model: Option<String>,
    /// Read JSONL from this file instead of stdin.
    #[arg(long, env = "NLPD_INPUT")]
    input: Option<PathBuf>,
    /// How token labels are turned into output.
    #[arg(long, env = "NLPD_AGGREGATION", value_enum, default_value = "simple")]
    aggregation: Aggregation,
    /// Refuse inputs longer than the model's limit instead of truncating them.
    #[arg(long, env = "NLPD_STRICT")]
    strict: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

pub fn run(args: Args, models_dir: &Path) -> Result<usize> {
    let model = load_encoder(
        &model_path(args.model.as_deref(), "entities", models_dir)?,
        &args.engine,
    )?;
    process_batched(
        records(args.input.as_deref())?,
        &progress(args.input.as_deref()),
        CHUNK_LINES,
        |m| text_field(m, "text").map(str::to_string),
        |texts| {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            model
                .entities(&refs, args.aggregation, !args.strict)
                .map_err(|e| e.to_string())
        },
        |out| match out {
            EntityOutput::Spans(e) => json!({ "entities": e }),
            EntityOutput::Tokens(t) => json!({ "tokens": t }),
        },
    )
}
