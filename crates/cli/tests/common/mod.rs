//! Shared by the cli integration tests: where the repository, the pack and the datasets are, the
//! CI rule for missing prerequisites, and a temporary directory removed on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn models() -> PathBuf {
    std::env::var_os("NLPD_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("models"))
}

pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A prerequisite made by `make models` / `make datasets`: `None` (loudly) off CI, a failure under CI.
pub fn prerequisite(dir: PathBuf, marker: &str, how: &str) -> Option<PathBuf> {
    if dir.join(marker).is_file() {
        return Some(dir);
    }
    assert!(
        !under_ci(),
        "{} missing under CI: run `{how}`",
        dir.display()
    );
    eprintln!(
        "\n!!! SKIPPING: {} not installed; run `{how}` !!!\n",
        dir.display()
    );
    None
}

/// An installed pack model.
pub fn pack(name: &str) -> Option<PathBuf> {
    prerequisite(models().join(name), ".nlpd-pack.json", "make models")
}

/// `data/datasets` of `make datasets`.
pub fn datasets() -> Option<PathBuf> {
    let dir = std::env::var_os("NLPD_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("data"))
        .join("datasets");
    prerequisite(dir, ".nlpd-datasets.json", "make datasets")
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct Tmp(pub PathBuf);

impl Tmp {
    pub fn new(test: &str, name: &str) -> Self {
        let p =
            std::env::temp_dir().join(format!("nlpd-{test}-test-{}-{name}", std::process::id()));
        std::fs::remove_dir_all(&p).ok();
        std::fs::create_dir_all(&p).expect("temp dir");
        Tmp(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}
