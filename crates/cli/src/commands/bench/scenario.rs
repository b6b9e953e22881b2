//! What a bench request is: the scenario (route and body shape), the texts it takes from the
//! corpus, and the weighted mix of `--scenario mixed`.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The built-in corpus: 1,024 real sentences, one per line.
pub const DEFAULT_CORPUS: &str = include_str!("../../../../../tests/data/bench_corpus.txt");

/// The mix of `--scenario mixed` when `--mix` is not given.
pub const DEFAULT_MIX: &str = "embed=5,classify=3,entities=2";

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// POST /v1/embed {"inputs"}.
    Embed,
    /// POST /v1/classify {"inputs"} (the pack's sentiment head by default).
    Classify,
    /// POST /v1/entities {"inputs"}.
    Entities,
    /// POST /v1/analyze {"inputs"}: sentiment + entities + embedding in one call.
    Analyze,
    /// POST /v1/nli {"pairs": [{"premise", "hypothesis"}]} from neighbouring lines.
    Nli,
    /// POST /v1/rerank {"query", "documents"}: a line and the --batch lines after it.
    Rerank,
    /// POST /v1/explain {"code", "max_tokens"}: built-in code snippets, one per request.
    Explain,
    /// POST /v1/verify {"claims", "top_k": 10}: corpus lines as claims, after the corpus was
    /// added as evidence (documents of 8 lines, ids `bench-N`). --model names the NLI model.
    Verify,
    /// A weighted mix of the others (--mix).
    Mixed,
    /// POST /v1/embeddings {"input", "model"}: any OpenAI-compatible embeddings endpoint.
    OpenaiEmbed,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Embed => "embed",
            Scenario::Classify => "classify",
            Scenario::Entities => "entities",
            Scenario::Analyze => "analyze",
            Scenario::Nli => "nli",
            Scenario::Rerank => "rerank",
            Scenario::Explain => "explain",
            Scenario::Verify => "verify",
            Scenario::Mixed => "mixed",
            Scenario::OpenaiEmbed => "openai-embed",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Scenario::Embed => "/v1/embed",
            Scenario::Classify => "/v1/classify",
            Scenario::Entities => "/v1/entities",
            Scenario::Analyze => "/v1/analyze",
            Scenario::Nli => "/v1/nli",
            Scenario::Rerank => "/v1/rerank",
            Scenario::Explain => "/v1/explain",
            Scenario::Verify => "/v1/verify",
            Scenario::Mixed => "",
            Scenario::OpenaiEmbed => "/v1/embeddings",
        }
    }

    fn parse(name: &str) -> Option<Scenario> {
        <Scenario as clap::ValueEnum>::from_str(name, true).ok()
    }
}

/// `--mix embed=5,classify=3`: scenarios and their weights.
pub fn parse_mix(s: &str) -> Result<Vec<(Scenario, u32)>> {
    let mut out: Vec<(Scenario, u32)> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part
            .split_once('=')
            .with_context(|| format!("--mix `{part}`: expected SCENARIO=WEIGHT"))?;
        let sc = Scenario::parse(name.trim())
            .filter(|s| *s != Scenario::Mixed)
            .with_context(|| {
                format!("--mix `{part}`: unknown scenario `{name}` (embed, classify, entities, analyze, nli, rerank, explain, verify, openai-embed)")
            })?;
        let w: u32 = weight
            .trim()
            .parse()
            .with_context(|| format!("--mix `{part}`: the weight must be a whole number"))?;
        if out.iter().any(|(s, _)| *s == sc) {
            bail!("--mix names `{name}` twice");
        }
        if w > 0 {
            out.push((sc, w));
        }
    }
    if out.is_empty() {
        bail!("--mix `{s}`: give at least one scenario with a weight above 0");
    }
    Ok(out)
}

/// Smooth weighted round robin: weights 5,3,2 give a sequence of 10 that interleaves them
/// (never 5 of one kind in a row), so every slice of the run sees about the same mix.
fn weighted_sequence(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut seq = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(weights) {
            *c += *w as i64;
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, -(*i as i64)))
            .unwrap_or((0, &0));
        current[best] -= total;
        seq.push(best);
    }
    seq
}

/// Reads `--corpus` (one text per non-empty line) or the built-in corpus.
pub fn load_corpus(path: Option<&Path>) -> Result<Vec<String>> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read --corpus {}", p.display()))?,
        None => DEFAULT_CORPUS.to_string(),
    };
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if lines.len() < 2 {
        bail!(
            "--corpus {}: needs at least 2 non-empty lines (nli and rerank pair neighbouring lines)",
            path.map(|p| p.display().to_string()).unwrap_or_default()
        );
    }
    Ok(lines)
}

/// Code for the explain scenario (the corpus holds prose).
const SNIPPETS: &[(&str, &str)] = &[
    ("python", "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a"),
    ("rust", "fn mean(xs: &[f64]) -> Option<f64> {\n    if xs.is_empty() { return None; }\n    Some(xs.iter().sum::<f64>() / xs.len() as f64)\n}"),
    ("javascript", "const debounce = (f, ms) => {\n  let t;\n  return (...a) => { clearTimeout(t); t = setTimeout(() => f(...a), ms); };\n};"),
    ("sql", "SELECT user_id, COUNT(*) AS orders\nFROM orders\nWHERE created_at > now() - interval '30 days'\nGROUP BY user_id\nHAVING COUNT(*) > 3;"),
    ("go", "func reverse(s string) string {\n\tr := []rune(s)\n\tfor i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {\n\t\tr[i], r[j] = r[j], r[i]\n\t}\n\treturn string(r)\n}"),
    ("c", "int is_prime(int n) {\n    if (n < 2) return 0;\n    for (int i = 2; i * i <= n; i++) if (n % i == 0) return 0;\n    return 1;\n}"),
];

/// Lines per evidence document when the verify scenario adds the corpus as evidence.
pub const EVIDENCE_LINES: usize = 8;

/// The evidence request bodies of the verify scenario: the corpus as documents of
/// [`EVIDENCE_LINES`] lines (ids `bench-0`, `bench-1`, ...: a rerun replaces them), 32 per body.
pub fn evidence_bodies(corpus: &[String]) -> Vec<Bytes> {
    let docs: Vec<Value> = corpus
        .chunks(EVIDENCE_LINES)
        .enumerate()
        .map(|(i, lines)| json!({"id": format!("bench-{i}"), "text": lines.join(" "), "source": "nlpd bench"}))
        .collect();
    docs.chunks(32)
        .map(|c| Bytes::from(serde_json::to_vec(&json!({ "documents": c })).unwrap_or_default()))
        .collect()
}

/// Everything a request body depends on besides the scenario.
#[derive(Debug, Clone)]
pub struct BodyOptions {
    pub batch: usize,
    pub model: Option<String>,
    /// Let the server's result cache answer repeats (otherwise requests carry `"cache": false`).
    pub cache: bool,
    pub max_tokens: usize,
}

/// One request to send.
pub struct Request {
    /// Index of its scenario in [`Workload::kinds`].
    pub kind: usize,
    pub body: Bytes,
    /// Inputs it carries (texts, pairs or documents).
    pub inputs: usize,
}

/// Builds the requests of a run: scenarios in their weighted order, texts round-robin from the
/// corpus (each scenario keeps its own place in it).
pub struct Workload {
    pub kinds: Vec<Scenario>,
    sequence: Vec<usize>,
    next: AtomicU64,
    cursors: Vec<AtomicUsize>,
    corpus: Vec<String>,
    opts: BodyOptions,
}

impl Workload {
    pub fn new(
        scenario: Scenario,
        mix: &[(Scenario, u32)],
        corpus: Vec<String>,
        opts: BodyOptions,
    ) -> Workload {
        let (kinds, weights): (Vec<Scenario>, Vec<u32>) = if scenario == Scenario::Mixed {
            mix.iter().copied().unzip()
        } else {
            (vec![scenario], vec![1])
        };
        let cursors = kinds.iter().map(|_| AtomicUsize::new(0)).collect();
        Workload {
            sequence: weighted_sequence(&weights),
            kinds,
            next: AtomicU64::new(0),
            cursors,
            corpus,
            opts,
        }
    }

    /// The corpus (what the verify scenario adds as evidence).
    pub fn corpus(&self) -> &[String] {
        &self.corpus
    }

    /// The next request (thread-safe; deterministic order for one sender).
    pub fn next(&self) -> Request {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let kind = self.sequence[(n % self.sequence.len() as u64) as usize];
        self.build(kind)
    }

    /// One request of the scenario `kind` (also used to prime each route before the run).
    pub fn build(&self, kind: usize) -> Request {
        let sc = self.kinds[kind];
        let batch = self.opts.batch;
        let take = match sc {
            Scenario::Explain => 1,
            Scenario::Nli | Scenario::Rerank => batch + 1,
            _ => batch,
        };
        let start = self.cursors[kind].fetch_add(take, Ordering::Relaxed);
        let len = self.corpus.len();
        let line = |i: usize| self.corpus[(start + i) % len].as_str();
        let texts = |n: usize| -> Value {
            if n == 1 {
                json!(line(0))
            } else {
                json!((0..n).map(line).collect::<Vec<_>>())
            }
        };
        let (mut body, inputs) = match sc {
            Scenario::Embed
            | Scenario::Classify
            | Scenario::Entities
            | Scenario::Analyze
            | Scenario::Mixed => (json!({ "inputs": texts(batch) }), batch),
            Scenario::OpenaiEmbed => (json!({ "input": texts(batch) }), batch),
            Scenario::Verify => (json!({ "claims": texts(batch), "top_k": 10 }), batch),
            Scenario::Nli => (
                json!({ "pairs": (0..batch)
                    .map(|i| json!({"premise": line(i), "hypothesis": line(i + 1)}))
                    .collect::<Vec<_>>() }),
                batch,
            ),
            Scenario::Rerank => (
                json!({
                    "query": line(0),
                    "documents": (1..=batch).map(line).collect::<Vec<_>>(),
                    "return_documents": false,
                }),
                batch,
            ),
            Scenario::Explain => {
                let (lang, code) = SNIPPETS[start % SNIPPETS.len()];
                (
                    json!({
                        "code": code,
                        "language": lang,
                        "max_tokens": self.opts.max_tokens,
                        "temperature": 0.0,
                    }),
                    1,
                )
            }
        };
        if let Some(m) = &self.opts.model {
            let field = if sc == Scenario::Verify {
                "nli_model"
            } else {
                "model"
            };
            body[field] = json!(m);
        }
        if !self.opts.cache {
            body["cache"] = json!(false);
        }
        let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        Request { kind, body, inputs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(batch: usize) -> BodyOptions {
        BodyOptions {
            batch,
            model: None,
            cache: false,
            max_tokens: 16,
        }
    }

    #[test]
    fn the_weighted_sequence_interleaves_and_keeps_the_weights() {
        let seq = weighted_sequence(&[5, 3, 2]);
        assert_eq!(seq.len(), 10);
        for (k, w) in [(0, 5), (1, 3), (2, 2)] {
            assert_eq!(seq.iter().filter(|&&x| x == k).count(), w);
        }
        assert!(seq.windows(3).all(|w| !(w[0] == w[1] && w[1] == w[2])));
    }

    #[test]
    fn mixes_parse_and_bad_ones_name_the_flag() {
        let m = parse_mix(DEFAULT_MIX).unwrap();
        assert_eq!(
            m,
            vec![
                (Scenario::Embed, 5),
                (Scenario::Classify, 3),
                (Scenario::Entities, 2)
            ]
        );
        for bad in [
            "embed",
            "nope=1",
            "embed=x",
            "embed=0",
            "mixed=1",
            "embed=1,embed=2",
        ] {
            let e = parse_mix(bad).unwrap_err().to_string();
            assert!(e.contains("--mix"), "{bad}: {e}");
        }
    }

    #[test]
    fn bodies_take_the_corpus_round_robin() {
        let corpus: Vec<String> = (0..5).map(|i| format!("t{i}")).collect();
        let w = Workload::new(Scenario::Embed, &[], corpus.clone(), opts(2));
        let a: Value = serde_json::from_slice(&w.next().body).unwrap();
        let b: Value = serde_json::from_slice(&w.next().body).unwrap();
        let c: Value = serde_json::from_slice(&w.next().body).unwrap();
        assert_eq!(a, json!({"inputs": ["t0", "t1"], "cache": false}));
        assert_eq!(b["inputs"], json!(["t2", "t3"]));
        assert_eq!(c["inputs"], json!(["t4", "t0"]));

        let w = Workload::new(Scenario::Nli, &[], corpus.clone(), opts(2));
        let r = w.next();
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(r.inputs, 2);
        assert_eq!(
            v["pairs"],
            json!([{"premise": "t0", "hypothesis": "t1"}, {"premise": "t1", "hypothesis": "t2"}])
        );
        let w = Workload::new(Scenario::Rerank, &[], corpus.clone(), opts(3));
        let v: Value = serde_json::from_slice(&w.next().body).unwrap();
        assert_eq!(v["query"], "t0");
        assert_eq!(v["documents"], json!(["t1", "t2", "t3"]));

        let mut o = opts(1);
        o.cache = true;
        o.model = Some("m".into());
        let w = Workload::new(Scenario::OpenaiEmbed, &[], corpus, o);
        let v: Value = serde_json::from_slice(&w.next().body).unwrap();
        assert_eq!(v, json!({"input": "t0", "model": "m"}));
    }

    #[test]
    fn verify_claims_are_corpus_lines_and_the_corpus_is_the_evidence() {
        let corpus: Vec<String> = (0..20).map(|i| format!("Sentence {i}.")).collect();
        let mut o = opts(2);
        o.model = Some("qwen".into());
        let w = Workload::new(Scenario::Verify, &[], corpus.clone(), o);
        let r = w.next();
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["claims"], json!(["Sentence 0.", "Sentence 1."]));
        assert_eq!(v["top_k"], 10);
        assert_eq!(v["nli_model"], "qwen");
        assert!(v.get("model").is_none());
        assert_eq!(r.inputs, 2);

        let bodies = evidence_bodies(&corpus);
        assert_eq!(bodies.len(), 1);
        let b: Value = serde_json::from_slice(&bodies[0]).unwrap();
        let docs = b["documents"].as_array().unwrap();
        assert_eq!(docs.len(), 3, "20 lines in documents of {EVIDENCE_LINES}");
        assert_eq!(docs[0]["id"], "bench-0");
        assert!(docs[2]["text"].as_str().unwrap().ends_with("Sentence 19."));
        let many: Vec<String> = (0..1024).map(|i| format!("S {i}.")).collect();
        assert_eq!(
            evidence_bodies(&many).len(),
            4,
            "128 documents, 32 per request"
        );
    }

    #[test]
    fn the_built_in_corpus_has_1024_lines() {
        assert_eq!(load_corpus(None).unwrap().len(), 1024);
    }
}
