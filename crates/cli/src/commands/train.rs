//! `nlpd train`: a classification head on a frozen encoder, from labelled JSONL.

mod cache;
mod output;
mod report;

use super::{load_encoder, EngineArgs};
use anyhow::{bail, Context, Result};
use cache::{hash_file, EmbeddingCache, EncoderIdentity};
use nlpd_engine::pooled::{pooling_name, HeadType};
use nlpd_engine::train::{
    self, check_encoder, embed_texts, evaluate, fit_with_sources, CrossDomainReport, Embedded,
    Examples, Fields, FitOptions,
};
use nlpd_engine::EncoderModel;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// The encoder the head sits on (kept frozen): a model directory or a pack name.
    #[arg(long, env = "NLPD_TRAIN_ENCODER", default_value = "all-MiniLM-L6-v2")]
    encoder: String,
    /// Training data: JSONL, one object per line holding a text and a label (blank lines are
    /// skipped; any other bad line stops training with its line number).
    #[arg(long, env = "NLPD_TRAIN_DATA")]
    data: PathBuf,
    /// The field holding each example's text.
    #[arg(long, env = "NLPD_TRAIN_TEXT_FIELD", default_value = "text")]
    text_field: String,
    /// The field holding each example's label (a string or an integer).
    #[arg(long, env = "NLPD_TRAIN_LABEL_FIELD", default_value = "label")]
    label_field: String,
    /// The labels in id order, comma-separated (e.g. negative,neutral,positive). Data with any
    /// other label is refused. Default: the labels found in --data, sorted.
    #[arg(long, env = "NLPD_TRAIN_LABELS", value_delimiter = ',')]
    labels: Vec<String>,
    /// The model directory to write. It must not exist (or be empty) unless --overwrite.
    /// Not needed with --cross-domain-only.
    #[arg(
        long,
        env = "NLPD_TRAIN_OUT",
        required_unless_present = "cross_domain_only"
    )]
    out: Option<PathBuf>,
    /// Replace --out if it exists.
    #[arg(long, env = "NLPD_TRAIN_OVERWRITE")]
    overwrite: bool,
    /// How config.json names the encoder: a path relative to --out (or absolute). Default: the
    /// encoder's path relative to --out (e.g. `../all-MiniLM-L6-v2` beside it in the models dir).
    #[arg(long, env = "NLPD_TRAIN_ENCODER_REF")]
    encoder_ref: Option<String>,
    /// The head: `linear` (one layer on the embedding) or `mlp` (a hidden ReLU layer of
    /// --hidden units, then the output layer).
    #[arg(long, env = "NLPD_TRAIN_HEAD", default_value = "linear", value_parser = parse_head)]
    head: HeadType,
    /// Width of the MLP's hidden layer.
    #[arg(long, env = "NLPD_TRAIN_HIDDEN", default_value_t = 256)]
    hidden: usize,
    /// Most passes over the training rows (early stopping usually ends sooner).
    #[arg(long, env = "NLPD_TRAIN_EPOCHS", default_value_t = 100)]
    epochs: usize,
    /// AdamW learning rate.
    #[arg(long, env = "NLPD_TRAIN_LR", default_value_t = 1e-3)]
    lr: f64,
    /// Rows per optimizer step.
    #[arg(long, env = "NLPD_TRAIN_BATCH_SIZE", default_value_t = 64)]
    batch_size: usize,
    /// AdamW's decoupled weight decay (on weights, not biases).
    #[arg(long, env = "NLPD_TRAIN_WEIGHT_DECAY", default_value_t = 1e-4)]
    weight_decay: f64,
    /// Stop after this many epochs without a better validation macro-F1.
    #[arg(long, env = "NLPD_TRAIN_PATIENCE", default_value_t = 5)]
    patience: usize,
    /// Fraction of each label's rows held out for validation (0 < f < 1).
    #[arg(long, env = "NLPD_TRAIN_VAL_SPLIT", default_value_t = 0.1)]
    val_split: f64,
    /// Seed of the validation split, the initial weights and the shuffles.
    #[arg(long, env = "NLPD_TRAIN_SEED", default_value_t = 42)]
    seed: u64,
    /// `balanced` weighs each label's loss by rows / (labels x rows of the label); `none` does not.
    #[arg(long, env = "NLPD_TRAIN_CLASS_WEIGHT", default_value = "balanced", value_parser = ["balanced", "none"])]
    class_weight: String,
    /// Label smoothing ε (0 <= ε < 1): the training target puts 1 - ε + ε/k on the true label and
    /// ε/k on each other one, which keeps the head from growing over-confident on its sources.
    #[arg(long, env = "NLPD_TRAIN_LABEL_SMOOTHING", default_value_t = 0.0)]
    label_smoothing: f64,
    /// Cross-domain validation before the final fit: each source of --data (the
    /// --source-field of its rows) is held out in turn and scored by a head trained, with the
    /// same options, on the other sources only. Prints accuracy, macro-F1 and per-label recall
    /// per held-out source and their mean, and records them in train.json (`cross_domain`).
    #[arg(long, env = "NLPD_TRAIN_CROSS_DOMAIN")]
    cross_domain: bool,
    /// Only the cross-domain validation: no final fit, nothing written (--out not needed).
    #[arg(long, env = "NLPD_TRAIN_CROSS_DOMAIN_ONLY")]
    cross_domain_only: bool,
    /// `balanced` weighs each source of --data (its rows' --source-field) by rows / (sources x
    /// rows of the source), so a large source does not drown the others (a row's weight is its
    /// source's times its label's --class-weight). `none` weighs every source by its rows.
    #[arg(long, env = "NLPD_TRAIN_SOURCE_WEIGHT", default_value = "none", value_parser = ["balanced", "none"])]
    source_weight: String,
    /// The field naming each example's source, for --cross-domain and --source-weight.
    #[arg(long, env = "NLPD_TRAIN_SOURCE_FIELD", default_value = "source")]
    source_field: String,
    /// Test data scored after training (JSONL with the same fields; its labels must be among the
    /// model's, not all need to occur). Repeatable or comma-separated; each file is reported alone.
    #[arg(long, env = "NLPD_TRAIN_TEST", value_delimiter = ',')]
    test: Vec<PathBuf>,
    /// Keep the embeddings of --data and --test here and reuse them when the encoder, its
    /// settings and the texts are the same (speeds up trying other heads and options).
    #[arg(long, env = "NLPD_TRAIN_CACHE")]
    cache: Option<PathBuf>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

fn parse_head(s: &str) -> Result<HeadType, String> {
    HeadType::parse(s).ok_or_else(|| format!("`{s}`: expected linear or mlp"))
}

/// Everything about the encoder that `train.json` records and the cache keys on.
struct Encoder {
    model: EncoderModel,
    path: PathBuf,
    identity: EncoderIdentity,
}

pub fn run(args: Args, models_dir: &Path) -> Result<usize> {
    if !(args.val_split > 0.0 && args.val_split < 1.0) {
        bail!(
            "--val-split must be between 0 and 1 (exclusive), got {}",
            args.val_split
        );
    }
    let opts = FitOptions {
        head: args.head,
        mlp_hidden: args.hidden,
        max_epochs: args.epochs,
        lr: args.lr,
        batch_size: args.batch_size,
        weight_decay: args.weight_decay,
        patience: args.patience,
        balanced: args.class_weight == "balanced",
        label_smoothing: args.label_smoothing,
        balance_sources: args.source_weight == "balanced",
        seed: args.seed,
    };
    opts.validate()?;
    let cross_domain = args.cross_domain || args.cross_domain_only;
    let out = match (&args.out, args.cross_domain_only) {
        (_, true) => None,
        (Some(out), false) => Some(out.clone()),
        (None, false) => bail!("--out is required (unless --cross-domain-only)"),
    };
    if let Some(out) = &out {
        output::check_out_dir(out, args.overwrite)?;
    }

    let fields = Fields {
        text: &args.text_field,
        label: &args.label_field,
        source: (cross_domain || opts.balance_sources).then_some(args.source_field.as_str()),
    };
    let eval_fields = Fields {
        source: None,
        ..fields.clone()
    };
    let fixed = (!args.labels.is_empty()).then_some(args.labels.as_slice());
    let (examples, labels) = train::read_training(&args.data, &fields, fixed)?;
    let tests = args
        .test
        .iter()
        .map(|p| Ok((p.clone(), train::read_eval(p, &eval_fields, &labels)?)))
        .collect::<Result<Vec<(PathBuf, Examples)>>>()?;
    eprintln!(
        "nlpd train: {} examples, labels {} ({})",
        examples.len(),
        labels.join(", "),
        examples
            .counts(labels.len())
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" / ")
    );

    let encoder = open_encoder(&args, models_dir)?;
    let cache = args.cache.as_deref().map(EmbeddingCache::new).transpose()?;
    let all = embed(&encoder, &examples, &args.data, cache.as_ref())?;

    let cross = if cross_domain {
        let r = cross_domain_report(&all, &examples.sources, &labels, &opts, args.val_split)?;
        print!("{}", report::render_cross_domain(&r, &labels));
        Some(r)
    } else {
        None
    };
    let Some(out) = out else {
        return Ok(0);
    };

    let split = train::stratified(&all.labels, labels.len(), args.val_split, args.seed);
    let (train_rows, val_rows) = (all.select(&split.train), all.select(&split.val));
    eprintln!(
        "nlpd train: {} training rows, {} validation rows; {} head",
        train_rows.len(),
        val_rows.len(),
        opts.head.as_str()
    );
    // Each training row's source id, when sources were read (--cross-domain, --source-weight).
    let train_sources = (!examples.sources.is_empty()).then(|| {
        let (_, ids) = train::source_ids(&examples.sources);
        split.train.iter().map(|&i| ids[i]).collect::<Vec<usize>>()
    });
    let fitted = fit_with_sources(
        &train_rows,
        train_sources.as_deref(),
        &val_rows,
        labels.len(),
        &opts,
        &mut |e| {
            eprintln!(
            "epoch {:>3}: train loss {:.4}  val loss {:.4}  val accuracy {:.4}  val macro-F1 {:.4}",
            e.epoch, e.train_loss, e.val_loss, e.val_accuracy, e.val_macro_f1
        );
        },
    )?;
    eprintln!(
        "nlpd train: best epoch {} of {}{}",
        fitted.best_epoch,
        fitted.history.len(),
        if fitted.stopped_early {
            " (stopped early)"
        } else {
            ""
        }
    );

    let val_report = fitted.val.report(&labels);
    print!("{}", report::render("validation", &val_report, &labels));
    let mut test_reports = Vec::new();
    for (path, ex) in &tests {
        let emb = embed(&encoder, ex, path, cache.as_ref())?;
        let r = evaluate(&fitted.head, &emb).report(&labels);
        print!(
            "{}",
            report::render(&format!("test {}", path.display()), &r, &labels)
        );
        let mut entry = json!({"path": path.display().to_string(), "blake3": hash_file(path)?});
        if let (Some(e), serde_json::Value::Object(m)) =
            (entry.as_object_mut(), serde_json::to_value(&r)?)
        {
            e.extend(m);
        }
        test_reports.push(entry);
    }

    let dir = encoder.model.dir();
    let mut record = json!({
        "nlpd_version": env!("CARGO_PKG_VERSION"),
        "command": output::command_line(),
        "encoder": {
            "path": encoder.path.display().to_string(),
            "weights_blake3": encoder.identity.weights_blake3,
            "tokenizer_blake3": encoder.identity.tokenizer_blake3,
            "settings": encoder.identity.settings,
        },
        "data": {
            "path": args.data.display().to_string(),
            "blake3": hash_file(&args.data)?,
            "rows": examples.len(),
            "text_field": args.text_field,
            "label_field": args.label_field,
        },
        "labels": labels,
        "seed": args.seed,
        "val_split": args.val_split,
        "options": opts,
        "split": {"train": train_rows.len(), "val": val_rows.len()},
        "class_weights": fitted.class_weights,
        "best_epoch": fitted.best_epoch,
        "epochs_run": fitted.history.len(),
        "stopped_early": fitted.stopped_early,
        "history": fitted.history,
        "metrics": {"val": val_report, "test": test_reports},
    });
    if let (Some(r), Some(m)) = (&cross, record.as_object_mut()) {
        m.insert(
            "cross_domain".into(),
            json!({"source_field": args.source_field, "report": r}),
        );
    }
    let written = output::write_model_dir(
        &out,
        args.overwrite,
        &output::HeadSpec {
            head: &fitted.head,
            encoder_dir: &encoder.path,
            encoder_ref: args.encoder_ref.as_deref(),
            pooling: dir.pooling,
            normalize: dir.normalized,
            labels: &labels,
        },
        record,
    )?;
    eprintln!(
        "nlpd train: wrote {} (head blake3 {})",
        out.display(),
        written.head_blake3
    );
    Ok(0)
}

/// Holds out each source in turn (folds on all cores; the result does not depend on how many).
fn cross_domain_report(
    all: &Embedded,
    sources: &[String],
    labels: &[String],
    opts: &FitOptions,
    val_split: f64,
) -> Result<CrossDomainReport> {
    let n_sources = train::source_ids(sources).0.len();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    eprintln!(
        "nlpd train: cross-domain validation: {n_sources} sources, each held out in turn \
         ({} head; {threads} at a time)",
        opts.head.as_str()
    );
    let bar = indicatif::ProgressBar::new(n_sources as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "cross-domain {bar:30} {pos}/{len} sources held out [{elapsed_precise}] {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let folds = train::hold_one_source_out(
        all,
        sources,
        labels.len(),
        opts,
        val_split,
        threads,
        &|f| {
            let line = format!(
            "nlpd train: held out {}: accuracy {:.4}  macro-F1 {:.4}  (best epoch {}, {} training rows)",
            f.source,
            f.eval.confusion.accuracy(),
            f.eval.confusion.macro_f1_of_truth(),
            f.best_epoch,
            f.train_rows
        );
            // A hidden bar (stderr not a terminal) drops println: print the line plainly then.
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
            bar.inc(1);
        },
    )?;
    bar.finish_and_clear();
    Ok(train::summarize(&folds, labels))
}

fn open_encoder(args: &Args, models_dir: &Path) -> Result<Encoder> {
    let path = nlpd_runtime::resolve_model(&args.encoder, models_dir)?;
    let model = load_encoder(&path, &args.engine)?;
    check_encoder(&model, &path)?;
    let dir = model.dir();
    let identity = EncoderIdentity {
        weights_blake3: hash_file(&dir.weights)?,
        tokenizer_blake3: hash_file(&dir.tokenizer)?,
        settings: format!(
            "pooling={} normalize={} max_tokens={} backend={} quantize={}",
            pooling_name(dir.pooling),
            dir.normalized,
            model.tokenizer().max_len(),
            model.backend_name(),
            args.engine.quantize.as_str()
        ),
    };
    Ok(Encoder {
        model,
        path,
        identity,
    })
}

/// Embeds a file's examples (from the cache when it has them), with a progress bar.
fn embed(
    encoder: &Encoder,
    ex: &Examples,
    path: &Path,
    cache: Option<&EmbeddingCache>,
) -> Result<Embedded> {
    let dim = encoder.model.config().hidden_size;
    let cached = cache.and_then(|c| c.get(&encoder.identity, &ex.texts, dim));
    let x = match cached {
        Some(x) => {
            eprintln!(
                "nlpd train: embeddings of {} from the cache",
                path.display()
            );
            x
        }
        None => {
            let bar = indicatif::ProgressBar::new(ex.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "embedding {msg} {bar:30} {pos}/{len} texts [{elapsed_precise} < {eta}] {per_sec}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_message(path.display().to_string());
            let x = embed_texts(&encoder.model, &ex.texts, &mut |n| {
                bar.set_position(n as u64)
            })
            .with_context(|| format!("embedding {}", path.display()))?;
            bar.finish_and_clear();
            if let Some(c) = cache {
                c.put(&encoder.identity, &ex.texts, &x)?;
            }
            x
        }
    };
    Ok(Embedded {
        x,
        dim,
        labels: ex.labels.clone(),
    })
}
