//! The fast CPU path for BERT-style encoders (BERT, RoBERTa / XLM-R, DistilBERT).
//!
//! What makes it fast, compared with the candle graph it replaces on the CPU:
//! - **No padding.** The batch's tokens are concatenated into one `[tokens × hidden]` matrix; every
//!   linear layer is one GEMM over it, attention runs per sequence, and there is no mask arithmetic.
//! - **Fused work.** Q, K and V are one GEMM (the softmax scale folded into the query weights); the
//!   up-projection's bias is written before its GEMM accumulates onto it; the output projections
//!   accumulate straight onto the residual, and one pass adds their bias and applies LayerNorm;
//!   GELU is a vectorized polynomial, not a libm call per element.
//! - **No allocation in the loop.** Each worker thread reuses its buffers from batch to batch.
//! - **Threads without chatter.** A batch of several sequences is split into one group per core by
//!   token count, and each core runs the whole stack for its group with no synchronization until
//!   the end; a single sequence instead spreads each GEMM and the attention heads over the cores.

mod amx;
mod attention;
pub(crate) mod bf16;
pub(crate) mod int8;
pub(crate) mod kernels;
mod mode;
pub(crate) mod packed;

pub(crate) use self::attention::SendPtr;
use self::attention::{Shape, Span};
use self::bf16::{BActs, BDense, Bf16Kernel};
use self::int8::{
    linear_q, quantize_rows, quantize_rows_with, useful_parts, QActs, QDense, RowPass,
};
use self::kernels::{add_bias_layer_norm, layer_norm, linear, Dense};
use self::mode::Mode;
use super::bert::BertEncoder;
use super::{Batch, EncoderBackend, Kernel};
use crate::config::Activation;
use crate::error::{EngineError, Result};
use crate::model::Quantize;
use crate::profile::{self, Laps, LayerTimes};
use candle_core::{Device, Tensor};
use gemm::Parallelism;
use std::sync::Mutex;

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

struct FastLayer {
    /// `[hidden, 3·hidden]`: query (pre-scaled by 1/√head_dim), key, value.
    qkv: Dense,
    o: Dense,
    attn_norm: Norm,
    up: Dense,
    down: Dense,
    out_norm: Norm,
    /// Reduced-precision copies of `qkv`, `o`, `up`, `down` (the f32 weights are then dropped;
    /// the biases stay in the f32 layers, where the LayerNorm passes read them).
    low: Option<Low>,
}

/// A layer's four linears (`qkv`, `o`, `up`, `down`, in that order) at reduced precision.
enum Low {
    Int8([QDense; 4]),
    Bf16([BDense; 4]),
}

/// What a layer's linears read: the f32 rows, or a copy the pass before them prepared.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prep {
    F32,
    /// u8 rows with a scale and zero point each ([`QActs`]).
    Int8,
    /// rows rounded to bf16 ([`BActs`]).
    Bf16,
}

impl FastLayer {
    fn prep(&self) -> Prep {
        match self.low {
            None => Prep::F32,
            Some(Low::Int8(_)) => Prep::Int8,
            Some(Low::Bf16(_)) => Prep::Bf16,
        }
    }

    /// Linear `i` (0: QKV, 1: attention output, 2: up, 3: down) on `m` rows: from the f32 rows
    /// `x`, or at reduced precision from `acts`, which the caller prepared from `x`.
    #[allow(clippy::too_many_arguments)]
    fn linear(
        &self,
        i: usize,
        dst: &mut [f32],
        x: &[f32],
        m: usize,
        acts: &Acts,
        mode: Mode,
        par: Parallelism,
        bf16: Bf16Kernel,
    ) {
        let threads = kernels::threads_of(par);
        let f = [&self.qkv, &self.o, &self.up, &self.down][i];
        match &self.low {
            None => linear(dst, x, m, f, mode, par),
            Some(Low::Int8(q)) => {
                debug_assert_eq!(q[i].n_in, f.n_in);
                linear_q(dst, &acts.q, m, &q[i], mode, threads)
            }
            Some(Low::Bf16(b)) => {
                debug_assert_eq!(b[i].n_in, f.n_in);
                bf16::linear(bf16, dst, &acts.b, m, &b[i], mode, threads)
            }
        }
    }
}

/// Activations prepared for the next reduced-precision GEMM (one buffer per kind).
#[derive(Default)]
struct Acts {
    q: QActs,
    b: BActs,
}

/// Prepares `x[m × k]` (only read) for linears that read `prep`; nothing for f32.
fn prepare(x: &mut [f32], m: usize, k: usize, acts: &mut Acts, prep: Prep, threads: usize) {
    match prep {
        Prep::F32 => {}
        Prep::Int8 => quantize_rows(x, m, k, &mut acts.q, threads),
        Prep::Bf16 => bf16::convert_rows(x, m, k, &mut acts.b, threads),
    }
}

/// The residual's bias and LayerNorm, one row at a time.
struct NormPass<'a> {
    bias: &'a [f32],
    norm: &'a Norm,
}

impl RowPass for NormPass<'_> {
    #[inline(always)]
    fn apply(&self, row: &mut [f32]) {
        let n = self.norm;
        add_bias_layer_norm(row, self.bias, &n.gamma, &n.beta, n.eps);
    }
}

/// The feed-forward activation, one row at a time. `before_int8`: the rows are quantized to
/// int8 next, so the exact (erf) GELU may be replaced by the tanh form, which is within 4.8e-4
/// of it (3% of the int8 step of a typical GELU row) and about half the arithmetic.
struct ActPass {
    act: Activation,
    before_int8: bool,
}

impl RowPass for ActPass {
    #[inline(always)]
    fn apply(&self, x: &mut [f32]) {
        match self.act {
            Activation::GeluErf | Activation::GeluTanh if self.before_int8 => {
                kernels::gelu_tanh_rcp(x)
            }
            Activation::GeluErf => kernels::gelu_erf(x),
            Activation::GeluTanh => kernels::gelu_tanh(x),
            Activation::Relu => kernels::relu(x),
            Activation::Silu => x.iter_mut().for_each(|v| *v /= 1.0 + kernels::exp(-*v)),
            Activation::Tanh => x.iter_mut().for_each(|v| *v = v.tanh()),
        }
    }
}

/// Applies `pass` to each of the `m` rows of `x`, and prepares each row for `prep` into `acts`
/// right after it (quantized or rounded while in L1). The rows are split over up to `threads`
/// rayon tasks when there are enough of them.
fn norm_rows(
    x: &mut [f32],
    m: usize,
    k: usize,
    acts: &mut Acts,
    prep: Prep,
    pass: impl RowPass,
    threads: usize,
) {
    match prep {
        Prep::Int8 => quantize_rows_with(x, m, k, &mut acts.q, &pass, threads),
        Prep::Bf16 => bf16::convert_rows_with(x, m, k, &mut acts.b, &pass, threads),
        Prep::F32 => pass_rows(&mut x[..m * k], k, &pass, useful_parts(m, k, threads)),
    }
}

/// `pass` on each row of `x` (rows of `k`), the rows halved between `parts` rayon tasks.
fn pass_rows(x: &mut [f32], k: usize, pass: &impl RowPass, parts: usize) {
    let m = x.len() / k;
    if parts <= 1 || m < 2 {
        x.chunks_exact_mut(k).for_each(|row| pass.apply(row));
        return;
    }
    let (a, b) = x.split_at_mut(m * (parts / 2) / parts * k);
    rayon::join(
        || pass_rows(a, k, pass, parts / 2),
        || pass_rows(b, k, pass, parts - parts / 2),
    );
}

/// Reusable buffers of one worker: hidden states, fused QKV, attention context, feed-forward.
#[derive(Default)]
struct Workspace {
    x: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    ffn: Vec<f32>,
    acts: Acts,
}

impl Workspace {
    fn ensure(&mut self, tokens: usize, hidden: usize, inter: usize) {
        let grow = |v: &mut Vec<f32>, n: usize| {
            if v.len() < n {
                v.resize(n, 0.0);
            }
        };
        grow(&mut self.x, tokens * hidden);
        grow(&mut self.qkv, tokens * 3 * hidden);
        grow(&mut self.ctx, tokens * hidden);
        grow(&mut self.ffn, tokens * inter);
    }
}

/// The padding-free fused encoder (CPU; f32, int8 or bf16 linear layers).
pub struct FastBert {
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Option<Vec<f32>>,
    emb_norm: Norm,
    layers: Vec<FastLayer>,
    hidden: usize,
    heads: usize,
    inter: usize,
    vocab: usize,
    max_positions: usize,
    type_vocab: usize,
    act: Activation,
    position_offset: usize,
    precision: Quantize,
    /// The bf16 GEMM kernel (chosen when the layers are converted to bf16).
    bf16: Bf16Kernel,
    pool: Mutex<Vec<Workspace>>,
}

fn flat(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

fn norm(n: &candle_nn::LayerNorm) -> Result<Norm> {
    let gamma = flat(n.weight())?;
    let beta = match n.bias() {
        Some(b) => flat(b)?,
        None => vec![0.0; gamma.len()],
    };
    Ok(Norm {
        gamma,
        beta,
        eps: n.eps() as f32,
    })
}

/// A candle `Linear` (`weight: [out, in]`) as `[in, out]`, the weight and bias scaled by `scale`.
fn dense_parts(l: &candle_nn::Linear, scale: f64) -> Result<(Tensor, Tensor)> {
    let w = (l.weight().t()?.contiguous()? * scale)?;
    let out = l.weight().dim(0)?;
    let b = match l.bias() {
        Some(b) => (b * scale)?,
        None => Tensor::zeros(out, candle_core::DType::F32, l.weight().device())?,
    };
    Ok((w, b))
}

fn dense(parts: &[(Tensor, Tensor)]) -> Result<Dense> {
    let ws: Vec<&Tensor> = parts.iter().map(|(w, _)| w).collect();
    let bs: Vec<&Tensor> = parts.iter().map(|(_, b)| b).collect();
    let w = Tensor::cat(&ws, 1)?;
    let (n_in, n_out) = w.dims2()?;
    Ok(Dense::new(
        flat(&w)?,
        flat(&Tensor::cat(&bs, 0)?)?,
        n_in,
        n_out,
    ))
}

impl FastBert {
    /// Whether the fast path can run this encoder: f32 weights on the CPU and a known activation.
    pub fn supports(enc: &BertEncoder) -> bool {
        enc.device.is_cpu()
    }

    /// Rearranges a loaded candle encoder's weights for the fast path (the candle copy can then go).
    pub fn from_candle(enc: &BertEncoder) -> Result<Self> {
        if !Self::supports(enc) {
            return Err(EngineError::IncompatibleOption {
                option: "backend",
                message: "the fast encoder runs on the CPU only".into(),
            });
        }
        let word = enc.word.embeddings();
        let (vocab, hidden) = word.dims2()?;
        let heads = enc.heads;
        let scale = 1.0 / ((hidden / heads) as f64).sqrt();
        let layers = enc
            .layers
            .iter()
            .map(|l| {
                Ok(FastLayer {
                    qkv: dense(&[
                        dense_parts(&l.q, scale)?,
                        dense_parts(&l.k, 1.0)?,
                        dense_parts(&l.v, 1.0)?,
                    ])?,
                    o: dense(&[dense_parts(&l.o, 1.0)?])?,
                    attn_norm: norm(&l.attn_norm)?,
                    up: dense(&[dense_parts(&l.up, 1.0)?])?,
                    down: dense(&[dense_parts(&l.down, 1.0)?])?,
                    out_norm: norm(&l.out_norm)?,
                    low: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let inter = layers.first().map(|l| l.up.n_out).unwrap_or(0);
        let position = enc.position.embeddings();
        let (token_type, type_vocab) = match &enc.token_type {
            Some(t) => (Some(flat(t.embeddings())?), t.embeddings().dim(0)?),
            None => (None, 0),
        };
        Ok(FastBert {
            word: flat(word)?,
            max_positions: position.dim(0)?,
            position: flat(position)?,
            token_type,
            type_vocab,
            emb_norm: norm(&enc.emb_norm)?,
            layers,
            hidden,
            heads,
            inter,
            vocab,
            act: enc.act,
            position_offset: enc.position_offset as usize,
            precision: Quantize::None,
            bf16: Bf16Kernel::Portable,
            pool: Mutex::new(Vec::new()),
        })
    }

    /// Refuses ids the tables do not have (the tokenizer never produces them; a bad model might).
    fn check(&self, batch: &Batch) -> Result<()> {
        if let Some(&id) = batch.flat_ids.iter().find(|&&i| i as usize >= self.vocab) {
            return Err(EngineError::internal(format!(
                "token id {id} is outside the model's vocabulary ({}): tokenizer and weights disagree",
                self.vocab
            )));
        }
        let longest = batch.lengths.iter().copied().max().unwrap_or(0);
        if longest + self.position_offset > self.max_positions {
            return Err(EngineError::internal(format!(
                "{longest} tokens exceed the model's {} positions: the tokenizer's limit is wrong",
                self.max_positions - self.position_offset
            )));
        }
        if self.token_type.is_some() {
            if let Some(&t) = batch
                .flat_types
                .iter()
                .find(|&&t| t as usize >= self.type_vocab)
            {
                return Err(EngineError::internal(format!(
                    "token type {t} is outside the model's {} types",
                    self.type_vocab
                )));
            }
        }
        Ok(())
    }

    fn embed(&self, x: &mut [f32], ids: &[u32], types: &[u32], spans: &[Span]) {
        let h = self.hidden;
        for sp in spans {
            for p in 0..sp.len {
                let i = sp.start + p;
                let row = &mut x[i * h..(i + 1) * h];
                let id = ids[i] as usize;
                let pos = p + self.position_offset;
                let w = &self.word[id * h..(id + 1) * h];
                let pe = &self.position[pos * h..(pos + 1) * h];
                for ((r, a), b) in row.iter_mut().zip(w).zip(pe) {
                    *r = a + b;
                }
                if let Some(tt) = &self.token_type {
                    let t = types[i] as usize;
                    for (r, a) in row.iter_mut().zip(&tt[t * h..(t + 1) * h]) {
                        *r += a;
                    }
                }
                layer_norm(
                    row,
                    &self.emb_norm.gamma,
                    &self.emb_norm.beta,
                    self.emb_norm.eps,
                );
            }
        }
    }

    /// The whole stack for one group of sequences; the result is in `ws.x[..tokens × hidden]`.
    /// Returns this thread's time per layer stage while profiling is on (else zeros).
    fn run_group(
        &self,
        ws: &mut Workspace,
        ids: &[u32],
        types: &[u32],
        lens: &[usize],
        par: Parallelism,
    ) -> LayerTimes {
        let mut laps = Laps::new();
        let (h, inter) = (self.hidden, self.inter);
        let mut spans = Vec::with_capacity(lens.len());
        let mut t = 0;
        for &len in lens {
            spans.push(Span { start: t, len });
            t += len;
        }
        ws.ensure(t, h, inter);
        let shape = Shape {
            hidden: h,
            heads: self.heads,
        };
        let parallel = !matches!(par, Parallelism::None);
        let threads = kernels::threads_of(par);
        self.embed(&mut ws.x, ids, types, &spans);
        // int8 and bf16 layers read activations prepared by the pass before them: LayerNorm and
        // the activation quantize or round their rows as they finish them (`ready`); only the
        // attention context is prepared in a pass of its own.
        let mut ready = false;
        laps.lap(0);
        for (li, layer) in self.layers.iter().enumerate() {
            let prep = layer.prep();
            let b16 = self.bf16;
            if !ready {
                prepare(&mut ws.x, t, h, &mut ws.acts, prep, threads);
            }
            layer.linear(0, &mut ws.qkv, &ws.x, t, &ws.acts, Mode::Biased, par, b16);
            if parallel {
                attention::parallel(&ws.qkv, &mut ws.ctx, &spans, shape);
            } else {
                attention::serial(&ws.qkv, &mut ws.ctx, &spans, shape);
            }
            prepare(&mut ws.ctx, t, h, &mut ws.acts, prep, threads);
            layer.linear(
                1,
                &mut ws.x,
                &ws.ctx,
                t,
                &ws.acts,
                Mode::Accumulate,
                par,
                b16,
            );
            let ln = NormPass {
                bias: &layer.o.b,
                norm: &layer.attn_norm,
            };
            // The up-projection's input is prepared here when it is int8 or bf16.
            norm_rows(&mut ws.x, t, h, &mut ws.acts, prep, ln, threads);
            laps.lap(1);
            layer.linear(2, &mut ws.ffn, &ws.x, t, &ws.acts, Mode::Biased, par, b16);
            let act = ActPass {
                act: self.act,
                before_int8: prep == Prep::Int8,
            };
            norm_rows(&mut ws.ffn, t, inter, &mut ws.acts, prep, act, threads);
            layer.linear(
                3,
                &mut ws.x,
                &ws.ffn,
                t,
                &ws.acts,
                Mode::Accumulate,
                par,
                b16,
            );
            let ln = NormPass {
                bias: &layer.down.b,
                norm: &layer.out_norm,
            };
            let next = self.layers.get(li + 1).map_or(Prep::F32, FastLayer::prep);
            norm_rows(&mut ws.x, t, h, &mut ws.acts, next, ln, threads);
            ready = next != Prep::F32;
            laps.lap(2);
        }
        laps.times
    }

    /// Quantizes every linear layer of the stack to int8 (per-channel weights; activations per
    /// token at run time). Embeddings, LayerNorm and attention stay f32. The CPU runs the VNNI
    /// kernel where it has it, else a portable loop with the same results, much slower
    /// ([`Self::kernel`] says which).
    pub fn quantize_int8(&mut self) -> Result<()> {
        for (i, l) in self.layers.iter_mut().enumerate() {
            let qs = [&l.qkv, &l.o, &l.up, &l.down].map(QDense::quantize);
            let [Some(a), Some(b), Some(c), Some(d)] = qs else {
                return Err(EngineError::IncompatibleOption {
                    option: "quantize",
                    message: format!("layer {i}: int8 needs layer widths that are multiples of 16"),
                });
            };
            // Keep only the biases of the f32 layers (the LayerNorm passes add them).
            for d in [&mut l.qkv, &mut l.o, &mut l.up, &mut l.down] {
                d.drop_weights();
            }
            l.low = Some(Low::Int8([a, b, c, d]));
        }
        self.precision = Quantize::Int8;
        Ok(())
    }

    /// Rounds every linear layer of the stack to bf16 (their inputs are rounded at run time, the
    /// products summed in f32). Embeddings, LayerNorm, GELU, attention and the residual stay
    /// f32. The kernel is chosen from the CPU's features ([`Self::kernel`] says which).
    pub fn to_bf16(&mut self) -> Result<()> {
        for (i, l) in self.layers.iter_mut().enumerate() {
            let bs = [&l.qkv, &l.o, &l.up, &l.down].map(BDense::convert);
            let [Some(a), Some(b), Some(c), Some(d)] = bs else {
                return Err(EngineError::IncompatibleOption {
                    option: "quantize",
                    message: format!("layer {i}: bf16 needs layer widths that are multiples of 16"),
                });
            };
            // Keep only the biases of the f32 layers (the LayerNorm passes add them).
            for d in [&mut l.qkv, &mut l.o, &mut l.up, &mut l.down] {
                d.drop_weights();
            }
            l.low = Some(Low::Bf16([a, b, c, d]));
        }
        self.bf16 = Bf16Kernel::detect();
        self.precision = Quantize::Bf16;
        Ok(())
    }

    pub fn is_quantized(&self) -> bool {
        self.precision != Quantize::None
    }

    /// The kernel running the linear layers.
    pub fn kernel(&self) -> Kernel {
        match self.precision {
            Quantize::None if self.layers.first().is_some_and(|l| l.qkv.is_packed()) => {
                Kernel::F32Avx512
            }
            Quantize::None => Kernel::F32Gemm,
            Quantize::Int8 => Kernel::fast(Quantize::Int8),
            Quantize::Bf16 => self.bf16.into(),
        }
    }

    fn take_workspace(&self) -> Workspace {
        self.pool
            .lock()
            .map(|mut p| p.pop())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn give_back(&self, ws: Workspace) {
        if let Ok(mut p) = self.pool.lock() {
            p.push(ws);
        }
    }

    /// Padding-free forward pass: the hidden states of all tokens back to back.
    ///
    /// The work runs on a thread of the rayon pool: a caller outside the pool (the model's batcher
    /// thread) sleeps meanwhile instead of competing for the cores with pool threads that spin
    /// between parallel steps.
    pub fn forward_flat(&self, batch: &Batch) -> Result<Vec<f32>> {
        if rayon::current_thread_index().is_some() {
            return self.forward_in_pool(batch);
        }
        rayon::scope(|_| self.forward_in_pool(batch))
    }

    fn forward_in_pool(&self, batch: &Batch) -> Result<Vec<f32>> {
        use rayon::prelude::*;
        self.check(batch)?;
        let h = self.hidden;
        let lens = &batch.lengths;
        let threads = rayon::current_num_threads().max(1);
        let groups = split(lens, threads);
        let total: usize = lens.iter().sum();
        let mut out = vec![0f32; total * h];
        if groups.len() <= 1 {
            let mut ws = self.take_workspace();
            let par = if threads > 1 {
                Parallelism::Rayon(threads)
            } else {
                Parallelism::None
            };
            let times = self.run_group(&mut ws, &batch.flat_ids, &batch.flat_types, lens, par);
            if profile::enabled() {
                times.record(None);
            }
            out.copy_from_slice(&ws.x[..total * h]);
            self.give_back(ws);
            return Ok(out);
        }
        // Token offset of each group's first sequence.
        let offsets: Vec<usize> = groups
            .iter()
            .map(|g| lens[..g.start].iter().sum())
            .collect();
        let mut chunks: Vec<&mut [f32]> = Vec::with_capacity(groups.len());
        let mut rest = out.as_mut_slice();
        for g in &groups {
            let n: usize = lens[g.clone()].iter().sum::<usize>() * h;
            let (a, b) = rest.split_at_mut(n);
            chunks.push(a);
            rest = b;
        }
        let section = profile::start();
        let times = groups
            .par_iter()
            .zip(offsets.par_iter())
            .zip(chunks.into_par_iter())
            .map(|((g, &off), dst)| {
                let n: usize = lens[g.clone()].iter().sum();
                let mut ws = self.take_workspace();
                let times = self.run_group(
                    &mut ws,
                    &batch.flat_ids[off..off + n],
                    &batch.flat_types[off..off + n],
                    &lens[g.clone()],
                    Parallelism::None,
                );
                dst.copy_from_slice(&ws.x[..n * h]);
                self.give_back(ws);
                times
            })
            .reduce(LayerTimes::default, |a, b| a + b);
        if let Some(t0) = section {
            // The groups ran side by side: their thread times, scaled to the section's wall time.
            times.record(Some(t0.elapsed()));
        }
        Ok(out)
    }
}

/// Splits sequences (in order) into at most `parts` contiguous groups of about equal token counts;
/// one group when there are fewer sequences than parts.
fn split(lens: &[usize], parts: usize) -> Vec<std::ops::Range<usize>> {
    if lens.len() < parts || parts <= 1 {
        return std::iter::once(0..lens.len()).collect();
    }
    let total: usize = lens.iter().sum();
    let mut groups = Vec::with_capacity(parts);
    let (mut start, mut acc) = (0, 0);
    for (i, &l) in lens.iter().enumerate() {
        acc += l;
        let target = total * (groups.len() + 1) / parts;
        let left = lens.len() - i - 1;
        let groups_left = parts - groups.len() - 1;
        if groups.len() + 1 < parts && (acc >= target || left == groups_left) {
            groups.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < lens.len() {
        groups.push(start..lens.len());
    }
    groups
}

impl EncoderBackend for FastBert {
    fn forward(&self, batch: &Batch) -> Result<Tensor> {
        let flat = self.forward_flat(batch)?;
        let h = self.hidden;
        let b = batch.size();
        let t = batch.lengths.iter().copied().max().unwrap_or(0).max(1);
        let mut padded = vec![0f32; b * t * h];
        let mut src = 0;
        for (row, &len) in batch.lengths.iter().enumerate() {
            let dst = row * t * h;
            padded[dst..dst + len * h].copy_from_slice(&flat[src..src + len * h]);
            src += len * h;
        }
        Ok(Tensor::from_vec(padded, (b, t, h), &Device::Cpu)?)
    }

    fn forward_flat(&self, batch: &Batch) -> Option<Result<Vec<f32>>> {
        Some(FastBert::forward_flat(self, batch))
    }

    fn name(&self) -> &'static str {
        match self.precision {
            Quantize::None => "fast-bert",
            Quantize::Int8 => "fast-bert-int8",
            Quantize::Bf16 => "fast-bert-bf16",
        }
    }

    fn kernel(&self) -> Kernel {
        FastBert::kernel(self)
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn split_balances_tokens_and_keeps_order() {
        assert_eq!(split(&[5], 2), std::iter::once(0..1).collect::<Vec<_>>());
        assert_eq!(split(&[5, 5], 2), vec![0..1, 1..2]);
        assert_eq!(split(&[1, 1, 1, 9], 2), vec![0..3, 3..4]);
        assert_eq!(split(&[9, 1, 1, 1], 2), vec![0..1, 1..4]);
        let g = split(&[3; 10], 4);
        assert_eq!(g.len(), 4);
        assert_eq!(g.first().unwrap().start, 0);
        assert_eq!(g.last().unwrap().end, 10);
        assert!(g
            .windows(2)
            .all(|w| w[0].end == w[1].start && !w[1].is_empty()));
    }
}
