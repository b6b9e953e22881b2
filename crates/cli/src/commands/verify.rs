//! `nlpd verify`: the claim verification pipeline of `/v1/verify`, offline. Reads evidence
//! documents, splits them into passages and embeds them (into an in-memory index: nothing is
//! stored), then verifies each claim: embed, retrieve, NLI, verdict. Writes one JSON line per
//! claim, shaped like one result of `/v1/verify`, and a summary on stderr.

use super::{load_encoder, model_path, EngineArgs};
use crate::io::{opt_text_field, records, text_field, Output};
use anyhow::{bail, Context, Result};
use nlpd_engine::generate::{find_gguf, nli_label_positions, GenModel, JudgePrompt, NliJudge};
use nlpd_engine::{EmbedOptions, EncoderModel, TextInput};
use nlpd_runtime::evidence::{
    document_id_for, report, split, ClaimTimings, PassageRef, VectorIndex, Verdict,
    DEFAULT_MIN_SCORE, DEFAULT_PASSAGE_TOKENS, DEFAULT_TOP_K,
};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Evidence documents, JSONL: {"id"?, "text", "source"?} per line (a line that is not JSON
    /// is one document). Documents without an id get one made from their text.
    #[arg(long, env = "NLPD_VERIFY_EVIDENCE")]
    evidence: PathBuf,
    /// Claims, JSONL: {"claim"} or {"text"} per line (a line that is not JSON is one claim);
    /// stdin when absent.
    #[arg(long, env = "NLPD_VERIFY_CLAIMS")]
    claims: Option<PathBuf>,
    /// Embedding model: directory or pack name [default: all-minilm-l6-v2].
    #[arg(long, env = "NLPD_VERIFY_EMBED_MODEL")]
    embed_model: Option<String>,
    /// NLI model: a cross-encoder directory whose labels name entailment, neutral and
    /// contradiction, or a GGUF generative model (file, directory or pack name) used as the
    /// judge [default: the pack's smollm2-135m-instruct as the judge].
    #[arg(long, env = "NLPD_VERIFY_NLI_MODEL")]
    nli_model: Option<String>,
    /// How the judge asks (generative NLI only): `true-false` or `yes-no`.
    #[arg(long, env = "NLPD_JUDGE_PROMPT", default_value = "true-false", value_parser = parse_prompt)]
    judge_prompt: JudgePrompt,
    /// Passages retrieved per claim.
    #[arg(long, env = "NLPD_VERIFY_TOP_K", default_value_t = DEFAULT_TOP_K)]
    top_k: usize,
    /// Passages less similar (cosine) to the claim than this are not evidence.
    #[arg(long, env = "NLPD_VERIFY_MIN_SCORE", default_value_t = DEFAULT_MIN_SCORE, allow_negative_numbers = true)]
    min_score: f32,
    /// Most word pieces per passage when splitting documents.
    #[arg(long, env = "NLPD_VERIFY_PASSAGE_TOKENS", default_value_t = DEFAULT_PASSAGE_TOKENS)]
    passage_tokens: usize,
    #[command(flatten)]
    pub engine: EngineArgs,
}

fn parse_prompt(s: &str) -> Result<JudgePrompt, String> {
    JudgePrompt::parse(s).ok_or_else(|| format!("`{s}`: expected true-false or yes-no"))
}

/// The NLI implementation.
enum Nli {
    Judge(Box<(GenModel, NliJudge)>),
    CrossEncoder(Box<EncoderModel>, [usize; 3]),
}

impl Nli {
    fn load(args: &Args, models_dir: &Path) -> Result<(Self, String)> {
        let path = match &args.nli_model {
            Some(m) => model_path(Some(m), "nli", models_dir)?,
            None => model_path(None, "explain", models_dir)?,
        };
        if find_gguf(&path).is_ok() {
            let model = GenModel::load(&path)
                .with_context(|| format!("cannot load model {}", path.display()))?;
            let judge = NliJudge::new(&model, args.judge_prompt)?;
            return Ok((
                Nli::Judge(Box::new((model, judge))),
                path.display().to_string(),
            ));
        }
        let model = load_encoder(&path, &args.engine)?;
        let labels = model.labels();
        let at = nli_label_positions(labels).map_err(|want| {
            anyhow::anyhow!(
                "{} is not an NLI model: its labels {labels:?} lack `{want}`",
                path.display()
            )
        })?;
        Ok((
            Nli::CrossEncoder(Box::new(model), at),
            path.display().to_string(),
        ))
    }

    /// `[entailment, neutral, contradiction]` for each (premise, hypothesis).
    fn scores(&mut self, pairs: &[(&str, &str)]) -> Result<Vec<[f32; 3]>> {
        match self {
            Nli::Judge(b) => {
                let (model, judge) = &mut **b;
                Ok(judge.scores_batch(model, pairs, &mut || true)?)
            }
            Nli::CrossEncoder(model, at) => {
                let inputs: Vec<TextInput> =
                    pairs.iter().map(|(p, h)| TextInput::Pair(p, h)).collect();
                Ok(model
                    .classify(&inputs, true)?
                    .into_iter()
                    .map(|c| at.map(|i| c.scores.get(i).copied().unwrap_or(0.0)))
                    .collect())
            }
        }
    }
}

/// A document read from `--evidence`.
struct Doc {
    id: String,
    text: String,
}

fn read_documents(path: &Path) -> Result<Vec<Doc>> {
    let mut docs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for rec in records(Some(path))? {
        let m = match rec.value {
            Ok(m) => m,
            Err(e) if e == "empty line" => continue,
            Err(e) => bail!("{}: line {}: {e}", path.display(), rec.line),
        };
        let doc = (|| {
            let text = text_field(&m, "text")?.to_string();
            let id = match opt_text_field(&m, "id")? {
                Some(id) => id.to_string(),
                None => document_id_for(&text),
            };
            Ok::<_, String>(Doc { id, text })
        })()
        .map_err(|e| anyhow::anyhow!("{}: line {}: {e}", path.display(), rec.line))?;
        if !seen.insert(doc.id.clone()) {
            bail!(
                "{}: line {}: the id `{}` appears twice",
                path.display(),
                rec.line,
                doc.id
            );
        }
        docs.push(doc);
    }
    if docs.is_empty() {
        bail!("{} holds no evidence documents", path.display());
    }
    Ok(docs)
}

fn bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {{pos}}/{{len}} {what} [{{elapsed_precise}} < {{eta}}]"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

pub fn run(args: Args, models_dir: &Path) -> Result<usize> {
    if !(1..=1000).contains(&args.top_k) {
        bail!("--top-k must be between 1 and 1000, not {}", args.top_k);
    }
    if !(-1.0..=1.0).contains(&args.min_score) {
        bail!(
            "--min-score is a cosine between -1 and 1, not {}",
            args.min_score
        );
    }
    let docs = read_documents(&args.evidence)?;
    let t_load = Instant::now();
    let embed_path = model_path(args.embed_model.as_deref(), "embed", models_dir)?;
    let embedder = load_encoder(&embed_path, &args.engine)?;
    let limit = embedder.tokenizer().max_len().saturating_sub(2);
    if args.passage_tokens < 8 || args.passage_tokens > limit {
        bail!(
            "--passage-tokens must be between 8 and {limit} (the embedding model's limit), not {}",
            args.passage_tokens
        );
    }
    let (mut nli, nli_name) = Nli::load(&args, models_dir)?;
    let load_ms = ms(t_load);

    // Evidence: split, embed, index.
    let t_index = Instant::now();
    let count = |s: &str| {
        embedder
            .tokenizer()
            .inner()
            .encode(s, false)
            .map(|e| e.len())
            .unwrap_or_else(|_| s.split_whitespace().count())
    };
    let opts = EmbedOptions {
        normalize: Some(true),
        truncate: true,
        ..Default::default()
    };
    let mut index = VectorIndex::new();
    let progress = bar(docs.len() as u64, "documents embedded");
    for d in &docs {
        let spans = split::passages(&d.text, args.passage_tokens, count);
        let offsets = split::char_offsets(
            &d.text,
            &spans
                .iter()
                .flat_map(|(r, _)| [r.start, r.end])
                .collect::<Vec<_>>(),
        );
        let texts: Vec<&str> = spans.iter().map(|(r, _)| &d.text[r.clone()]).collect();
        let vectors = embedder.embed(&texts, &opts)?;
        for (pos, (text, v)) in texts.iter().zip(vectors).enumerate() {
            let p = PassageRef {
                document_id: d.id.as_str().into(),
                position: pos as i32,
                text: (*text).into(),
                start_char: offsets[2 * pos] as i32,
                end_char: offsets[2 * pos + 1] as i32,
            };
            index.add(p, &v)?;
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    let index_ms = ms(t_index);
    eprintln!(
        "nlpd: {} documents, {} passages indexed in {:.1} s (models loaded in {:.1} s)",
        docs.len(),
        index.len(),
        index_ms / 1000.0,
        load_ms / 1000.0
    );

    // Claims.
    let mut claims = Vec::new();
    let mut out = Output::new();
    for rec in records(args.claims.as_deref())? {
        let claim = rec.value.and_then(|m| {
            text_field(&m, "claim")
                .or_else(|_| text_field(&m, "text"))
                .map(str::to_string)
        });
        match claim {
            Ok(c) => claims.push(c),
            Err(e) if e == "empty line" => {}
            Err(e) => out.error(rec.line, &e)?,
        }
    }
    let t_embed = Instant::now();
    let texts: Vec<&str> = claims.iter().map(String::as_str).collect();
    let vectors = embedder.embed(&texts, &opts)?;
    let embed_ms = ms(t_embed);
    let progress = bar(claims.len() as u64, "claims verified");
    let mut totals = ClaimTimings::default();
    let mut verdicts = [0usize; 3];
    for (claim, v) in claims.iter().zip(&vectors) {
        let mut timings = ClaimTimings::default();
        let t = Instant::now();
        let hits = index.search(v, args.top_k, args.min_score)?;
        timings.retrieve = ms(t);
        let t = Instant::now();
        let pairs: Vec<(&str, &str)> = hits
            .iter()
            .map(|h| (&*h.passage.text, claim.as_str()))
            .collect();
        let scores = nli.scores(&pairs)?;
        timings.nli = ms(t);
        let r = report(claim, &hits, &scores, timings);
        totals.retrieve += r.timings_ms.retrieve;
        totals.nli += r.timings_ms.nli;
        totals.aggregate += r.timings_ms.aggregate;
        verdicts[match r.verdict {
            Verdict::Supported => 0,
            Verdict::Refuted => 1,
            Verdict::NotEnoughInfo => 2,
        }] += 1;
        out.value(&serde_json::to_value(&r)?)?;
        out.flush()?;
        progress.inc(1);
    }
    progress.finish_and_clear();
    eprintln!(
        "nlpd: {} claims: {} supported, {} refuted, {} not enough info; NLI by {nli_name}",
        claims.len(),
        verdicts[0],
        verdicts[1],
        verdicts[2]
    );
    eprintln!(
        "nlpd: time: embed claims {:.0} ms, retrieve {:.1} ms, nli {:.0} ms, aggregate {:.2} ms \
         (evidence indexing {:.0} ms, model loading {:.0} ms not included)",
        embed_ms, totals.retrieve, totals.nli, totals.aggregate, index_ms, load_ms
    );
    out.flush()?;
    Ok(out.failed)
}
