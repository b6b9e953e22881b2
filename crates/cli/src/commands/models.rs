//! `nlpd models list|info`: what the pack holds and what a model directory or GGUF file is.

use anyhow::{Context, Result};
use nlpd_engine::generate::GenModel;
use nlpd_engine::modeldir::EncoderDir;
use nlpd_runtime::{ModelSpec, PACK};
use serde_json::json;
use std::path::Path;

#[derive(clap::Subcommand)]
pub enum Command {
    /// The pack's models: name, aliases, task, pack, and whether they are installed.
    List {
        /// One JSON object per model instead of a table.
        #[arg(long, env = "NLPD_JSON")]
        json: bool,
    },
    /// What a model is: task, architecture, labels, token limit, pooling (a path or a pack name),
    /// and for an encoder the precision and kernel it would run with --backend/--quantize on
    /// this CPU.
    Info {
        /// Model directory, GGUF file, or pack name.
        model: String,
        #[command(flatten)]
        engine: super::EngineArgs,
    },
}

pub fn run(cmd: Command, models_dir: &Path) -> Result<usize> {
    match cmd {
        Command::List { json: as_json } => {
            if !as_json {
                println!(
                    "{:<30} {:<24} {:<9} {:<8} installed",
                    "name", "aliases", "task", "pack"
                );
            }
            for m in PACK {
                let dir = models_dir.join(m.dir);
                let installed = dir.join(".nlpd-pack.json").is_file();
                if as_json {
                    println!(
                        "{}",
                        json!({"name": m.dir, "aliases": m.aliases, "task": m.task, "pack": m.pack,
                        "installed": installed, "path": dir.display().to_string()})
                    );
                } else {
                    println!(
                        "{:<30} {:<24} {:<9} {:<8} {}",
                        m.dir,
                        m.aliases.join(","),
                        m.task,
                        m.pack,
                        if installed { "yes" } else { "no (make models)" }
                    );
                }
            }
            Ok(0)
        }
        Command::Info { model, engine } => {
            let path = nlpd_runtime::resolve_model(&model, models_dir)?;
            let spec = ModelSpec::inspect(&model, &path, None).map_err(anyhow::Error::msg)?;
            let mut info = json!({"name": model, "path": path.display().to_string(), "task": spec.task,
                "kind": spec.kind, "weights_bytes": spec.bytes});
            if path.is_dir() && path.join("config.json").is_file() {
                let dir = EncoderDir::open(&path)?;
                info["architecture"] = json!(dir.config.architecture);
                info["family"] = json!(dir.config.family.name());
                info["hidden_size"] = json!(dir.config.hidden_size);
                info["layers"] = json!(dir.config.num_layers);
                info["max_tokens"] = json!(dir.max_len);
                info["pooling"] = json!(format!("{:?}", dir.pooling).to_lowercase());
                info["normalized"] = json!(dir.normalized);
                info["labels"] = json!(dir.config.id2label);
                // What a load with these options would run on this CPU (nothing is loaded).
                match nlpd_engine::planned_kernel(dir.config.family, &engine.load_options()) {
                    Ok(k) => {
                        info["precision"] = json!(k.precision().precision());
                        info["kernel"] = json!(k.as_str());
                    }
                    Err(e) => {
                        info["precision"] = json!(engine.quantize.precision());
                        info["kernel"] = serde_json::Value::Null;
                        info["kernel_error"] = json!(e.to_string());
                    }
                }
            } else {
                let m = GenModel::load(&path)
                    .with_context(|| format!("cannot load {}", path.display()))?;
                info["architecture"] = json!(m.architecture());
                info["context_length"] = json!(m.context_length());
                info["vocab_size"] = json!(m.tokenizer().get_vocab_size(true));
                info["file"] = json!(m.path().display().to_string());
            }
            println!("{}", serde_json::to_string_pretty(&info)?);
            Ok(0)
        }
    }
}
