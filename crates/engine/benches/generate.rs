//! Generation speed, the engine alone: prompt processing (prefill) and decoding measured
//! separately, greedy, a fixed number of decoded tokens (end-of-sequence ignored).
//!
//! ```text
//! cargo bench -p nlpd-engine --bench generate -- --model models/smollm2-135m-instruct \
//!     [--prompt-tokens 128] [--decode 128] [--repeat 3] [--json] [--export-tokenizer FILE]
//!     [--batched N]
//! ```
//! The prompt is a chat-templated request to explain a piece of Python code, cut or repeated to
//! `--prompt-tokens`. Reports the best of `--repeat` runs. `--export-tokenizer` writes the
//! tokenizer nlpd rebuilds from the GGUF metadata as `tokenizer.json` (what candle's examples need)
//! and exits. `--batched N` instead times the batched f32 prompt pass the NLI judge uses
//! (`generate::Prefill`): N copies of the prompt in one pass, next-token logits only.

use nlpd_engine::generate::{ChatMessage, GenModel, Prefill};
use std::path::PathBuf;

struct Args {
    model: PathBuf,
    prompt_tokens: usize,
    decode: usize,
    repeat: usize,
    json: bool,
    export: Option<PathBuf>,
    batched: usize,
}

fn parse() -> Result<Args, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut a = Args {
        model: root.join("models/smollm2-135m-instruct"),
        prompt_tokens: 128,
        decode: 128,
        repeat: 3,
        json: false,
        export: None,
        batched: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String, f: &str| v.parse::<usize>().map_err(|e| format!("{f}: {e}"));
        match flag.as_str() {
            "--model" => a.model = val()?.into(),
            "--prompt-tokens" => a.prompt_tokens = num(val()?, "--prompt-tokens")?,
            "--decode" => a.decode = num(val()?, "--decode")?,
            "--repeat" => a.repeat = num(val()?, "--repeat")?,
            "--json" => a.json = true,
            "--export-tokenizer" => a.export = Some(val()?.into()),
            "--batched" => a.batched = num(val()?, "--batched")?,
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

const CODE: &str = "def merge_intervals(intervals):\n    intervals.sort(key=lambda x: x[0])\n    merged = []\n    for start, end in intervals:\n        if merged and start <= merged[-1][1]:\n            merged[-1][1] = max(merged[-1][1], end)\n        else:\n            merged.append([start, end])\n    return merged\n";

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("generate bench: {e}");
            std::process::exit(2);
        }
    };
    let mut model =
        GenModel::load(&args.model).unwrap_or_else(|e| panic!("{}: {e}", args.model.display()));
    if let Some(path) = &args.export {
        model
            .tokenizer()
            .save(path, false)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("wrote {}", path.display());
        return;
    }
    let mut body = String::from("Explain what this Python code does, step by step.\n\n");
    let mut ids = Vec::new();
    while ids.len() < args.prompt_tokens {
        body.push_str(CODE);
        let text = model
            .render_chat(&[ChatMessage {
                role: "user".into(),
                content: body.clone(),
            }])
            .expect("chat template");
        ids = model.encode(&text).expect("tokenize");
    }
    // Keep the template's tail (the assistant turn) and cut the middle.
    let cut = ids.len() - args.prompt_tokens;
    let tail = ids.split_off(ids.len() - 8);
    ids.truncate(ids.len() - cut);
    ids.extend(tail);
    if args.batched > 0 {
        batched(&model, &ids, &args);
        return;
    }
    // Warm up: page in the weights, size the buffers.
    model
        .time_greedy(&ids[..ids.len().min(16)], 4)
        .expect("warm-up");
    let mut best: Option<nlpd_engine::generate::GenTiming> = None;
    for _ in 0..args.repeat.max(1) {
        let t = model.time_greedy(&ids, args.decode).expect("generate");
        best = Some(match best {
            None => t,
            Some(b) => nlpd_engine::generate::GenTiming {
                prefill: b.prefill.min(t.prefill),
                decode: b.decode.min(t.decode),
                ..b
            },
        });
    }
    let t = best.expect("at least one run");
    let threads = rayon::current_num_threads();
    if args.json {
        println!(
            "{{\"engine\":\"nlpd\",\"model\":\"{}\",\"architecture\":\"{}\",\"threads\":{threads},\"prompt_tokens\":{},\"prefill_tok_s\":{:.2},\"decode_tokens\":{},\"decode_tok_s\":{:.2}}}",
            args.model.display(),
            model.architecture(),
            t.prompt_tokens,
            t.prefill_tokens_per_s(),
            t.decode_tokens,
            t.decode_tokens_per_s()
        );
    } else {
        println!(
            "{} ({}), {threads} threads: prefill {} tokens at {:.1} tok/s; decode {} tokens at {:.1} tok/s",
            args.model.display(),
            model.architecture(),
            t.prompt_tokens,
            t.prefill_tokens_per_s(),
            t.decode_tokens,
            t.decode_tokens_per_s()
        );
    }
}

/// Prompt tokens per second of the batched f32 pass over `n` copies of `ids` (best of `--repeat`).
fn batched(model: &GenModel, ids: &[u32], args: &Args) {
    let t0 = std::time::Instant::now();
    let pre = Prefill::load(model.path()).expect("dequantize");
    let load = t0.elapsed().as_secs_f64();
    let prompts: Vec<&[u32]> = (0..args.batched).map(|_| ids).collect();
    pre.next_token_logits(None, &prompts[..1]).expect("warm-up");
    let mut best = f64::INFINITY;
    for _ in 0..args.repeat.max(1) {
        let t = std::time::Instant::now();
        pre.next_token_logits(None, &prompts).expect("prefill");
        best = best.min(t.elapsed().as_secs_f64());
    }
    let tokens = ids.len() * args.batched;
    let threads = rayon::current_num_threads();
    if args.json {
        println!(
            "{{\"engine\":\"nlpd prefill f32\",\"model\":\"{}\",\"threads\":{threads},\"prompts\":{},\"prompt_tokens\":{},\"prefill_tok_s\":{:.2},\"load_s\":{load:.2}}}",
            args.model.display(),
            args.batched,
            ids.len(),
            tokens as f64 / best
        );
    } else {
        println!(
            "{}, {threads} threads, batched f32 pass: {} prompts of {} tokens at {:.1} tok/s (dequantized in {load:.1} s)",
            args.model.display(),
            args.batched,
            ids.len(),
            tokens as f64 / best
        );
    }
}
