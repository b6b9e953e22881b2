//! Embedding prompts: the `prompts` of a sentence-transformers model's
//! `config_sentence_transformers.json` (e.g. e5's `{"query": "query: ", "passage": "passage: "}`)
//! and its `default_prompt_name`. A prompt is text put before each input, as sentence-transformers
//! does: its tokens count toward the model's token limit and are pooled with the input's.

use crate::error::{EngineError, Result};
use crate::files::read_json_opt;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The file sentence-transformers keeps the prompts in.
pub const FILE: &str = "config_sentence_transformers.json";

#[derive(Deserialize, Default)]
struct StConfig {
    #[serde(default)]
    prompts: BTreeMap<String, String>,
    #[serde(default)]
    default_prompt_name: Option<String>,
}

/// A model's named prompts and the one used when a request names none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prompts {
    pub prompts: BTreeMap<String, String>,
    /// Applied when a request gives neither `prompt` nor `prompt_name`.
    pub default_name: Option<String>,
}

/// Why a request's prompt cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptError {
    /// Both `prompt` and `prompt_name` were given.
    Both,
    /// `prompt_name` is not one of the model's prompts.
    Unknown { name: String, known: Vec<String> },
}

impl std::fmt::Display for PromptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PromptError::Both => {
                f.write_str("give either `prompt` (the text) or `prompt_name`, not both")
            }
            PromptError::Unknown { name, known } if known.is_empty() => write!(
                f,
                "the model has no prompt named `{name}`: it defines no prompts \
                 (config_sentence_transformers.json); send the text as `prompt`"
            ),
            PromptError::Unknown { name, known } => write!(
                f,
                "the model has no prompt named `{name}` (its prompts: {})",
                known.join(", ")
            ),
        }
    }
}

impl Prompts {
    /// Reads `config_sentence_transformers.json` in `root`; none when it is absent or has no prompts.
    /// A `default_prompt_name` that names no prompt is an invalid model (sentence-transformers
    /// refuses it too); an empty default prompt counts as none.
    pub fn read(root: &Path) -> Result<Self> {
        let Some(st) = read_json_opt::<StConfig>(&root.join(FILE))? else {
            return Ok(Prompts::default());
        };
        let mut p = Prompts {
            prompts: st.prompts,
            default_name: None,
        };
        if let Some(name) = st.default_prompt_name {
            p.set_default(&name)
                .map_err(|e| EngineError::invalid_model(root, format!("{FILE}: {e}")))?;
        }
        Ok(p)
    }

    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    /// The text of the prompt called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.prompts.get(name).map(String::as_str)
    }

    pub fn names(&self) -> Vec<String> {
        self.prompts.keys().cloned().collect()
    }

    /// Makes `name` the default prompt (`--default-prompt`); it must be one of the prompts.
    pub fn set_default(&mut self, name: &str) -> std::result::Result<(), PromptError> {
        if !self.prompts.contains_key(name) {
            return Err(PromptError::Unknown {
                name: name.to_string(),
                known: self.names(),
            });
        }
        self.default_name = Some(name.to_string());
        Ok(())
    }

    /// The default prompt's text, if the model has one.
    pub fn default_text(&self) -> Option<&str> {
        self.default_name.as_deref().and_then(|n| self.get(n))
    }

    /// The prompt text for one request: `text` as given (`""` turns the default off), else the
    /// prompt called `name`, else the default; `None` (or `Some("")`) means no prompt.
    pub fn choose(
        &self,
        name: Option<&str>,
        text: Option<&str>,
    ) -> std::result::Result<Option<String>, PromptError> {
        let chosen = match (name, text) {
            (Some(_), Some(_)) => return Err(PromptError::Both),
            (None, Some(t)) => Some(t),
            (Some(n), None) => Some(self.get(n).ok_or_else(|| PromptError::Unknown {
                name: n.to_string(),
                known: self.names(),
            })?),
            (None, None) => self.default_text(),
        };
        Ok(chosen.filter(|t| !t.is_empty()).map(str::to_string))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed when dropped.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new() -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("nlpd-prompts-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir_with(json: &str) -> TempDir {
        let d = TempDir::new();
        std::fs::write(d.path().join(FILE), json).unwrap();
        d
    }

    #[test]
    fn reads_prompts_and_the_default() {
        let d = dir_with(
            r#"{"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": "query"}"#,
        );
        let p = Prompts::read(d.path()).unwrap();
        assert_eq!(p.get("passage"), Some("passage: "));
        assert_eq!(p.default_text(), Some("query: "));
        assert_eq!(p.choose(None, None).unwrap().as_deref(), Some("query: "));
        assert_eq!(
            p.choose(Some("passage"), None).unwrap().as_deref(),
            Some("passage: ")
        );
        assert_eq!(p.choose(None, Some("x: ")).unwrap().as_deref(), Some("x: "));
        // An empty literal prompt turns the default off.
        assert_eq!(p.choose(None, Some("")).unwrap(), None);
        assert_eq!(p.choose(Some("query"), Some("x")), Err(PromptError::Both));
        let e = p.choose(Some("nope"), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the model has no prompt named `nope` (its prompts: passage, query)"
        );
    }

    #[test]
    fn missing_or_promptless_files_mean_no_prompts() {
        let d = TempDir::new();
        assert!(Prompts::read(d.path()).unwrap().is_empty());
        // all-MiniLM-L6-v2's file: versions only.
        let d = dir_with(r#"{"__version__": {"sentence_transformers": "2.0.0"}}"#);
        let p = Prompts::read(d.path()).unwrap();
        assert!(p.is_empty());
        assert_eq!(p.choose(None, None).unwrap(), None);
        let d = dir_with(r#"{"prompts": {"query": "q: "}, "default_prompt_name": null}"#);
        assert_eq!(
            Prompts::read(d.path()).unwrap().choose(None, None).unwrap(),
            None
        );
    }

    #[test]
    fn a_default_naming_no_prompt_is_refused() {
        let d = dir_with(r#"{"prompts": {"query": "q: "}, "default_prompt_name": "doc"}"#);
        let e = Prompts::read(d.path()).unwrap_err().to_string();
        assert!(e.contains("no prompt named `doc`"), "{e}");
        let mut p = Prompts::default();
        assert!(p.set_default("query").is_err());
    }
}
