//! One measured level against a server, as `bench` and `tune` both need it: the uncounted first
//! request per route, whether the server has nlpd's `/v1/stats`, and a level's load with the
//! client's CPU and the server's stage split around it.

use super::client::{self, Client};
use super::load::{self, Ctx, Level};
use super::report::{LevelReport, ServerSnapshot};
use super::scenario::{evidence_bodies, Scenario, Workload};
use super::sys;
use hyper::Uri;
use std::sync::Arc;

/// Sends one request per route, not counted: lazy model loading is not measured, and a
/// misconfigured route (unknown model, missing pack model) is reported in words on stderr
/// (prefixed with `who`). Returns how many of them failed.
pub async fn prime(client: &Client, workload: &Workload, uris: &[Uri], who: &str) -> usize {
    let mut failed = 0;
    if workload.kinds.contains(&Scenario::Verify) {
        failed += add_evidence(client, workload, who).await;
    }
    for (i, kind) in workload.kinds.iter().enumerate() {
        let req = workload.build(i);
        let (outcome, body) = client
            .send(hyper::Method::POST, uris[i].clone(), req.body)
            .await;
        match outcome {
            client::Outcome::Ok => {}
            client::Outcome::Status(s) => {
                failed += 1;
                eprintln!(
                    "nlpd {who}: warning: the first {} request ({}) got HTTP {s}: {}",
                    kind.name(),
                    kind.path(),
                    String::from_utf8_lossy(&body[..body.len().min(300)]).trim()
                )
            }
            client::Outcome::Failed(k) => {
                failed += 1;
                eprintln!(
                    "nlpd {who}: warning: the first {} request to {}{} failed: {k}",
                    kind.name(),
                    client.base(),
                    kind.path()
                )
            }
        }
    }
    failed
}

/// The verify scenario's evidence: the corpus, posted to `/v1/evidence` before the run (not
/// counted). Returns how many requests failed.
async fn add_evidence(client: &Client, workload: &Workload, who: &str) -> usize {
    let Ok(uri) = client.uri("/v1/evidence") else {
        return 1;
    };
    let bodies = evidence_bodies(workload.corpus());
    let mut failed = 0;
    for body in bodies {
        let (outcome, reply) = client.send(hyper::Method::POST, uri.clone(), body).await;
        if !matches!(outcome, client::Outcome::Ok) {
            failed += 1;
            eprintln!(
                "nlpd {who}: warning: adding the corpus as evidence failed ({outcome:?}): {}",
                String::from_utf8_lossy(&reply[..reply.len().min(300)]).trim()
            );
            break;
        }
    }
    failed
}

/// Whether the server answers nlpd's `/v1/stats` (else no server-side split; a note on stderr).
pub async fn stats_available(client: &Client, who: &str) -> bool {
    match client.get_json("/v1/stats").await {
        Ok(v) if ServerSnapshot::parse(&v).is_some() => true,
        Ok(_) => {
            eprintln!(
                "nlpd {who}: note: {}/v1/stats is not nlpd's: no server-side split",
                client.base()
            );
            false
        }
        Err(e) => {
            eprintln!("nlpd {who}: note: no server-side split ({e})");
            false
        }
    }
}

async fn snapshot(client: &Client, stats_ok: bool) -> Option<ServerSnapshot> {
    if !stats_ok {
        return None;
    }
    client
        .get_json("/v1/stats")
        .await
        .ok()
        .and_then(|v| ServerSnapshot::parse(&v))
}

/// Runs one level and reports it: the client's CPU from the end of the warm-up to the end of
/// the level, and (with `stats_ok`) the server's split from `/v1/stats` at the same two points.
pub async fn measure(ctx: &Arc<Ctx>, level: Level, label: &str, stats_ok: bool) -> LevelReport {
    let stats_ctx = ctx.clone();
    // When the warm-up ends: the client's CPU time and the server's totals.
    let at_start = async move {
        let cpu = sys::cpu_time();
        (cpu, snapshot(&stats_ctx.client, stats_ok).await)
    };
    let (measured, before) = load::run_level(ctx.clone(), level, label, at_start).await;
    let after_cpu = sys::cpu_time();
    let after = snapshot(&ctx.client, stats_ok).await;
    let (before_cpu, before) = before.unwrap_or((None, None));
    let split = match (before, after) {
        (Some(b), Some(a)) => Some(ServerSnapshot::delta(&b, &a)),
        _ => None,
    };
    let cpu = sys::cpu_percent(before_cpu, after_cpu, measured.wall);
    LevelReport::new(level, &measured, &ctx.workload.kinds, cpu, split)
}
