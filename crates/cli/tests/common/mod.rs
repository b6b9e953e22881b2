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

/// Whether the default pack (one model per task, as `nlpd serve` names them) is installed.
pub fn default_pack() -> bool {
    [
        "all-MiniLM-L6-v2",
        "sentiment",
        "rampart-pii-ner",
        "smollm2-135m-instruct",
    ]
    .into_iter()
    .all(|m| pack(m).is_some())
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

/// `nlpd serve --host 127.0.0.1 --port 0 ARGS` with the pack's models dir, its store in `data`, a
/// 300 s request deadline (the suite runs tests side by side on 2 cores: a generation may wait
/// past the default 30 s) and no drain delay; returned with its base URL once it prints
/// `listening on http://ADDR`. Its stderr goes to the test's; a thread echoes its stdout so it
/// never blocks on a full pipe.
pub fn serve(args: &[&str], data: &Path) -> (KillOnDrop, String) {
    use std::io::BufRead;
    const LISTEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_nlpd"))
        .args(["serve", "--port", "0", "--host", "127.0.0.1"])
        .args(["--request-timeout", "300"])
        .args(args)
        .env("NLPD_MODELS_DIR", models())
        .env("NLPD_DATA_DIR", data)
        .env("NLPD_SHUTDOWN_DELAY", "0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn nlpd serve");
    let mut server = KillOnDrop(child);
    let stdout = server.0.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            println!("[nlpd stdout] {line}");
            if let (false, Some(url)) = (sent, line.trim().strip_prefix("listening on ")) {
                let _ = tx.send(url.trim_end_matches('/').to_string());
                sent = true;
            }
        }
    });
    match rx.recv_timeout(LISTEN_TIMEOUT) {
        Ok(url) => (server, url),
        Err(_) => {
            let status = server.0.try_wait().ok().flatten();
            panic!("nlpd serve did not print `listening on ...` within {LISTEN_TIMEOUT:?} (exited: {status:?}; see its stderr above)")
        }
    }
}

/// SIGTERM, then the exit status must be 0 within 30 s (in-flight work finished, store flushed).
pub fn terminate(server: &mut KillOnDrop) {
    let pid = server.0.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(kill.success(), "kill -TERM {pid} failed: {kill}");
    let status = wait_timeout(&mut server.0, std::time::Duration::from_secs(30))
        .expect("nlpd serve did not exit within 30 s of SIGTERM");
    assert!(
        status.success(),
        "nlpd serve exited with {status} after SIGTERM, expected 0"
    );
}

/// The test venv's interpreter (`scripts/test-venv.sh`), or `None` after [`missing`].
pub fn test_python(test: &str) -> Option<PathBuf> {
    let python = repo().join(".venv-test/bin/python");
    if python.is_file() {
        return Some(python);
    }
    missing(
        test,
        &format!("{} (the test venv)", python.display()),
        "scripts/test-venv.sh",
    );
    None
}

/// Runs `python tests/python/SCRIPT URL` (with `env` set and `unset` removed, never through a
/// proxy) for at most 10 minutes, prints its output, and asserts it succeeded, quoting its
/// `FAIL` lines. Returns its stdout.
pub fn python_check(
    python: &Path,
    script: &str,
    url: &str,
    env: &[(&str, &std::ffi::OsStr)],
    unset: &[&str],
) -> String {
    const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
    let path = repo().join("tests/python").join(script);
    assert!(path.is_file(), "{} not found", path.display());
    eprintln!("nlpd serve is up at {url}; running {}", path.display());
    let mut cmd = std::process::Command::new(python);
    cmd.arg(&path)
        .arg(url)
        .current_dir(repo())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in unset {
        cmd.env_remove(k);
    }
    let mut check = KillOnDrop(cmd.spawn().expect("spawn the test venv's python"));
    let out = read_all(check.0.stdout.take().expect("piped stdout"));
    let err = read_all(check.0.stderr.take().expect("piped stderr"));
    let status = wait_timeout(&mut check.0, CHECK_TIMEOUT);
    if status.is_none() {
        let _ = check.0.kill();
        let _ = check.0.wait();
    }
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    println!("--- {script} stdout ---\n{out}--- stderr ---\n{err}--- end ---");
    let status = status.unwrap_or_else(|| panic!("{script} ran past {CHECK_TIMEOUT:?}"));
    assert!(
        status.success(),
        "{script} failed ({status}):\n{}",
        out.lines()
            .filter(|l| l.starts_with("FAIL"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    out
}
