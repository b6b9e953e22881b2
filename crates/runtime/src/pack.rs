//! The model pack: names the CLI and server accept for models fetched by `make models`.

use std::path::{Path, PathBuf};

/// A model of the pack, installed under the models directory by `scripts/fetch-models.sh`.
#[derive(Debug, Clone, Copy)]
pub struct PackModel {
    /// Directory name under the models dir.
    pub dir: &'static str,
    /// Short names accepted in place of the directory name.
    pub aliases: &'static [&'static str],
    /// The task it serves by default.
    pub task: &'static str,
    /// `default` or `full`.
    pub pack: &'static str,
}

pub const PACK: &[PackModel] = &[
    PackModel {
        dir: "all-MiniLM-L6-v2",
        aliases: &["minilm", "all-minilm-l6-v2"],
        task: "embed",
        pack: "default",
    },
    PackModel {
        dir: "sentiment",
        aliases: &["sentiment-minilm"],
        task: "classify",
        pack: "default",
    },
    PackModel {
        dir: "rampart-pii-ner",
        aliases: &["rampart"],
        task: "entities",
        pack: "default",
    },
    PackModel {
        dir: "smollm2-135m-instruct",
        aliases: &["smollm2"],
        task: "explain",
        pack: "default",
    },
    PackModel {
        dir: "qwen2.5-coder-0.5b-instruct",
        aliases: &["qwen2.5-coder", "qwen"],
        task: "explain",
        pack: "full",
    },
];

/// Errors resolving a model name.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error(
        "model `{name}` is not a path and not a pack model ({known}); pack models live under {dir}"
    )]
    Unknown {
        name: String,
        known: String,
        dir: PathBuf,
    },
    #[error("pack model `{name}` is not installed in {dir}: run `make models` (or scripts/fetch-models.sh{full})")]
    NotInstalled {
        name: String,
        dir: PathBuf,
        full: &'static str,
    },
}

/// The pack model for a name or alias (case-insensitive).
pub fn find(name: &str) -> Option<&'static PackModel> {
    let lower = name.to_ascii_lowercase();
    PACK.iter()
        .find(|m| m.dir.eq_ignore_ascii_case(&lower) || m.aliases.contains(&lower.as_str()))
}

/// The default pack model for a task.
pub fn default_for(task: &str) -> Option<&'static PackModel> {
    PACK.iter().find(|m| m.task == task)
}

/// Resolves `--model`: an existing path wins; otherwise a pack name under `models_dir`.
pub fn resolve_model(name: &str, models_dir: &Path) -> Result<PathBuf, PackError> {
    let as_path = Path::new(name);
    if as_path.exists() {
        return Ok(as_path.to_path_buf());
    }
    match find(name) {
        Some(m) => {
            let dir = models_dir.join(m.dir);
            if dir.exists() {
                Ok(dir)
            } else {
                Err(PackError::NotInstalled {
                    name: name.to_string(),
                    dir: models_dir.to_path_buf(),
                    full: if m.pack == "full" { " full" } else { "" },
                })
            }
        }
        None => Err(PackError::Unknown {
            name: name.to_string(),
            known: PACK.iter().map(|m| m.dir).collect::<Vec<_>>().join(", "),
            dir: models_dir.to_path_buf(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve_case_insensitively() {
        assert_eq!(find("MiniLM").map(|m| m.dir), Some("all-MiniLM-L6-v2"));
        assert_eq!(
            find("all-minilm-l6-v2").map(|m| m.dir),
            Some("all-MiniLM-L6-v2")
        );
        assert_eq!(find("qwen").map(|m| m.pack), Some("full"));
        assert!(find("gpt-9").is_none());
    }

    #[test]
    fn missing_models_say_how_to_get_them() {
        let dir = std::env::temp_dir().join("nlpd-pack-test-empty");
        let err = resolve_model("qwen", &dir).unwrap_err().to_string();
        assert!(err.contains("fetch-models.sh full"), "{err}");
        let err = resolve_model("nope", &dir).unwrap_err().to_string();
        assert!(err.contains("not a pack model"), "{err}");
    }

    #[test]
    fn defaults_per_task() {
        assert_eq!(
            default_for("embed").map(|m| m.dir),
            Some("all-MiniLM-L6-v2")
        );
        assert_eq!(
            default_for("entities").map(|m| m.dir),
            Some("rampart-pii-ner")
        );
        assert_eq!(
            default_for("explain").map(|m| m.dir),
            Some("smollm2-135m-instruct")
        );
        assert_eq!(default_for("classify").map(|m| m.dir), Some("sentiment"));
        assert!(default_for("nli").is_none());
    }
}
