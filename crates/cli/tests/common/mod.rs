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

/// Runs `nlpd SUBCOMMAND ARGS...` with the pack's models directory and no stdin.
pub fn nlpd(subcommand: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_nlpd"))
        .arg(subcommand)
        .args(args)
        .env("NLPD_MODELS_DIR", models())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run nlpd {subcommand}: {e}"))
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// The command's stdout as JSON, after checking it succeeded (stderr shown otherwise).
pub fn json_stdout(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "nlpd failed ({}):\n{}",
        out.status,
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

/// Each `(args, needle)`: `nlpd SUBCOMMAND args` exits 2, without a panic, with a message that
/// names `needle` (the flag at fault).
pub fn assert_refused(subcommand: &str, cases: &[(Vec<&str>, &str)]) {
    for (args, flag) in cases {
        let out = nlpd(subcommand, args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(flag),
            "{args:?}: the message names {flag}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// `nlpd SUBCOMMAND --help` mentions every needle.
pub fn assert_help(subcommand: &str, needles: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nlpd"))
        .args([subcommand, "--help"])
        .output()
        .unwrap_or_else(|e| panic!("nlpd {subcommand} --help: {e}"));
    let help = text(&out.stdout);
    for s in needles {
        assert!(help.contains(s), "--help lacks {s}:\n{help}");
    }
}

/// Under CI a missing prerequisite (a tool, a venv, a model) is a failure naming the fix;
/// elsewhere the test is skipped, loudly.
pub fn missing(test: &str, what: &str, fix: &str) {
    assert!(!under_ci(), "{what} missing under CI: run `{fix}`");
    eprintln!("\n!!! SKIPPING {test}: {what} missing; run `{fix}` !!!\n");
}

/// Kills (and reaps) the child when dropped unless it has already exited: no stray servers or
/// helper processes when an assertion fails.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The child's exit status, or `None` when it is still running after `timeout`.
pub fn wait_timeout(
    child: &mut std::process::Child,
    timeout: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Reads a pipe to its end on a thread (so the child never blocks on a full pipe).
pub fn read_all(r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        use std::io::Read;
        let mut s = String::new();
        let _ = std::io::BufReader::new(r).read_to_string(&mut s);
        s
    })
}
