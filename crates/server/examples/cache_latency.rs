//! Measures end-to-end latency of the result cache over HTTP against a running `nlpd serve`,
//! with one keep-alive connection and one request at a time:
//!
//! ```sh
//! cargo run --release -p nlpd-server --example cache_latency -- 127.0.0.1:8080 l1 2000
//! ```
//!
//! Modes (all `POST /v1/embed` with one short sentence):
//! - `l1`: the same input every time (after one warm-up request): L1 hits;
//! - `l2`: N new inputs (computed, written to Redis), `POST /v1/cache/clear?level=l1`, then the
//!   same N again, measured: L2 hits (needs `--redis-url`);
//! - `miss`: a new input every time, cache on: misses (L1 and, with Redis, L2 lookups included);
//! - `off`: a new input every time with `"cache": false`.
//!
//! Prints p50, p90, p99, mean and max in ms.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

struct Conn {
    s: TcpStream,
    host: String,
}

impl Conn {
    fn new(addr: &str) -> Self {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        Conn {
            s,
            host: addr.to_string(),
        }
    }

    /// One request on the kept-alive connection; returns the status and the body.
    fn post(&mut self, path: &str, body: &str) -> (u16, Vec<u8>) {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        self.s.write_all(req.as_bytes()).expect("write");
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            let n = self.s.read(&mut chunk).expect("read");
            assert!(n > 0, "connection closed");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status");
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .expect("content-length");
        while buf.len() < head_end + len {
            let n = self.s.read(&mut chunk).expect("read body");
            assert!(n > 0, "connection closed");
            buf.extend_from_slice(&chunk[..n]);
        }
        (status, buf[head_end..head_end + len].to_vec())
    }
}

fn body(text: &str, cache: bool) -> String {
    format!(
        "{{\"inputs\": \"{text}\"{}}}",
        if cache { "" } else { ", \"cache\": false" }
    )
}

fn sentence(run: u128, i: usize) -> String {
    format!("The quarterly report number {i} of run {run} shows steady growth in every region")
}

fn report(mode: &str, mut t: Vec<Duration>) {
    t.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let q = |p: f64| ms(t[((t.len() as f64 * p).ceil() as usize).clamp(1, t.len()) - 1]);
    let mean = t.iter().map(|d| ms(*d)).sum::<f64>() / t.len() as f64;
    println!(
        "{mode:>5}: n={} p50={:.3} ms p90={:.3} ms p99={:.3} ms mean={:.3} ms max={:.3} ms",
        t.len(),
        q(0.50),
        q(0.90),
        q(0.99),
        mean,
        ms(t[t.len() - 1])
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: cache_latency ADDR l1|l2|miss|off N");
        std::process::exit(2);
    }
    let (addr, mode) = (&args[1], args[2].as_str());
    let n: usize = args[3].parse().expect("N");
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let mut c = Conn::new(addr);
    let timed = |c: &mut Conn, path: &str, b: &str| {
        let t0 = Instant::now();
        let (status, resp) = c.post(path, b);
        let took = t0.elapsed();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
        took
    };
    let times: Vec<Duration> = match mode {
        "l1" => {
            let b = body(&sentence(run, 0), true);
            for _ in 0..20 {
                timed(&mut c, "/v1/embed", &b);
            }
            (0..n).map(|_| timed(&mut c, "/v1/embed", &b)).collect()
        }
        "l2" => {
            for i in 0..n {
                timed(&mut c, "/v1/embed", &body(&sentence(run, i), true));
            }
            // Let the background writer finish, then empty L1 only.
            std::thread::sleep(Duration::from_millis(500));
            timed(&mut c, "/v1/cache/clear?level=l1", "");
            (0..n)
                .map(|i| timed(&mut c, "/v1/embed", &body(&sentence(run, i), true)))
                .collect()
        }
        "miss" | "off" => {
            let cache = mode == "miss";
            for i in 0..20 {
                timed(&mut c, "/v1/embed", &body(&sentence(run + 1, i), cache));
            }
            (0..n)
                .map(|i| timed(&mut c, "/v1/embed", &body(&sentence(run, i), cache)))
                .collect()
        }
        other => panic!("unknown mode {other}"),
    };
    report(mode, times);
}
