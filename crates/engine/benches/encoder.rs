//! Encoder throughput and latency, the engine alone (no server, no HTTP).
//!
//! ```text
//! cargo bench -p nlpd-engine --bench encoder -- --model models/all-MiniLM-L6-v2 \
//!     [--corpus tests/data/bench_corpus.txt] [--backend fast|candle|auto] [--quantize int8|bf16]
//!     [--batch 1,8,32,128] \
//!     [--repeat 3] [--json]
//! ```
//! For each batch size: sentences/s over the whole corpus with batches in corpus order and with
//! the corpus sorted by length first (best of `--repeat` runs; tokenization excluded), then the
//! compute latency of one sentence of ~28 word pieces alone (median of 200 runs).

use nlpd_engine::{BackendKind, EncoderModel, EncoderOp, LoadOptions, Quantize, TextInput};
use std::path::PathBuf;
use std::time::Instant;

struct Args {
    model: PathBuf,
    corpus: PathBuf,
    backend: BackendKind,
    quantize: Quantize,
    batches: Vec<usize>,
    repeat: usize,
    json: bool,
}

fn parse() -> Result<Args, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut a = Args {
        model: root.join("models/all-MiniLM-L6-v2"),
        corpus: root.join("tests/data/bench_corpus.txt"),
        backend: BackendKind::Auto,
        quantize: Quantize::None,
        batches: vec![1, 8, 32, 128],
        repeat: 3,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => a.model = val()?.into(),
            "--corpus" => a.corpus = val()?.into(),
            "--backend" => a.backend = val()?.parse::<BackendKind>()?,
            "--quantize" => a.quantize = val()?.parse::<Quantize>()?,
            "--batch" => {
                a.batches = val()?
                    .split(',')
                    .map(|s| s.trim().parse().map_err(|e| format!("--batch {s}: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--repeat" => a.repeat = val()?.parse().map_err(|e| format!("--repeat: {e}"))?,
            "--json" => a.json = true,
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("encoder bench: {e}");
            std::process::exit(2);
        }
    };
    let model = EncoderModel::load_opts(
        &args.model,
        &LoadOptions {
            backend: args.backend,
            quantize: args.quantize,
        },
    )
    .unwrap_or_else(|e| panic!("{}: {e}", args.model.display()));
    let text = std::fs::read_to_string(&args.corpus)
        .unwrap_or_else(|e| panic!("{}: {e}", args.corpus.display()));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let inputs: Vec<TextInput> = lines.iter().map(|t| TextInput::Single(t)).collect();
    let encs = model.encode(&inputs, true).expect("tokenize corpus");
    let tokens: usize = encs.iter().map(|e| e.len()).sum();
    let op = EncoderOp::Embed {
        normalize: true,
        dimensions: None,
    };
    let threads = rayon::current_num_threads();
    // The kernel names the comparison rows: `NLPD_F32_KERNEL=gemm` (the gemm crate's f32),
    // `NLPD_AMX=off` (AVX512-BF16 / VNNI on an AMX CPU), `NLPD_BF16_KERNEL`.
    let engine = format!("{} ({})", model.backend_name(), model.kernel());
    if !args.json {
        println!(
            "{} on {} ({} threads): {} sentences, {:.1} word pieces on average",
            engine,
            args.model.display(),
            threads,
            encs.len(),
            tokens as f64 / encs.len() as f64
        );
        println!(
            "{:>6} {:>14} {:>14}",
            "batch", "corpus order", "length-sorted"
        );
    }
    let mut sorted: Vec<usize> = (0..encs.len()).collect();
    sorted.sort_by_key(|&i| encs[i].len());
    let corpus_order: Vec<usize> = (0..encs.len()).collect();
    let run = |order: &[usize], batch: usize| -> f64 {
        let mut best = f64::MAX;
        for _ in 0..args.repeat.max(1) {
            let t0 = Instant::now();
            for chunk in order.chunks(batch) {
                let items: Vec<_> = chunk.iter().map(|&i| (&encs[i], &op)).collect();
                std::hint::black_box(model.run_batch(&items).expect("forward"));
            }
            best = best.min(t0.elapsed().as_secs_f64());
        }
        encs.len() as f64 / best
    };
    // Warm up (buffers, page faults, CPU clocks).
    run(&sorted[..encs.len().min(256)], 32);
    let mut rows = Vec::new();
    for &b in &args.batches {
        let (plain, by_len) = (run(&corpus_order, b), run(&sorted, b));
        if !args.json {
            println!("{b:>6} {plain:>14.1} {by_len:>14.1}");
        }
        rows.push(format!(
            "{{\"batch\":{b},\"corpus_order\":{plain:.2},\"sorted\":{by_len:.2}}}"
        ));
    }
    // Batch-1 compute latency on the sentence closest to 28 word pieces.
    let one = encs
        .iter()
        .min_by_key(|e| e.len().abs_diff(28))
        .expect("corpus is not empty");
    let mut times: Vec<f64> = (0..200)
        .map(|_| {
            let t0 = Instant::now();
            std::hint::black_box(model.run_batch(&[(one, &op)]).expect("forward"));
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let p50 = times[times.len() / 2];
    if args.json {
        println!(
            "{{\"engine\":\"nlpd {}\",\"threads\":{threads},\"sentences\":{},\"avg_tokens\":{:.2},\"rows\":[{}],\"latency_ms\":{p50:.3},\"latency_tokens\":{}}}",
            engine,
            encs.len(),
            tokens as f64 / encs.len() as f64,
            rows.join(","),
            one.len()
        );
    } else {
        println!(
            "batch-1 latency ({} word pieces, compute only): p50 {p50:.2} ms",
            one.len()
        );
    }
}
