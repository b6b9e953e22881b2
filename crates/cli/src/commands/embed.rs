use super::{load_encoder, model_path, EngineArgs, CHUNK_LINES};
use crate::io::{process_batched, progress, records, text_field};
use anyhow::Result;
use nlpd_engine::EmbedOptions;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Model directory or pack name [default: all-MiniLM-L6-v2].
    #[arg(long, env = "NLPD_EMBED_MODEL")]
    model: Option<String>,
    /// Read JSONL from this file instead of stdin.
    #[arg(long, env = "NLPD_INPUT")]
    input: Option<PathBuf>,
    /// L2-normalize the embeddings (models ending in a Normalize module always are).
    #[arg(long, env = "NLPD_NORMALIZE")]
    normalize: bool,
    /// Keep only the first N dimensions (Matryoshka models).
    #[arg(long, env = "NLPD_DIMENSIONS")]
    dimensions: Option<usize>,
    /// Refuse inputs longer than the model's limit instead of truncating them.
    #[arg(long, env = "NLPD_STRICT")]
    strict: bool,
    /// Put this prompt of the model (config_sentence_transformers.json `prompts`, e.g. `query`)
    /// before every text; default: the model's `default_prompt_name`, if any.
    #[arg(long, env = "NLPD_PROMPT_NAME", conflicts_with = "prompt")]
    prompt_name: Option<String>,
    /// Put this text before every text (e.g. `"query: "`); `""` turns the model's default off.
    #[arg(long, env = "NLPD_PROMPT")]
    prompt: Option<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

pub fn run(args: Args, models_dir: &Path) -> Result<usize> {
    let model = load_encoder(
        &model_path(args.model.as_deref(), "embed", models_dir)?,
        &args.engine,
    )?;
    let prompt = model
        .dir()
        .prompts
        .choose(args.prompt_name.as_deref(), args.prompt.as_deref())
        .map_err(|e| anyhow::anyhow!("--prompt-name: {e}"))?
        .unwrap_or_default();
    let opts = EmbedOptions {
        normalize: args.normalize.then_some(true),
        dimensions: args.dimensions,
        truncate: !args.strict,
    };
    process_batched(
        records(args.input.as_deref())?,
        &progress(args.input.as_deref()),
        CHUNK_LINES,
        |m| text_field(m, "text").map(|t| format!("{prompt}{t}")),
        |texts| {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            model.embed(&refs, &opts).map_err(|e| e.to_string())
        },
        |v| json!({ "embedding": v }),
    )
}
