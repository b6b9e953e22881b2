//! The server bench starts when no `--url` is given (and tune starts for each setting): this same
//! binary's `nlpd serve` on a free local port, killed when the guard drops (end of run, error or
//! Ctrl-C).

use super::client::Client;
use anyhow::{bail, Context, Result};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const STDERR_LINES: usize = 30;

/// The child server; killed and reaped on drop, its temporary data dir removed.
pub struct OwnServer {
    child: Child,
    pub url: String,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// The thread copying the child's stderr into `stderr_tail`; ends when the child exits.
    reader: Option<std::thread::JoinHandle<()>>,
    data_dir: Option<PathBuf>,
    /// The command that started it, for messages (`bench`, `tune`).
    who: &'static str,
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if let Some(d) = &self.data_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

impl OwnServer {
    fn tail(&self) -> String {
        let t = self.stderr_tail.lock().unwrap_or_else(|p| p.into_inner());
        if t.is_empty() {
            "(nothing on stderr)".into()
        } else {
            t.iter().cloned().collect::<Vec<_>>().join("\n")
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's peak resident memory so far (`VmHWM`: the high-water mark the kernel keeps,
    /// so no sample can miss a peak); `None` where there is no procfs or the child has exited.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        super::sys::status_bytes(Some(self.pid()), "VmHWM")
    }

    /// Spawns `nlpd serve --host 127.0.0.1 --port P --models-dir DIR [SERVE_ARGS]` and waits
    /// for `GET /health/ready` to answer 200. `who` names the command in messages.
    pub async fn start(
        who: &'static str,
        models_dir: &Path,
        serve_args: &[String],
        ready_timeout: Duration,
        api_key: Option<&str>,
    ) -> Result<OwnServer> {
        let exe =
            std::env::current_exe().context("cannot find the nlpd binary to start a server")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("cannot find a free local port")?
            .port();
        let mut cmd = Command::new(exe);
        cmd.args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--models-dir")
            .arg(models_dir);
        // The prediction store goes to a temporary directory unless the user chose one.
        let data_dir = if serve_args.iter().any(|a| a.starts_with("--data-dir"))
            || std::env::var_os("NLPD_DATA_DIR").is_some()
        {
            None
        } else {
            let d = std::env::temp_dir().join(format!("nlpd-{who}-{}-{port}", std::process::id()));
            cmd.arg("--data-dir").arg(&d);
            Some(d)
        };
        if let Some(k) = api_key {
            if !serve_args.iter().any(|a| a.starts_with("--api-key")) {
                cmd.env("NLPD_API_KEYS", k);
            }
        }
        cmd.args(serve_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("cannot start `nlpd serve`")?;
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let reader = child.stderr.take().map(|err| {
            let tail = stderr_tail.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                    if t.len() == STDERR_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            })
        });
        let mut server = OwnServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            stderr_tail,
            reader,
            data_dir,
            who,
        };
        server.wait_ready(ready_timeout, api_key).await?;
        Ok(server)
    }

    async fn wait_ready(&mut self, timeout: Duration, api_key: Option<&str>) -> Result<()> {
        let client = Client::new(&self.url, api_key, Duration::from_secs(5))?;
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().context("cannot watch `nlpd serve`")? {
                // Its stderr is closed now: let the reader take the last lines.
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                bail!(
                    "the `nlpd serve` that {} started exited ({status}) before it was ready; its stderr ends with:\n{}",
                    self.who,
                    self.tail()
                );
            }
            let last = match client.get_json("/health/ready").await {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if started.elapsed() >= timeout {
                bail!(
                    "the `nlpd serve` that {} started was not ready within {:.0}s (--ready-timeout; last: {last}); its stderr ends with:\n{}",
                    self.who,
                    timeout.as_secs_f64(),
                    self.tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
