//! Accuracy and speed of the generative NLI judge on a labelled JSONL set (default
//! tests/data/nli_eval.jsonl): overall, per label and on the pairs marked `hard`.
//!
//!   cargo run --release -p nlpd-engine --example nli_judge -- MODEL.gguf [--prompt true-false|yes-no]
//!       [--data FILE] [--every N]   (--every 4: every 4th pair, for slow models)
//!
//! All pairs go through `NliJudge::scores_batch` (batched passes; `NLPD_JUDGE_BATCH=0`: one pair
//! at a time through candle's quantized model, for comparison).

use nlpd_engine::generate::{GenModel, JudgePrompt, NliJudge, NLI_LABELS};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut model_path = None;
    let mut prompt = JudgePrompt::TrueFalse;
    let mut every = 1usize;
    let mut data = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/nli_eval.jsonl"
    )
    .to_string();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--prompt" => {
                let p = args.next().ok_or("--prompt needs a value")?;
                prompt = JudgePrompt::parse(&p).ok_or("--prompt: true-false or yes-no")?;
            }
            "--data" => data = args.next().ok_or("--data needs a file")?,
            "--every" => {
                every = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--every needs a positive number")?
            }
            _ => model_path = Some(a),
        }
    }
    let model_path = model_path.ok_or("usage: nli_judge MODEL.gguf [--prompt P] [--data FILE]")?;
    let mut model = GenModel::load(std::path::Path::new(&model_path))?;
    let mut judge = NliJudge::new(&model, prompt)?;
    let text = std::fs::read_to_string(&data)?;
    let rows: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .step_by(every)
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let pairs: Vec<(&str, &str)> = rows
        .iter()
        .map(|v| {
            (
                v["premise"].as_str().unwrap_or(""),
                v["hypothesis"].as_str().unwrap_or(""),
            )
        })
        .collect();
    // One pair first: loads the batched pass (or caches the shared prefix) outside the timing.
    let warm = Instant::now();
    judge.scores_batch(&mut model, &pairs[..1], &mut || true)?;
    eprintln!(
        "first pair (incl. setup): {:.2} s",
        warm.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let scores = judge.scores_batch(&mut model, &pairs, &mut || true)?;
    let (mut right, mut total) = ([0usize; 3], [0usize; 3]);
    let (mut hard_right, mut hard_total) = (0, 0);
    let mut confusion = [[0usize; 3]; 3];
    for (v, s) in rows.iter().zip(&scores) {
        let gold = NLI_LABELS
            .iter()
            .position(|l| v["label"] == *l)
            .ok_or("unknown label")?;
        let pred = (0..3).fold(0, |b, i| if s[i] > s[b] { i } else { b });
        total[gold] += 1;
        confusion[gold][pred] += 1;
        if pred == gold {
            right[gold] += 1;
        }
        if v["hard"] == true {
            hard_total += 1;
            hard_right += usize::from(pred == gold);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let n: usize = total.iter().sum();
    let ok: usize = right.iter().sum();
    println!(
        "{model_path} prompt {prompt:?}: accuracy {:.3} ({ok}/{n}), hard {:.3} ({hard_right}/{hard_total}), {:.2} pairs/s",
        ok as f64 / n as f64,
        hard_right as f64 / hard_total.max(1) as f64,
        n as f64 / secs
    );
    for i in 0..3 {
        println!(
            "  {:<13} recall {:.3}  predicted as {:?}",
            NLI_LABELS[i],
            right[i] as f64 / total[i].max(1) as f64,
            confusion[i]
        );
    }
    Ok(())
}
