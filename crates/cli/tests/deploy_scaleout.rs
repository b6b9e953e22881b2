//! Scale-out, verified: three `nlpd serve` replicas behind a real HAProxy, sharing one Redis (the
//! L2 cache) and one PostgreSQL (the store: prediction log and evidence corpus). The test starts
//! all of them itself, on 127.0.0.1 and free ports, with their data in a temporary directory, so
//! it can stop and kill them:
//!
//! 1. the evidence corpus is consistent: documents posted through the balancer (so to different
//!    replicas) are listed by every replica, each asked directly, within a bounded wait;
//! 2. L2 is shared: a text embedded by replica 1 is an L2 hit on replica 2, with the same vector;
//! 3. under a closed-loop load through HAProxy (16 clients, POST /v1/embed), in order: replica 3
//!    gets SIGTERM and drains (503 on /health/ready at once, HAProxy takes it out, it exits 0),
//!    Redis is SIGKILLed (the breaker opens, L1 and compute serve), PostgreSQL is stopped. Not
//!    one request may fail, and the remaining replicas stay ready throughout;
//! 4. with PostgreSQL down, both replicas still serve the same corpus from their in-memory
//!    indexes (`GET /v1/evidence`, `/v1/verify`), and a read that needs the store is a 503.
//!
//! HAProxy's configuration is tests/deploy/scaleout/haproxy.cfg.in (each setting is explained
//! there). Needs haproxy, redis-server and PostgreSQL's initdb/pg_ctl (`scripts/deploy-deps.sh`)
//! and the MiniLM model (`make models`): missing ones skip the test loudly, or fail it under CI.
//! PostgreSQL refuses to run as root: as root the test runs it as the `postgres` user (or
//! `nobody`). Every child is stopped by a drop guard, also when an assertion fails. The verdicts
//! after the set-up are collected and reported together at the end, so one run shows every
//! problem; a report (counts, latencies, drain timings, HAProxy's counters) is printed before them.

mod common;

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

const MODEL: &str = "all-MiniLM-L6-v2";
const DIMENSIONS: usize = 384;
const REPLICAS: usize = 3;
/// The replicas' `--shutdown-delay`: how long a drained replica keeps serving (503 on ready).
const DRAIN_DELAY: Duration = Duration::from_secs(3);
/// Load clients (threads, each one keep-alive connection to HAProxy, closed loop).
const CLIENTS: usize = 16;
/// Requests the load must complete in each phase, before and after each event (it kept going).
/// No floor on the total: that would assert the machine's speed, not the behaviour.
const MIN_PER_PHASE: usize = 20;

const LISTEN_TIMEOUT: Duration = Duration::from_secs(120);
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const SERVICE_TIMEOUT: Duration = Duration::from_secs(30);
const EVIDENCE_SYNC_TIMEOUT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A client's read timeout: longer than HAProxy's `timeout server` (45 s), so HAProxy answers first.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// SIGTERM to exit: the delay, the in-flight work and the log flush, with room for a busy machine.
const DRAIN_EXIT_TIMEOUT: Duration = Duration::from_secs(40);
/// The load threads stop by themselves after this, whatever happens to the test.
const LOAD_HARD_STOP: Duration = Duration::from_secs(150);

// Phases of the load: how long it runs before the first event and after each.
const WARMUP: Duration = Duration::from_secs(3);
const AFTER_DRAIN: Duration = Duration::from_secs(3);
const AFTER_REDIS: Duration = Duration::from_secs(4);
const AFTER_POSTGRES: Duration = Duration::from_secs(4);

// ---------------------------------------------------------------------------------------------
// Progress output, with seconds since the test started.

fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

fn now_s() -> f64 {
    t0().elapsed().as_secs_f64()
}

macro_rules! say {
    ($($arg:tt)*) => { eprintln!("[{:7.2}s] {}", now_s(), format!($($arg)*)) };
}

// ---------------------------------------------------------------------------------------------
// Prerequisites.

fn missing(what: &str, fix: &str) {
    assert!(!common::under_ci(), "{what} missing under CI: run `{fix}`");
    eprintln!("\n!!! SKIPPING deploy_scaleout: {what} missing; run `{fix}` !!!\n");
}

/// A program on PATH, in the sbin directories (haproxy lives in /usr/sbin) or, for PostgreSQL's
/// tools, in Debian's /usr/lib/postgresql/<version>/bin (newest first).
fn find_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"].map(PathBuf::from));
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = rd.flatten().map(|e| e.path().join("bin")).collect();
        versions.sort();
        dirs.extend(versions.into_iter().rev());
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn user_exists(name: &str) -> bool {
    Command::new("id")
        .args(["-u", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client over std::net (keep-alive, Content-Length and chunked bodies).

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The start of the body, for messages.
    fn snippet(&self) -> String {
        self.text().chars().take(300).collect()
    }
}

fn broken(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn eof(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("connection closed {what}"),
    )
}

struct Conn {
    reader: BufReader<TcpStream>,
    host: String,
    /// False once either side asked to close: the next request needs a new connection.
    open: bool,
}

impl Conn {
    fn open(addr: &str, timeout: Duration) -> io::Result<Conn> {
        let sa: SocketAddr = addr
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
        let stream = TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(stream),
            host: addr.to_string(),
            open: true,
        })
    }

    fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        keep_alive: bool,
    ) -> io::Result<Resp> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: nlpd-deploy-scaleout-test\r\nAccept: application/json\r\n",
            self.host
        );
        if let Some(b) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        if !keep_alive {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if let Some(b) = body {
            bytes.extend_from_slice(b);
        }
        let result = self
            .reader
            .get_mut()
            .write_all(&bytes)
            .and_then(|()| read_response(&mut self.reader));
        match &result {
            Ok(r) => {
                let close = r
                    .header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                self.open = keep_alive && !close;
            }
            Err(_) => self.open = false,
        }
        result
    }
}

fn read_response(r: &mut impl BufRead) -> io::Result<Resp> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(eof("before a response"));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| broken(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(eof("in the response headers"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        if (100..200).contains(&status) {
            continue; // 100 Continue and friends: the real response follows
        }
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = resp
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok());
        if chunked {
            loop {
                line.clear();
                if r.read_line(&mut line)? == 0 {
                    return Err(eof("in a chunked body"));
                }
                let size_hex = line.trim().split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_hex, 16)
                    .map_err(|_| broken(format!("bad chunk size {line:?}")))?;
                if size == 0 {
                    loop {
                        line.clear();
                        if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let start = resp.body.len();
                resp.body.resize(start + size, 0);
                r.read_exact(&mut resp.body[start..])?;
                let mut crlf = [0u8; 2];
                r.read_exact(&mut crlf)?;
            }
        } else if let Some(n) = length {
            resp.body.resize(n, 0);
            r.read_exact(&mut resp.body)?;
        } else if status != 204 && status != 304 {
            r.read_to_end(&mut resp.body)?;
        }
        return Ok(resp);
    }
}

/// One request on a fresh connection (`Connection: close`).
fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> io::Result<Resp> {
    let bytes = body.map(|v| serde_json::to_vec(v).expect("serialize a request"));
    Conn::open(addr, REQUEST_TIMEOUT)?.request(method, path, bytes.as_deref(), false)
}

/// A request that must answer 200 with JSON.
fn call(addr: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    let r = http(addr, method, path, body)
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"));
    assert_eq!(
        r.status,
        200,
        "{method} http://{addr}{path} answered {}: {}",
        r.status,
        r.snippet()
    );
    r.json()
}

/// The sum of a Prometheus counter or gauge over the series carrying every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn embedding(v: &Value) -> Option<Vec<f64>> {
    v["embeddings"][0]
        .as_array()?
        .iter()
        .map(Value::as_f64)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Child processes.

/// Echoes a child's output with a prefix (nextest shows it when the test fails) and hands every
/// line to `tx`.
fn pump(name: String, r: impl Read + Send + 'static, tx: Option<mpsc::Sender<String>>) {
    thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            eprintln!("[{:7.2}s] [{name}] {line}", now_s());
            if let Some(tx) = &tx {
                let _ = tx.send(line);
            }
        }
    });
}

fn kill_and_reap(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

struct Replica {
    name: String,
    child: Child,
    addr: String,
}

/// A PostgreSQL cluster of this test (run as `user` when the test runs as root).
struct Postgres {
    pg_ctl: PathBuf,
    data: PathBuf,
    user: Option<String>,
    running: bool,
}

impl Postgres {
    fn command(&self, program: &Path) -> Command {
        match &self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    fn stop(&mut self, mode: &str) -> io::Result<std::process::Output> {
        let out = self
            .command(&self.pg_ctl)
            .arg("stop")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", mode, "-w", "-t", "30"])
            .stdin(Stdio::null())
            .output()?;
        if out.status.success() {
            self.running = false;
        }
        Ok(out)
    }
}

/// Everything this test started. Dropping it (at the end, or when an assertion fails) stops the
/// load, kills the replicas, HAProxy and Redis, stops PostgreSQL at once, and then removes the
/// temporary directory (`tmp` is dropped after `drop` has run).
struct Cluster {
    stop_load: Arc<AtomicBool>,
    replicas: Vec<Replica>,
    haproxy: Option<Child>,
    redis: Option<Child>,
    postgres: Option<Postgres>,
    tmp: common::Tmp,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_load.store(true, Ordering::SeqCst);
        for r in &mut self.replicas {
            kill_and_reap(&mut r.child);
        }
        if let Some(c) = &mut self.haproxy {
            kill_and_reap(c);
        }
        if let Some(c) = &mut self.redis {
            kill_and_reap(c);
        }
        if let Some(pg) = &mut self.postgres {
            if pg.running {
                let _ = pg.stop("immediate");
            }
        }
    }
}

impl Cluster {
    fn replica(&self, i: usize) -> &str {
        &self.replicas[i].addr
    }
}

fn start_redis(redis: &Path, dir: &Path) -> (Child, String) {
    let port = free_port();
    let mut child = Command::new(redis)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn redis-server");
    pump("redis".into(), child.stdout.take().unwrap(), None);
    pump("redis".into(), child.stderr.take().unwrap(), None);
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + SERVICE_TIMEOUT;
    loop {
        if redis_ping(&addr) {
            return (child, addr);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("redis-server exited at start ({status}); see its output above");
        }
        assert!(
            Instant::now() < deadline,
            "redis-server did not answer PING on {addr} within {SERVICE_TIMEOUT:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn redis_ping(addr: &str) -> bool {
    let Ok(sa) = addr.parse::<SocketAddr>() else {
        return false;
    };
    let Ok(mut s) = TcpStream::connect_timeout(&sa, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

/// initdb + pg_ctl start (fsync off: a throw-away test database). Returns the cluster and its port.
fn start_postgres(initdb: &Path, pg_ctl: &Path, dir: &Path) -> (Postgres, u16) {
    let user = running_as_root().then(|| {
        if user_exists("postgres") {
            "postgres".to_string()
        } else {
            "nobody".to_string()
        }
    });
    std::fs::create_dir_all(dir).expect("create the postgres dir");
    if let Some(u) = &user {
        // The user must reach its directory whatever the umask made of the test's temp dir.
        if let Some(parent) = dir.parent() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
                .expect("chmod 755 the test's temp dir");
        }
        let ok = Command::new("chown")
            .arg("-R")
            .arg(u)
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chown -R {u} {}", dir.display());
    }
    let data = dir.join("data");
    let mut pg = Postgres {
        pg_ctl: pg_ctl.to_path_buf(),
        data: data.clone(),
        user,
        running: false,
    };
    let out = pg
        .command(initdb)
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed ({}) as {:?}:\n{}{}",
        out.status,
        pg.user,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
        dir.display()
    );
    pg.running = true; // from here on the guard stops it, whatever pg_ctl answers
    let out = pg
        .command(pg_ctl)
        .arg("start")
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("postgres.log"))
        .args(["-w", "-t", "60", "-o", &opts])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run pg_ctl start");
    let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "pg_ctl start failed ({}):\n{}{}\n--- postgres.log ---\n{log}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (pg, port)
}

fn spawn_replica(
    i: usize,
    model: &Path,
    redis: &str,
    database: &str,
    prefix: &str,
    data: &Path,
) -> (Replica, mpsc::Receiver<String>) {
    let name = format!("r{}", i + 1);
    let mut child = Command::new(env!("CARGO_BIN_EXE_nlpd"))
        .args(["serve", "--host", "127.0.0.1", "--port", "0"])
        .arg("--model")
        .arg(format!("{MODEL}={}", model.display()))
        .arg("--preload")
        .args(["--redis-url", &format!("redis://{redis}")])
        .args(["--database-url", database])
        .args(["--cache-prefix", prefix])
        .args(["--evidence-refresh", "1s"])
        .arg("--data-dir")
        .arg(data)
        .env("NLPD_SHUTDOWN_DELAY", format!("{}s", DRAIN_DELAY.as_secs()))
        .env("NLPD_SHUTDOWN_TIMEOUT", "20s")
        .env("NLPD_MODELS_DIR", common::models())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nlpd serve");
    let (tx, rx) = mpsc::channel();
    pump(name.clone(), child.stdout.take().unwrap(), Some(tx));
    pump(name.clone(), child.stderr.take().unwrap(), None);
    (
        Replica {
            name,
            child,
            addr: String::new(),
        },
        rx,
    )
}

fn wait_listening(r: &mut Replica, rx: &mpsc::Receiver<String>, deadline: Instant) {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(500))) {
            Ok(line) => {
                if let Some(url) = line.trim().strip_prefix("listening on http://") {
                    r.addr = url.trim_end_matches('/').to_string();
                    return;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = r.child.try_wait().ok().flatten();
                panic!(
                    "{} closed its stdout before `listening on ...` (exited: {status:?}; see its log above)",
                    r.name
                );
            }
        }
        if let Ok(Some(status)) = r.child.try_wait() {
            panic!("{} exited at start ({status}); see its log above", r.name);
        }
        assert!(
            Instant::now() < deadline,
            "{} did not print `listening on ...` within {LISTEN_TIMEOUT:?}",
            r.name
        );
    }
}

fn wait_ready(name: &str, addr: &str, deadline: Instant) {
    loop {
        let last = match http(addr, "GET", "/health/ready", None) {
            Ok(r) if r.status == 200 => return,
            Ok(r) => format!("{} {}", r.status, r.snippet()),
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "{name} ({addr}) not ready within {READY_TIMEOUT:?}: {last}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

fn start_haproxy(haproxy: &Path, dir: &Path, replicas: &[Replica]) -> (Child, String, String) {
    let template = common::repo().join("tests/deploy/scaleout/haproxy.cfg.in");
    let template = std::fs::read_to_string(&template)
        .unwrap_or_else(|e| panic!("{}: {e}", template.display()));
    let (front, stats) = (free_port(), free_port());
    let servers: Vec<String> = replicas
        .iter()
        .map(|r| format!("    server {} {} check", r.name, r.addr))
        .collect();
    let cfg = template
        .replace("@FRONT_PORT@", &front.to_string())
        .replace("@STATS_PORT@", &stats.to_string())
        .replace("@SERVERS@", &servers.join("\n"));
    assert!(
        !cfg.contains('@'),
        "unfilled placeholder in haproxy.cfg:\n{cfg}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, &cfg).expect("write haproxy.cfg");
    let check = Command::new(haproxy)
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("run haproxy -c");
    assert!(
        check.status.success(),
        "haproxy -c rejects the configuration:\n{}{}\n{cfg}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let mut child = Command::new(haproxy)
        .arg("-f")
        .arg(&path)
        .arg("-db")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn haproxy");
    pump("haproxy".into(), child.stdout.take().unwrap(), None);
    pump("haproxy".into(), child.stderr.take().unwrap(), None);
    (
        child,
        format!("127.0.0.1:{front}"),
        format!("127.0.0.1:{stats}"),
    )
}

/// HAProxy's view of the backend's servers: name -> CSV column -> value (`status`, `stot`,
/// `chkdown`, `wretr`, `wredis`, ...).
fn haproxy_servers(stats: &str) -> io::Result<BTreeMap<String, HashMap<String, String>>> {
    let r = http(stats, "GET", "/stats;csv", None)?;
    let text = r.text();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or("")
        .trim_start_matches('#')
        .trim()
        .split(',')
        .map(str::to_string)
        .collect();
    let mut out = BTreeMap::new();
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        if f.first() != Some(&"nlpd") || matches!(f.get(1), Some(&"FRONTEND" | &"BACKEND")) {
            continue;
        }
        let row: HashMap<String, String> = header
            .iter()
            .zip(&f)
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        out.insert(f[1].to_string(), row);
    }
    Ok(out)
}

fn server_field(stats: &BTreeMap<String, HashMap<String, String>>, s: &str, f: &str) -> String {
    stats
        .get(s)
        .and_then(|r| r.get(f))
        .cloned()
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The load.

struct Sample {
    start: f64,
    end: f64,
    /// The replica that answered (HAProxy's `X-Served-By`).
    server: String,
    error: Option<String>,
}

fn send(conn: &mut Option<Conn>, lb: &str, body: &[u8]) -> io::Result<Resp> {
    if !conn.as_ref().is_some_and(|c| c.open) {
        *conn = Some(Conn::open(lb, REQUEST_TIMEOUT)?);
    }
    conn.as_mut()
        .expect("connection just opened")
        .request("POST", "/v1/embed", Some(body), true)
}

/// One client: POST /v1/embed in a closed loop on a keep-alive connection through HAProxy; a
/// third of the texts repeat (cache hits), the rest are new (computed by the replica).
fn load_client(
    lb: String,
    k: usize,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
) -> Vec<Sample> {
    let hard_stop = Instant::now() + LOAD_HARD_STOP;
    let mut samples = Vec::new();
    let mut conn = None;
    let mut i = 0usize;
    while !stop.load(Ordering::SeqCst) && Instant::now() < hard_stop {
        let text = if i.is_multiple_of(3) {
            format!(
                "Replicas behind a balancer share one cache, sentence {}.",
                (k * 7 + i) % 40
            )
        } else {
            format!(
                "Client {k} asks for embedding number {i} while replicas come and go ({}).",
                std::process::id()
            )
        };
        i += 1;
        let body = serde_json::to_vec(&json!({ "inputs": text })).expect("serialize");
        let start = now_s();
        let res = send(&mut conn, &lb, &body);
        let end = now_s();
        let (server, error) = match res {
            Ok(r) => {
                let server = r.header("x-served-by").unwrap_or("?").to_string();
                let dims = embedding(&r.json()).map(|v| v.len());
                let error = if r.status != 200 {
                    Some(format!("HTTP {}: {}", r.status, r.snippet()))
                } else if dims != Some(DIMENSIONS) {
                    Some(format!("no {DIMENSIONS}-d embedding: {}", r.snippet()))
                } else {
                    None
                };
                (server, error)
            }
            Err(e) => ("-".to_string(), Some(format!("connection: {e}"))),
        };
        if error.is_some() {
            failed.fetch_add(1, Ordering::SeqCst);
            conn = None;
            thread::sleep(Duration::from_millis(20));
        } else {
            done.fetch_add(1, Ordering::SeqCst);
        }
        samples.push(Sample {
            start,
            end,
            server,
            error,
        });
    }
    samples
}

/// Polls the replicas that must stay up, directly, every 250 ms: (polls, failures).
fn ready_monitor(
    replicas: Vec<(String, String)>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<(usize, Vec<String>)> {
    thread::spawn(move || {
        let hard_stop = Instant::now() + LOAD_HARD_STOP;
        let (mut polls, mut failures) = (0, Vec::new());
        while !stop.load(Ordering::SeqCst) && Instant::now() < hard_stop {
            for (name, addr) in &replicas {
                polls += 1;
                match http(addr, "GET", "/health/ready", None) {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => failures.push(format!(
                        "{:.2}s {name}: {} {}",
                        now_s(),
                        r.status,
                        r.snippet()
                    )),
                    Err(e) => failures.push(format!("{:.2}s {name}: {e}", now_s())),
                }
            }
            thread::sleep(Duration::from_millis(250));
        }
        (polls, failures)
    })
}

/// Sleeps `d` while printing the load's progress every few seconds.
fn run_load_for(d: Duration, done: &AtomicUsize, failed: &AtomicUsize) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        thread::sleep(
            end.saturating_duration_since(Instant::now())
                .min(Duration::from_secs(2)),
        );
        say!(
            "load: {} ok, {} failed",
            done.load(Ordering::SeqCst),
            failed.load(Ordering::SeqCst)
        );
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

// ---------------------------------------------------------------------------------------------

/// What the drained replica did, seen from outside.
#[derive(Debug, Default)]
struct Drain {
    sigterm_at: f64,
    first_503_at: Option<f64>,
    first_503_body: Value,
    ready_200_after_sigterm: usize,
    haproxy_down_at: Option<f64>,
    exit_at: Option<f64>,
    exit_status: Option<ExitStatus>,
}

#[test]
fn three_replicas_behind_haproxy_survive_drain_redis_and_postgres_loss() {
    let _ = t0();
    // Prerequisites: the tools of scripts/deploy-deps.sh (and PostgreSQL), and the model.
    let mut tools = HashMap::new();
    for tool in ["haproxy", "redis-server", "initdb", "pg_ctl"] {
        let Some(path) = find_tool(tool) else {
            missing(tool, "scripts/deploy-deps.sh");
            return;
        };
        tools.insert(tool, path);
    }
    if running_as_root() && find_tool("runuser").is_none() {
        missing(
            "runuser (PostgreSQL cannot run as root)",
            "apt-get install util-linux",
        );
        return;
    }
    let Some(model) = common::pack(MODEL) else {
        return;
    };

    let stop_load = Arc::new(AtomicBool::new(false));
    let mut cl = Cluster {
        stop_load: stop_load.clone(),
        replicas: Vec::new(),
        haproxy: None,
        redis: None,
        postgres: None,
        tmp: common::Tmp::new("deploy-scaleout", "cluster"),
    };
    let dir = cl.tmp.0.clone();

    // ---- Redis and PostgreSQL of this test.
    let (redis, redis_addr) = start_redis(&tools["redis-server"], &dir);
    cl.redis = Some(redis);
    say!("redis-server up on {redis_addr}");
    let (pg, pg_port) = start_postgres(&tools["initdb"], &tools["pg_ctl"], &dir.join("pg"));
    say!("postgresql up on 127.0.0.1:{pg_port} (as {:?})", pg.user);
    cl.postgres = Some(pg);
    let database = format!("postgres://postgres@127.0.0.1:{pg_port}/postgres");

    // ---- Three replicas, started together (they share the migration's advisory lock).
    let prefix = format!(
        "nlpd-scaleout-{}-{}:",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let mut receivers = Vec::new();
    for i in 0..REPLICAS {
        let data = dir.join(format!("data-r{}", i + 1));
        let (r, rx) = spawn_replica(i, &model, &redis_addr, &database, &prefix, &data);
        cl.replicas.push(r);
        receivers.push(rx);
    }
    let deadline = Instant::now() + LISTEN_TIMEOUT;
    for (r, rx) in cl.replicas.iter_mut().zip(&receivers) {
        wait_listening(r, rx, deadline);
    }
    let deadline = Instant::now() + READY_TIMEOUT;
    for r in &cl.replicas {
        wait_ready(&r.name, &r.addr, deadline);
        say!("{} ready at http://{}", r.name, r.addr);
    }

    // ---- HAProxy in front, once it sees all three up.
    let (haproxy, lb, stats) = start_haproxy(&tools["haproxy"], &dir, &cl.replicas);
    cl.haproxy = Some(haproxy);
    let deadline = Instant::now() + SERVICE_TIMEOUT;
    loop {
        let view = haproxy_servers(&stats);
        let up = view.as_ref().is_ok_and(|v| {
            v.len() == REPLICAS
                && v.values()
                    .all(|s| s.get("status").is_some_and(|x| x == "UP"))
        });
        if up {
            break;
        }
        if let Some(Ok(Some(status))) = cl.haproxy.as_mut().map(|c| c.try_wait()) {
            panic!("haproxy exited ({status}); see its output above");
        }
        assert!(
            Instant::now() < deadline,
            "haproxy does not see every replica UP within {SERVICE_TIMEOUT:?}: {:?}",
            view.map(|v| v
                .iter()
                .map(|(k, s)| format!("{k}={}", s.get("status").cloned().unwrap_or_default()))
                .collect::<Vec<_>>())
        );
        thread::sleep(Duration::from_millis(200));
    }
    say!(
        "haproxy balancing on http://{lb} (stats http://{stats}/stats), all {REPLICAS} replicas UP"
    );
    // Times HAProxy took each replica out so far (the baseline of "stayed in rotation").
    let chkdown_before = haproxy_servers(&stats).expect("haproxy stats");

    // ---- 1. Evidence: posted through the balancer, listed alike by every replica.
    let docs = [
        ("scaleout-eiffel", "The Eiffel Tower is in Paris. It was completed in 1889 for the World's Fair."),
        ("scaleout-water", "Water boils at 100 degrees Celsius at sea level. At altitude it boils at a lower temperature."),
        ("scaleout-moon", "The Moon orbits the Earth about once every 27 days. Its gravity causes the tides."),
    ];
    let mut passages = 0u64;
    for (id, text) in docs {
        let r = http(
            &lb,
            "POST",
            "/v1/evidence",
            Some(
                &json!({ "documents": [{ "id": id, "text": text, "source": "deploy_scaleout" }] }),
            ),
        )
        .unwrap_or_else(|e| panic!("POST /v1/evidence through haproxy: {e}"));
        assert_eq!(r.status, 200, "POST /v1/evidence {id}: {}", r.snippet());
        let v = r.json();
        passages += v["passages"].as_u64().unwrap_or(0);
        say!(
            "evidence {id} stored by {} ({} passages)",
            r.header("x-served-by").unwrap_or("?"),
            v["passages"]
        );
    }
    assert!(passages >= docs.len() as u64, "every document has passages");
    // Verdicts that do not stop the test: it goes on, so one run shows every problem.
    let mut problems: Vec<String> = Vec::new();
    let corpus = json!({ "documents": docs.len(), "passages": passages });
    let t_sync = Instant::now();
    let deadline = t_sync + EVIDENCE_SYNC_TIMEOUT;
    loop {
        let views: Vec<Value> = (0..REPLICAS)
            .map(|i| call(cl.replica(i), "GET", "/v1/evidence", None))
            .collect();
        let consistent = views.iter().all(|v| {
            v["state"] == "ready"
                && v["documents"] == corpus["documents"]
                && v["passages"] == corpus["passages"]
        });
        if consistent {
            say!(
                "evidence consistent on all {REPLICAS} replicas after {:.1}s: {}",
                t_sync.elapsed().as_secs_f64(),
                views[0]
            );
            break;
        }
        if Instant::now() >= deadline {
            let views: Vec<String> = views
                .iter()
                .enumerate()
                .map(|(i, v)| format!("r{}: {v}", i + 1))
                .collect();
            problems.push(format!(
                "the replicas do not list the same corpus ({corpus}) within {EVIDENCE_SYNC_TIMEOUT:?} of the last POST /v1/evidence (--evidence-refresh 1s): {}",
                views.join("; ")
            ));
            say!(
                "!! evidence NOT consistent (the test goes on): {}",
                problems[0]
            );
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    for (id, _) in docs {
        for i in 0..REPLICAS {
            let v = call(cl.replica(i), "GET", &format!("/v1/evidence/{id}"), None);
            assert_eq!(v["id"], id, "r{} GET /v1/evidence/{id}", i + 1);
        }
    }

    // ---- 2. L2 is shared: computed on r1, an L2 hit on r2, the same vector.
    let probe = format!(
        "A sentence only replica one has embedded so far ({}, {prefix}).",
        std::process::id()
    );
    let req = json!({ "inputs": probe });
    let writes_before = call(cl.replica(0), "GET", "/v1/cache", None)["l2"]["writes"]
        .as_u64()
        .unwrap_or(0);
    let hits_metric = |addr: &str| {
        let r = http(addr, "GET", "/metrics", None).expect("GET /metrics");
        metric(
            &r.text(),
            "nlpd_cache_requests_total",
            &["level=\"l2\"", "result=\"hit\""],
        )
    };
    let r2_hits_before = call(cl.replica(1), "GET", "/v1/cache", None)["l2"]["hits"]
        .as_u64()
        .unwrap_or(0);
    let r2_metric_before = hits_metric(cl.replica(1));
    let e1 = embedding(&call(cl.replica(0), "POST", "/v1/embed", Some(&req)))
        .expect("r1 returns an embedding");
    let deadline = Instant::now() + SERVICE_TIMEOUT;
    loop {
        let l2 = &call(cl.replica(0), "GET", "/v1/cache", None)["l2"];
        if l2["writes"].as_u64().unwrap_or(0) > writes_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "r1 did not write its result to Redis within {SERVICE_TIMEOUT:?}: {l2}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let e2 = embedding(&call(cl.replica(1), "POST", "/v1/embed", Some(&req)))
        .expect("r2 returns an embedding");
    let l2 = call(cl.replica(1), "GET", "/v1/cache", None)["l2"].clone();
    let r2_metric_after = hits_metric(cl.replica(1));
    assert!(
        l2["hits"].as_u64().unwrap_or(0) > r2_hits_before,
        "r2 answered r1's text without an L2 hit: {l2}"
    );
    assert!(
        r2_metric_after > r2_metric_before,
        "nlpd_cache_requests_total{{level=\"l2\",result=\"hit\"}} of r2 did not grow ({r2_metric_before} -> {r2_metric_after})"
    );
    assert_eq!(e1, e2, "the L2 hit on r2 returns r1's vector exactly");
    say!(
        "L2 shared: r2 hit r1's entry (l2 hits {r2_hits_before} -> {}), identical {}-d vectors",
        l2["hits"],
        e1.len()
    );

    // ---- 3. Load through HAProxy while replica 3 drains, Redis dies and PostgreSQL stops.
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let load_started = now_s();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let (lb, stop, done, failed) =
                (lb.clone(), stop_load.clone(), done.clone(), failed.clone());
            thread::spawn(move || load_client(lb, k, stop, done, failed))
        })
        .collect();
    let monitor = ready_monitor(
        (0..2)
            .map(|i| (cl.replicas[i].name.clone(), cl.replicas[i].addr.clone()))
            .collect(),
        stop_load.clone(),
    );
    say!("load: {CLIENTS} clients through haproxy");
    run_load_for(WARMUP, &done, &failed);

    // (a) SIGTERM to replica 3, watched directly every 100 ms, and through HAProxy's eyes.
    let mut drain = Drain::default();
    let r3_addr = cl.replica(2).to_string();
    let r3_pid = cl.replicas[2].child.id();
    drain.sigterm_at = now_s();
    let kill = Command::new("kill")
        .args(["-TERM", &r3_pid.to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success(), "kill -TERM {r3_pid}: {kill}");
    say!("(a) SIGTERM sent to r3 (pid {r3_pid})");
    let deadline = Instant::now() + DRAIN_EXIT_TIMEOUT;
    let mut r3_polls = Vec::new();
    loop {
        if let Ok(Some(status)) = cl.replicas[2].child.try_wait() {
            drain.exit_at = Some(now_s());
            drain.exit_status = Some(status);
            break;
        }
        let t = now_s();
        match http(&r3_addr, "GET", "/health/ready", None) {
            Ok(r) if r.status == 503 => {
                if drain.first_503_at.is_none() {
                    drain.first_503_at = Some(t);
                    drain.first_503_body = r.json();
                    say!("(a) r3 /health/ready: 503 {}", r.snippet());
                }
                r3_polls.push("503");
            }
            Ok(r) if r.status == 200 => {
                drain.ready_200_after_sigterm += 1;
                r3_polls.push("200");
            }
            Ok(_) => r3_polls.push("other"),
            Err(_) => r3_polls.push("refused"),
        }
        if drain.haproxy_down_at.is_none() {
            if let Ok(v) = haproxy_servers(&stats) {
                if server_field(&v, "r3", "status").starts_with("DOWN") {
                    drain.haproxy_down_at = Some(now_s());
                    say!("(a) haproxy marked r3 DOWN");
                }
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    match drain.exit_at {
        Some(at) => say!(
            "(a) r3 exited {:.2}s after SIGTERM: {:?}",
            at - drain.sigterm_at,
            drain.exit_status
        ),
        None => say!("(a) r3 still running {DRAIN_EXIT_TIMEOUT:?} after SIGTERM"),
    }
    let mut polls_summary: Vec<(String, usize)> = Vec::new();
    for p in &r3_polls {
        match polls_summary.last_mut() {
            Some((last, n)) if last == p => *n += 1,
            _ => polls_summary.push((p.to_string(), 1)),
        }
    }
    say!("(a) r3 polled directly: {polls_summary:?}");
    run_load_for(AFTER_DRAIN, &done, &failed);

    // (b) Redis dies.
    let t_redis = now_s();
    if let Some(c) = &mut cl.redis {
        kill_and_reap(c);
    }
    say!("(b) redis-server SIGKILLed");
    run_load_for(AFTER_REDIS, &done, &failed);
    let mut breakers = Vec::new();
    let deadline = Instant::now() + SERVICE_TIMEOUT;
    for i in 0..2 {
        loop {
            let l2 = call(cl.replica(i), "GET", "/v1/cache", None)["l2"].clone();
            let opened = l2["breaker_opened_total"].as_u64().unwrap_or(0);
            if opened > 0 || Instant::now() >= deadline {
                let text = http(cl.replica(i), "GET", "/metrics", None)
                    .map(|r| r.text())
                    .unwrap_or_default();
                let gauge = metric(&text, "nlpd_redis_breaker_state", &[]);
                say!(
                    "(b) r{}: breaker {} (opened {opened}x, {} errors, {} skipped), nlpd_redis_breaker_state {gauge}",
                    i + 1,
                    l2["breaker"],
                    l2["errors"],
                    l2["skipped"]
                );
                breakers.push((i, opened, l2));
                break;
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    // (c) PostgreSQL stops.
    let t_pg = now_s();
    let out = cl
        .postgres
        .as_mut()
        .expect("postgres")
        .stop("fast")
        .expect("run pg_ctl stop");
    assert!(
        out.status.success(),
        "pg_ctl stop -m fast failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    say!(
        "(c) postgresql stopped (pg_ctl stop -m fast, {:.2}s)",
        now_s() - t_pg
    );
    run_load_for(AFTER_POSTGRES, &done, &failed);

    stop_load.store(true, Ordering::SeqCst);
    let samples: Vec<Sample> = clients
        .into_iter()
        .flat_map(|h| h.join().expect("a load client panicked"))
        .collect();
    let load_ended = now_s();
    let (ready_polls, ready_failures) = monitor.join().expect("the ready monitor panicked");
    let lb_view = haproxy_servers(&stats).expect("haproxy stats after the load");

    // ---- 4. PostgreSQL is down: the corpus is still served alike by both replicas.
    let mut after_pg = Vec::new();
    for i in 0..2 {
        let v = call(cl.replica(i), "GET", "/v1/evidence", None);
        assert_eq!(
            v["state"],
            "ready",
            "r{} corpus with postgres down: {v}",
            i + 1
        );
        assert_eq!(
            (&v["documents"], &v["passages"]),
            (&corpus["documents"], &corpus["passages"]),
            "r{} lists another corpus with postgres down: {v} (posted: {corpus})",
            i + 1
        );
        // Search runs on the in-memory index: a claim unlike every passage finds none and is
        // NOT_ENOUGH_INFO (no NLI model needed), so verify answers 200 without the database.
        let v = call(
            cl.replica(i),
            "POST",
            "/v1/verify",
            Some(
                &json!({ "claims": ["Penguins compose symphonies on Tuesdays."], "min_score": 0.99 }),
            ),
        );
        assert_eq!(
            v["results"][0]["verdict"],
            "NOT_ENOUGH_INFO",
            "r{} verify with postgres down: {v}",
            i + 1
        );
        // A document's text is read from the store: with the store down that is a 503 (the
        // corpus is unavailable), never a 500.
        let t = Instant::now();
        let r = http(cl.replica(i), "GET", "/v1/evidence/scaleout-moon", None)
            .expect("GET /v1/evidence/{id}");
        assert_eq!(
            r.status,
            503,
            "r{} GET /v1/evidence/{{id}} with postgres down: {}",
            i + 1,
            r.snippet()
        );
        assert!(
            r.json()["error"]["message"].is_string(),
            "503 with a JSON error: {}",
            r.snippet()
        );
        after_pg.push(format!(
            "r{}: corpus {} docs / {} passages ready, verify 200, GET /v1/evidence/{{id}} 503 in {:.2}s",
            i + 1,
            corpus["documents"],
            corpus["passages"],
            t.elapsed().as_secs_f64()
        ));
    }
    for line in &after_pg {
        say!("(c) {line}");
    }

    // ---- The report, then the verdicts.
    let failures: Vec<&Sample> = samples.iter().filter(|s| s.error.is_some()).collect();
    let mut by_server: BTreeMap<&str, usize> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.error.is_none()) {
        *by_server.entry(s.server.as_str()).or_default() += 1;
    }
    let mut lat: Vec<f64> = samples
        .iter()
        .filter(|s| s.error.is_none())
        .map(|s| (s.end - s.start) * 1000.0)
        .collect();
    lat.sort_by(f64::total_cmp);
    let ok = lat.len();
    let secs = load_ended - load_started;
    let phase = |from: f64, to: f64| {
        samples
            .iter()
            .filter(|s| s.error.is_none() && s.end >= from && s.end < to)
            .count()
    };
    let drained_at = drain.exit_at.unwrap_or(load_ended);
    let phases = [
        ("before SIGTERM", phase(load_started, drain.sigterm_at)),
        ("r3 draining", phase(drain.sigterm_at, drained_at)),
        ("r3 gone", phase(drained_at, t_redis)),
        ("redis killed", phase(t_redis, t_pg)),
        ("postgres stopped", phase(t_pg, load_ended + 1.0)),
    ];
    let r3_after_down = drain.haproxy_down_at.map_or(0, |down| {
        samples
            .iter()
            .filter(|s| s.server == "r3" && s.start > down)
            .count()
    });
    let r3_during_drain = samples
        .iter()
        .filter(|s| s.server == "r3" && s.start >= drain.sigterm_at)
        .count();
    eprintln!("\n===== deploy_scaleout report =====");
    eprintln!(
        "load: {} requests in {secs:.1}s ({:.0}/s), {} failed, {CLIENTS} clients; latency p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        samples.len(),
        ok as f64 / secs,
        failures.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    eprintln!("served by: {by_server:?}");
    eprintln!("completed per phase: {phases:?}");
    eprintln!(
        "drain of r3: 503 after {:?}s, haproxy DOWN after {:?}s, exit after {:?}s ({:?}); {} direct ready polls answered 200 after SIGTERM; {r3_during_drain} requests served by r3 after SIGTERM, {r3_after_down} started after haproxy marked it DOWN",
        drain.first_503_at.map(|t| round2(t - drain.sigterm_at)),
        drain.haproxy_down_at.map(|t| round2(t - drain.sigterm_at)),
        drain.exit_at.map(|t| round2(t - drain.sigterm_at)),
        drain.exit_status,
        drain.ready_200_after_sigterm
    );
    for (name, row) in &lb_view {
        eprintln!(
            "haproxy {name}: status {}, sessions {}, check fails {}, went down {}x, retries {}, redispatches {}, errors conn {} resp {}",
            row.get("status").map_or("", String::as_str),
            row.get("stot").map_or("", String::as_str),
            row.get("chkfail").map_or("", String::as_str),
            row.get("chkdown").map_or("", String::as_str),
            row.get("wretr").map_or("", String::as_str),
            row.get("wredis").map_or("", String::as_str),
            row.get("econ").map_or("", String::as_str),
            row.get("eresp").map_or("", String::as_str),
        );
    }
    eprintln!(
        "ready monitor: {ready_polls} direct polls of r1/r2, {} not ready",
        ready_failures.len()
    );
    eprintln!(
        "total time {:.1}s\n==================================\n",
        now_s()
    );

    macro_rules! check {
        ($cond:expr, $($msg:tt)*) => {{
            let held: bool = $cond;
            if !held {
                problems.push(format!($($msg)*));
            }
        }};
    }

    // No request failed, and the load kept going through every phase.
    check!(
        failures.is_empty(),
        "{} of {} requests failed; the first ones (s since start; SIGTERM at {:.2}, redis killed at {t_redis:.2}, postgres stopped at {t_pg:.2}):\n{}",
        failures.len(),
        samples.len(),
        drain.sigterm_at,
        failures
            .iter()
            .take(20)
            .map(|s| format!(
                "  {:.2}-{:.2}s via {}: {}",
                s.start,
                s.end,
                s.server,
                s.error.as_deref().unwrap_or("")
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (name, n) in phases {
        check!(
            n >= MIN_PER_PHASE,
            "only {n} requests completed in phase `{name}` (want >= {MIN_PER_PHASE}): {phases:?}"
        );
    }
    for i in 0..REPLICAS {
        let name = format!("r{}", i + 1);
        check!(
            by_server.get(name.as_str()).copied().unwrap_or(0) > 0,
            "haproxy sent no load to {name}: {by_server:?}"
        );
    }

    // The drain: 503 at once, out of rotation within the delay, exit 0 after it.
    match drain.exit_at {
        None => problems.push(format!(
            "r3 did not exit within {DRAIN_EXIT_TIMEOUT:?} of SIGTERM"
        )),
        Some(exit_at) => {
            let after = exit_at - drain.sigterm_at;
            check!(
                drain.exit_status.is_some_and(|s| s.success()),
                "r3 exited with {:?} after SIGTERM, expected 0",
                drain.exit_status
            );
            match drain.first_503_at {
                None => problems.push(format!(
                    "r3 never answered 503 on /health/ready between SIGTERM and its exit {after:.2}s later (polls: {polls_summary:?}): is the graceful drain (--shutdown-delay) in this build?"
                )),
                Some(first_503) => {
                    check!(
                        first_503 - drain.sigterm_at < 2.0,
                        "r3 answered 503 only {:.2}s after SIGTERM (expected at once)",
                        first_503 - drain.sigterm_at
                    );
                    check!(
                        drain.first_503_body["status"] == "draining",
                        "r3's 503 does not say `draining`: {}",
                        drain.first_503_body
                    );
                }
            }
            check!(
                after >= DRAIN_DELAY.as_secs_f64() - 0.2,
                "r3 exited {after:.2}s after SIGTERM, before its --shutdown-delay of {DRAIN_DELAY:?}"
            );
            match drain.haproxy_down_at {
                None => problems.push("haproxy never marked r3 DOWN before it exited".into()),
                Some(down) => check!(
                    down < exit_at,
                    "haproxy marked r3 DOWN only after it exited"
                ),
            }
        }
    }
    check!(
        r3_after_down == 0,
        "haproxy sent {r3_after_down} requests to r3 after marking it DOWN"
    );
    check!(
        server_field(&lb_view, "r3", "status").starts_with("DOWN"),
        "haproxy still has r3 in rotation: {:?}",
        lb_view.get("r3")
    );

    // The others stayed ready: asked directly, and as HAProxy saw them.
    check!(
        ready_failures.is_empty(),
        "r1/r2 were not ready during the load:\n{}",
        ready_failures.join("\n")
    );
    for s in ["r1", "r2"] {
        check!(
            server_field(&lb_view, s, "status") == "UP",
            "haproxy's {s} is not UP: {:?}",
            lb_view.get(s)
        );
        check!(
            server_field(&lb_view, s, "chkdown") == server_field(&chkdown_before, s, "chkdown"),
            "haproxy took {s} out of rotation during the test: {:?}",
            lb_view.get(s)
        );
    }

    // Redis gone: each remaining replica's breaker opened (and the requests above all passed).
    for (i, opened, l2) in &breakers {
        check!(
            *opened > 0,
            "r{}'s Redis breaker never opened after Redis was killed: {l2}",
            i + 1
        );
    }

    assert!(
        problems.is_empty(),
        "{} problem(s):\n- {}",
        problems.len(),
        problems.join("\n- ")
    );
    drop(cl);
    say!("cluster stopped, temporary files removed");
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
