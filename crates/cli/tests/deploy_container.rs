//! The container image, built and run for real: scripts/container-image.sh packages this build's
//! `nlpd` binary into the Dockerfile's `runtime` stage with podman, offline (it makes a
//! debian:bookworm-slim base with debootstrap the first time, about a minute; cached after).
//! The test then runs the image the way an orchestrator would and checks that
//!
//! 1. it serves: /health/ready turns 200 and POST /v1/embed returns a 384-float embedding of
//!    all-MiniLM-L6-v2, mounted read-only at /models;
//! 2. it runs as the unprivileged user 10001 (PID 1 is nlpd with uid 10001, not root) and can
//!    write its default store to /data;
//! 3. `podman stop` (SIGTERM, the image's STOPSIGNAL) drains: /health/ready answers 503
//!    `draining` while the server still serves, then the container exits with status 0 well
//!    before the 30 s stop timeout would SIGKILL it.
//!
//! podman runs the container with runc (crun, Debian's default, cannot set up containers in
//! some sandboxes), explicit nofile/nproc ulimits (podman's defaults exceed what such a sandbox
//! may set) and the host network, on 127.0.0.1 and a free port. Needs podman and runc, and
//! debootstrap plus root when no debian:bookworm-slim image exists yet (`scripts/deploy-deps.sh`),
//! and the MiniLM model (`make models`): missing ones skip the test loudly, or fail it under CI.
//! The container, its /data volume and the image are removed by drop guards, also on failure;
//! containers and images left by an earlier run that was killed are removed at the start.

mod common;

use common::{missing, read_all, wait_timeout, KillOnDrop};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const MODEL: &str = "all-MiniLM-L6-v2";
const DIMENSIONS: usize = 384;
/// Names of this test's containers and tags of its images: `<prefix><pid>-...`.
const CONTAINER_PREFIX: &str = "nlpd-deploy-test-";
const IMAGE_NAME: &str = "nlpd";
const TAG_PREFIX: &str = "deploy-test-";
const BASE_IMAGE: &str = "debian:bookworm-slim";
/// The server's --shutdown-delay in the container: how long it keeps serving with ready = 503.
const DRAIN_DELAY: Duration = Duration::from_secs(2);
/// `podman stop -t`: after this the engine SIGKILLs (exit status 137).
const STOP_GRACE_S: u64 = 30;

/// The image build: the first one runs debootstrap (about a minute, more on a busy machine).
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(STOP_GRACE_S + 30);
/// Any other podman command (run -d, exec, inspect, rm).
const PODMAN_TIMEOUT: Duration = Duration::from_secs(120);
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

fn have_tool(name: &str) -> bool {
    let in_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    in_path
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(name).is_file())
}

/// Runs a command to completion within `timeout` (killed after it); its output.
fn run_bounded(cmd: &mut Command, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = KillOnDrop(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}")),
    );
    let out = read_all(child.0.stdout.take().unwrap());
    let err = read_all(child.0.stderr.take().unwrap());
    let Some(status) = wait_timeout(&mut child.0, timeout) else {
        panic!("{what} did not finish within {timeout:?}");
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default().into_bytes(),
        stderr: err.join().unwrap_or_default().into_bytes(),
    }
}

fn podman(args: &[&str]) -> Output {
    run_bounded(Command::new("podman").args(args), PODMAN_TIMEOUT)
}

/// `podman ARGS` that must succeed; its trimmed stdout.
fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The pid in `<prefix><pid>-...`, if that process is gone: a leftover of a killed run.
fn stale(name: &str, prefix: &str) -> bool {
    let Some(rest) = name.rsplit('/').next().and_then(|n| n.strip_prefix(prefix)) else {
        return false;
    };
    match rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) {
        Some(pid) => pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists(),
        None => false,
    }
}

/// Removes containers and images of earlier runs whose test process no longer exists (a run
/// that was killed before its guards ran); those of concurrent runs are left alone.
fn remove_stale() {
    let names = podman_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    for name in names.lines().filter(|n| stale(n, CONTAINER_PREFIX)) {
        eprintln!("removing stale container {name}");
        let _ = podman(&["rm", "-f", "-v", name]);
    }
    let images = podman_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    for image in images.lines() {
        if let Some((_, tag)) = image.rsplit_once(':') {
            if stale(tag, TAG_PREFIX) {
                eprintln!("removing stale image {image}");
                let _ = podman(&["rmi", "-f", image]);
            }
        }
    }
}

/// Removes the image when dropped.
struct ImageGuard(String);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let _ = podman(&["rmi", "-f", &self.0]);
    }
}

/// Removes the container (and its anonymous /data volume) when dropped; prints its log first
/// when the test is failing.
struct ContainerGuard(String);

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if thread::panicking() {
            let out = podman(&["logs", "--tail", "60", &self.0]);
            eprintln!(
                "--- podman logs {} (last 60 lines) ---\n{}{}---",
                self.0,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = podman(&["rm", "-f", "-v", &self.0]);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// One HTTP/1.1 request (Connection: close): the status and the body, or the I/O error (the
/// server is not, or no longer, listening).
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(HTTP_TIMEOUT))?;
    s.set_write_timeout(Some(HTTP_TIMEOUT))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw);
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP status line"))?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn state(container: &str) -> String {
    podman_ok(&[
        "inspect",
        "--format",
        "{{.State.Status}} exit={{.State.ExitCode}}",
        container,
    ])
}

#[test]
fn container_image_serves_as_non_root_and_drains_on_stop() {
    let repo = common::repo();
    for tool in ["podman", "runc"] {
        if !have_tool(tool) {
            missing("deploy_container", tool, "scripts/deploy-deps.sh");
            return;
        }
    }
    if !podman(&["image", "exists", BASE_IMAGE]).status.success() {
        if !have_tool("debootstrap") {
            missing(
                "deploy_container",
                &format!("debootstrap (to make the {BASE_IMAGE} base image)"),
                "scripts/deploy-deps.sh",
            );
            return;
        }
        // debootstrap needs root.
        let uid = run_bounded(Command::new("id").arg("-u"), Duration::from_secs(10));
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            missing("deploy_container", 
                &format!("{BASE_IMAGE} image (making it with debootstrap needs root)"),
                &format!("sudo scripts/container-image.sh --base-only, or podman pull docker.io/library/{BASE_IMAGE}"),
            );
            return;
        }
    }
    let Some(model) = common::pack(MODEL) else {
        return;
    };
    let model = model.canonicalize().expect("canonical model dir");
    let started = Instant::now();
    remove_stale();

    // 1. The image, from this build's binary.
    let pid = std::process::id();
    let tag = format!("{TAG_PREFIX}{pid}");
    let image = format!("{IMAGE_NAME}:{tag}");
    let binary = env!("CARGO_BIN_EXE_nlpd");
    eprintln!("building {image} from {binary} with scripts/container-image.sh");
    let _image_guard = ImageGuard(image.clone());
    let t = Instant::now();
    let mut build = KillOnDrop(
        Command::new(repo.join("scripts/container-image.sh"))
            .args(["--binary", binary, "--name", IMAGE_NAME, "--tag", &tag])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn scripts/container-image.sh"),
    );
    let build_out = read_all(build.0.stdout.take().unwrap());
    let status = wait_timeout(&mut build.0, BUILD_TIMEOUT).unwrap_or_else(|| {
        panic!("scripts/container-image.sh did not finish within {BUILD_TIMEOUT:?}")
    });
    let printed = build_out.join().unwrap_or_default();
    assert!(
        status.success(),
        "scripts/container-image.sh failed ({status}); its errors are above"
    );
    assert_eq!(
        printed.lines().last().map(str::trim),
        Some(image.as_str()),
        "the script prints the image name last"
    );
    let size = podman_ok(&["image", "inspect", "--format", "{{.Size}}", &image]);
    eprintln!(
        "built {image} in {:.1}s ({:.0} MB)",
        t.elapsed().as_secs_f64(),
        size.parse::<f64>().unwrap_or(0.0) / 1e6
    );
    let config = podman_ok(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}} {{.Config.StopSignal}} {{json .Config.Entrypoint}} {{json .Config.Cmd}}",
        &image,
    ]);
    assert_eq!(
        config, r#"10001:10001 SIGTERM ["nlpd"] ["serve"]"#,
        "image config"
    );

    // 2. Run it as an orchestrator would: read-only models, configuration in the environment.
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let name = format!(
        "{CONTAINER_PREFIX}{pid}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let models_mount = format!(
        "{}:/models:ro",
        model.parent().expect("models dir").display()
    );
    let env_port = format!("NLPD_PORT={port}");
    let env_delay = format!("NLPD_SHUTDOWN_DELAY={}s", DRAIN_DELAY.as_secs());
    let model_arg = format!("{MODEL}=/models/{MODEL}");
    let run_args = [
        "--runtime",
        "runc",
        "run",
        "-d",
        "--name",
        &name,
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--network",
        "host",
        "-v",
        &models_mount,
        "-e",
        &env_port,
        "-e",
        "NLPD_HOST=127.0.0.1",
        "-e",
        &env_delay,
        &image,
        "serve",
        "--model",
        &model_arg,
    ];
    eprintln!("podman {}", run_args.join(" "));
    let _container = ContainerGuard(name.clone());
    podman_ok(&run_args);

    let t = Instant::now();
    loop {
        if let Ok((200, _)) = http(addr, "GET", "/health/ready", "") {
            break;
        }
        let st = state(&name);
        assert!(
            st.starts_with("running"),
            "the container stopped before it was ready: {st}"
        );
        assert!(
            t.elapsed() < READY_TIMEOUT,
            "/health/ready did not answer 200 within {READY_TIMEOUT:?}"
        );
        thread::sleep(Duration::from_millis(200));
    }
    eprintln!("ready on {addr} after {:.1}s", t.elapsed().as_secs_f64());

    let (status, body) =
        http(addr, "POST", "/v1/embed", r#"{"inputs":"hello"}"#).expect("POST /v1/embed");
    assert_eq!(status, 200, "POST /v1/embed: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("embed response is JSON");
    let emb = v["embeddings"][0]
        .as_array()
        .unwrap_or_else(|| panic!("no embeddings[0] in {body}"));
    assert_eq!(emb.len(), DIMENSIONS, "embedding length");
    assert!(
        emb.iter().all(|x| x.as_f64().is_some_and(f64::is_finite)),
        "non-finite embedding values"
    );
    assert!(
        emb.iter().any(|x| x.as_f64() != Some(0.0)),
        "an all-zero embedding"
    );
    eprintln!("POST /v1/embed: {} floats", emb.len());

    // 3. Not root: PID 1 (nlpd itself) has uid 10001; the store in /data is written by it.
    let proc1 = podman_ok(&[
        "exec",
        &name,
        "sh",
        "-c",
        "cat /proc/1/comm; grep '^Uid:' /proc/1/status; id -u",
    ]);
    eprintln!("in the container: {}", proc1.replace('\n', " | "));
    let lines: Vec<&str> = proc1.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("nlpd"),
        "PID 1 is nlpd: {proc1}"
    );
    let uids: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("Uid:"))
        .map(|l| l.split_whitespace().skip(1).collect())
        .unwrap_or_default();
    assert_eq!(
        uids, ["10001"; 4],
        "PID 1's real/effective/saved/fs uid: {proc1}"
    );
    assert_eq!(
        lines.last().copied(),
        Some("10001"),
        "podman exec's uid: {proc1}"
    );
    let data = podman_ok(&["exec", &name, "sh", "-c", "stat -c '%u %n' /data/nlpd.db*"]);
    assert!(
        data.lines()
            .next()
            .is_some_and(|l| l.starts_with("10001 /data/nlpd.db")),
        "nlpd's SQLite store in /data, owned by 10001: {data}"
    );

    // 4. `podman stop`: SIGTERM, drain (ready = 503 while still serving), exit 0.
    eprintln!("podman stop -t {STOP_GRACE_S} {name}, polling /health/ready");
    let t = Instant::now();
    let mut stop = KillOnDrop(
        Command::new("podman")
            .args(["stop", "-t", &STOP_GRACE_S.to_string(), &name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn podman stop"),
    );
    let stop_err = read_all(stop.0.stderr.take().unwrap());
    let mut first_503: Option<(Duration, String)> = None;
    let mut served_while_draining = false;
    let mut last = String::new();
    let stop_status = loop {
        if let Some(st) = stop.0.try_wait().expect("try_wait podman stop") {
            break st;
        }
        assert!(
            t.elapsed() < STOP_TIMEOUT,
            "podman stop did not return within {STOP_TIMEOUT:?}"
        );
        match http(addr, "GET", "/health/ready", "") {
            Ok((503, body)) => {
                if first_503.is_none() {
                    first_503 = Some((t.elapsed(), body));
                }
                if !served_while_draining {
                    if let Ok((200, _)) =
                        http(addr, "POST", "/v1/embed", r#"{"inputs":"draining"}"#)
                    {
                        served_while_draining = true;
                    }
                }
            }
            Ok((s, body)) => last = format!("{s} {body}"),
            Err(e) => last = format!("error: {e}"),
        }
        thread::sleep(Duration::from_millis(50));
    };
    let stopped_after = t.elapsed();
    let stop_err = stop_err.join().unwrap_or_default();
    assert!(
        stop_status.success(),
        "podman stop failed ({stop_status}): {stop_err}"
    );
    let final_state = state(&name);
    eprintln!(
        "stopped after {:.1}s: {final_state}; first 503 at {:?}; served while draining: {served_while_draining}",
        stopped_after.as_secs_f64(),
        first_503.as_ref().map(|(d, _)| *d)
    );
    let (_, drain_body) = first_503.unwrap_or_else(|| {
        panic!(
            "/health/ready never answered 503 between SIGTERM and exit (the container stopped after {stopped_after:?}; last answer: {last})"
        )
    });
    let drain: serde_json::Value = serde_json::from_str(&drain_body).unwrap_or_default();
    assert_eq!(drain["status"], "draining", "the 503 body: {drain_body}");
    assert!(
        served_while_draining,
        "POST /v1/embed was not served during the drain delay"
    );
    assert!(
        stopped_after >= DRAIN_DELAY,
        "the container stopped after {stopped_after:?}, before the {DRAIN_DELAY:?} drain delay"
    );
    assert_eq!(
        final_state, "exited exit=0",
        "the container's state after SIGTERM (exit=137 would mean SIGKILL after -t {STOP_GRACE_S})"
    );
    eprintln!(
        "deploy_container passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
