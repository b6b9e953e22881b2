//! Batched prompt processing for GGUF decoders (llama, qwen2) on the fast encoder's f32 kernel.
//!
//! candle's quantized forward pass costs the same per prompt token however many rows it is given
//! (about 100 tokens/s for SmolLM2-135M on 2 cores, flat from 32 to 512 tokens), and it cannot
//! mix prompts of different lengths in one pass (no padding mask). For next-token scoring (the
//! NLI judge) this module instead dequantizes the weights once to f32, packs them for the
//! AVX-512 kernel, and runs many prompts as one padding-free `[tokens × hidden]` pass with causal
//! attention per prompt, optionally after a shared prefix whose keys and values are computed once.
//!
//! Numerics: the weights are exactly the GGUF's dequantized values and the activations stay f32
//! (candle's CPU path quantizes activations to 8 bits per block), so the logits differ from
//! candle's by that rounding only; a test compares the two.

use super::gguf_tokenizer::{meta, meta_str, meta_u32};
use super::llm::read_gguf;
use crate::encoder::fast::kernels::{self, Dense, Mode};
use crate::encoder::fast::SendPtr;
use crate::error::{EngineError, Result};
use candle_core::Device;
use gemm::Parallelism;
use std::path::Path;

/// One decoder block, weights as `[in, out]` packed layers.
struct Block {
    attn_norm: Vec<f32>,
    /// `[hidden, (heads + 2·kv_heads) · head_dim]`: query, key, value (qwen2's biases included).
    qkv: Dense,
    o: Dense,
    ffn_norm: Vec<f32>,
    /// `[hidden, 2·inter]`: gate, then up.
    gate_up: Dense,
    down: Dense,
}

/// Keys and values of a prompt prefix, per block (`[len × kv_heads·head_dim]` each).
pub struct PrefillPrefix {
    ids: Vec<u32>,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl PrefillPrefix {
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}

/// A GGUF decoder for batched next-token logits.
pub struct Prefill {
    /// `[vocab × hidden]`, row-major (the embedding table).
    embed: Vec<f32>,
    /// `[vocab × hidden]` output projection when not tied to the embeddings.
    output: Option<Vec<f32>>,
    blocks: Vec<Block>,
    norm: Vec<f32>,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    inter: usize,
    vocab: usize,
    eps: f32,
    /// Rotation pairs `(i, i + d/2)` (NeoX, qwen2) rather than `(2i, 2i+1)` (llama GGUFs).
    neox: bool,
    /// `1 / base^(2p/d)` per rotation pair `p`.
    inv_freq: Vec<f32>,
}

impl Prefill {
    /// Loads and dequantizes a GGUF file's weights (llama or qwen2 architectures). The layers
    /// run on the packed AVX-512 kernel where the CPU has it, else on the `gemm` crate.
    pub fn load(path: &Path) -> Result<Self> {
        let (mut file, ct) = read_gguf(path)?;
        let bad = |m: String| EngineError::invalid_model(path, m);
        let arch = meta_str(&ct, "general.architecture").unwrap_or_default();
        let neox = match arch.as_str() {
            "llama" => false,
            "qwen2" => true,
            other => {
                return Err(EngineError::UnsupportedArchitecture {
                    path: path.to_path_buf(),
                    architecture: other.to_string(),
                    supported: "llama (incl. SmolLM2), qwen2 (GGUF)",
                })
            }
        };
        let need = |key: &str| {
            meta_u32(&ct, &format!("{arch}.{key}"))
                .map(|v| v as usize)
                .ok_or_else(|| bad(format!("{arch}.{key} missing")))
        };
        let hidden = need("embedding_length")?;
        let n_blocks = need("block_count")?;
        let heads = need("attention.head_count")?;
        let kv_heads = need("attention.head_count_kv")?;
        let inter = need("feed_forward_length")?;
        if heads == 0 || kv_heads == 0 || hidden % heads != 0 || heads % kv_heads != 0 {
            return Err(bad(format!(
                "{heads} heads / {kv_heads} kv heads / {hidden} wide"
            )));
        }
        let head_dim = hidden / heads;
        let rope_dim =
            meta_u32(&ct, &format!("{arch}.rope.dimension_count")).map_or(head_dim, |v| v as usize);
        if rope_dim != head_dim || head_dim % 2 != 0 {
            return Err(bad(format!(
                "partial rotary embeddings ({rope_dim} of {head_dim})"
            )));
        }
        let meta_f = |key: String| meta(&ct, &key).and_then(|v| v.to_f32().ok());
        let eps = meta_f(format!("{arch}.attention.layer_norm_rms_epsilon")).unwrap_or(1e-6);
        let base = meta_f(format!("{arch}.rope.freq_base")).unwrap_or(10_000.0);
        let inv_freq = (0..head_dim / 2)
            .map(|p| 1.0 / base.powf((2 * p) as f32 / head_dim as f32))
            .collect();

        let dev = Device::Cpu;
        let mut read = |name: &str| -> Result<Option<candle_core::Tensor>> {
            match ct.tensor(&mut file, name, &dev) {
                Ok(q) => Ok(Some(q.dequantize(&dev)?)),
                Err(_) => Ok(None),
            }
        };
        macro_rules! tensor {
            ($name:expr) => {{
                let name: &str = $name;
                read(name)?.ok_or_else(|| bad(format!("tensor {name} missing")))
            }};
        }
        let flat = |t: &candle_core::Tensor| -> Result<Vec<f32>> {
            Ok(t.flatten_all()?.to_vec1::<f32>()?)
        };
        let embed_t = tensor!("token_embd.weight")?;
        let (vocab, width) = embed_t.dims2()?;
        if width != hidden {
            return Err(bad(format!("embeddings {width} wide, model {hidden}")));
        }
        let embed = flat(&embed_t)?;
        drop(embed_t);
        let norm = flat(&tensor!("output_norm.weight")?)?;
        let mut blocks = Vec::with_capacity(n_blocks);
        for i in 0..n_blocks {
            let p = format!("blk.{i}");
            let mut weights = Vec::new();
            let mut biases = Vec::new();
            for part in ["attn_q", "attn_k", "attn_v"] {
                let w = tensor!(&format!("{p}.{part}.weight"))?;
                let out = w.dim(0)?;
                biases.push(match read(&format!("{p}.{part}.bias"))? {
                    Some(b) => flat(&b)?,
                    None => vec![0.0; out],
                });
                weights.push(w);
            }
            let qkv = dense(&weights, biases.concat())?;
            let o = dense(&[tensor!(&format!("{p}.attn_output.weight"))?], Vec::new())?;
            let gate_up = dense(
                &[
                    tensor!(&format!("{p}.ffn_gate.weight"))?,
                    tensor!(&format!("{p}.ffn_up.weight"))?,
                ],
                Vec::new(),
            )?;
            let down = dense(&[tensor!(&format!("{p}.ffn_down.weight"))?], Vec::new())?;
            let want_qkv = (heads + 2 * kv_heads) * head_dim;
            if qkv.n_in != hidden || qkv.n_out != want_qkv || gate_up.n_out != 2 * inter {
                return Err(bad(format!("block {i}: unexpected weight shapes")));
            }
            blocks.push(Block {
                attn_norm: flat(&tensor!(&format!("{p}.attn_norm.weight"))?)?,
                qkv,
                o,
                ffn_norm: flat(&tensor!(&format!("{p}.ffn_norm.weight"))?)?,
                gate_up,
                down,
            });
        }
        let output = read("output.weight")?.map(|t| flat(&t)).transpose()?;
        Ok(Prefill {
            embed,
            output,
            blocks,
            norm,
            hidden,
            heads,
            kv_heads,
            head_dim,
            inter,
            vocab,
            eps,
            neox,
            inv_freq,
        })
    }

    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// The keys and values of `ids` in every block, for prompts that start with them.
    pub fn prefix(&self, ids: &[u32]) -> Result<PrefillPrefix> {
        if ids.is_empty() {
            return Err(EngineError::internal("empty prefix"));
        }
        let mut kv = Vec::new();
        self.run(None, &[ids], Some(&mut kv))?;
        let (k, v) = kv.into_iter().unzip();
        Ok(PrefillPrefix {
            ids: ids.to_vec(),
            k,
            v,
        })
    }

    /// Next-token logits after each prompt, all prompts in one pass. With `prefix`, every
    /// prompt must start with its ids, and only the rest of each prompt is computed.
    pub fn next_token_logits(
        &self,
        prefix: Option<&PrefillPrefix>,
        prompts: &[&[u32]],
    ) -> Result<Vec<Vec<f32>>> {
        let skip = prefix.map_or(0, |p| p.ids.len());
        let mut rests = Vec::with_capacity(prompts.len());
        for p in prompts {
            if let Some(pre) = prefix {
                if p.len() <= skip || p[..skip] != pre.ids[..] {
                    return Err(EngineError::internal(
                        "a prompt does not extend the cached prefix",
                    ));
                }
            } else if p.is_empty() {
                return Err(EngineError::internal("empty prompt"));
            }
            rests.push(&p[skip..]);
        }
        let last = self.run(prefix, &rests, None)?;
        let table = self.output.as_deref().unwrap_or(&self.embed);
        Ok(last
            .chunks_exact(self.hidden)
            .map(|h| self.logits(table, h))
            .collect())
    }

    /// `h · table^T`, the whole vocabulary, rows split over the pool.
    fn logits(&self, table: &[f32], h: &[f32]) -> Vec<f32> {
        use rayon::prelude::*;
        let mut out = vec![0f32; self.vocab];
        out.par_chunks_mut(1024).enumerate().for_each(|(c, chunk)| {
            for (i, o) in chunk.iter_mut().enumerate() {
                let v = c * 1024 + i;
                *o = kernels::dot(h, &table[v * self.hidden..(v + 1) * self.hidden]);
            }
        });
        out
    }

    /// The blocks over `seqs` (after `prefix` when given): returns the final-normed hidden state
    /// of each sequence's last token; `keep` collects each block's keys and values (one sequence).
    fn run(
        &self,
        prefix: Option<&PrefillPrefix>,
        seqs: &[&[u32]],
        mut keep: Option<&mut Vec<(Vec<f32>, Vec<f32>)>>,
    ) -> Result<Vec<f32>> {
        let (h, hd) = (self.hidden, self.head_dim);
        let kvw = self.kv_heads * hd;
        let qkv_w = h + 2 * kvw;
        let offset = prefix.map_or(0, |p| p.ids.len());
        let mut starts = Vec::with_capacity(seqs.len());
        let mut t = 0;
        for s in seqs {
            starts.push(t);
            t += s.len();
        }
        let mut x = vec![0f32; t * h];
        for (row, &id) in x
            .chunks_exact_mut(h)
            .zip(seqs.iter().flat_map(|s| s.iter()))
        {
            let id = id as usize;
            if id >= self.vocab {
                return Err(EngineError::internal(format!(
                    "token {id} is outside the vocabulary ({})",
                    self.vocab
                )));
            }
            row.copy_from_slice(&self.embed[id * h..(id + 1) * h]);
        }
        let threads = rayon::current_num_threads().max(1);
        let par = Parallelism::Rayon(threads);
        let mut hb = vec![0f32; t * h];
        let mut qkv = vec![0f32; t * qkv_w];
        let mut ctx = vec![0f32; t * h];
        let mut gu = vec![0f32; t * 2 * self.inter];
        let mut act = vec![0f32; t * self.inter];
        // (sin, cos) of every position's rotation angles, once for all blocks and heads.
        let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let angles: Vec<(f32, f32)> = (0..longest)
            .flat_map(|i| {
                let pos = (offset + i) as f32;
                self.inv_freq.iter().map(move |&f| (pos * f).sin_cos())
            })
            .collect();
        let pairs = self.inv_freq.len();
        for (bi, b) in self.blocks.iter().enumerate() {
            rms_rows(&x, &mut hb, &b.attn_norm, self.eps);
            kernels::linear(&mut qkv, &hb, t, &b.qkv, Mode::Biased, par);
            for (s, seq) in seqs.iter().enumerate() {
                for i in 0..seq.len() {
                    let row = &mut qkv[(starts[s] + i) * qkv_w..][..h + kvw];
                    self.rotate(row, &angles[i * pairs..(i + 1) * pairs]);
                }
            }
            let past = prefix.map(|p| (&p.k[bi][..], &p.v[bi][..]));
            self.attention(&qkv, &mut ctx, seqs, &starts, past);
            if let Some(keep) = keep.as_deref_mut() {
                let mut k = Vec::with_capacity(t * kvw);
                let mut v = Vec::with_capacity(t * kvw);
                for row in qkv.chunks_exact(qkv_w) {
                    k.extend_from_slice(&row[h..h + kvw]);
                    v.extend_from_slice(&row[h + kvw..]);
                }
                keep.push((k, v));
            }
            kernels::linear(&mut x, &ctx, t, &b.o, Mode::Accumulate, par);
            rms_rows(&x, &mut hb, &b.ffn_norm, self.eps);
            kernels::linear(&mut gu, &hb, t, &b.gate_up, Mode::Biased, par);
            let inter = self.inter;
            for (a, g) in act.chunks_exact_mut(inter).zip(gu.chunks_exact(2 * inter)) {
                let (gate, up) = g.split_at(inter);
                for ((o, &gv), &uv) in a.iter_mut().zip(gate).zip(up) {
                    *o = gv / (1.0 + kernels::exp(-gv)) * uv;
                }
            }
            kernels::linear(&mut x, &act, t, &b.down, Mode::Accumulate, par);
        }
        let mut last = Vec::with_capacity(seqs.len() * h);
        for (s, seq) in seqs.iter().enumerate() {
            let r = starts[s] + seq.len() - 1;
            let mut row = vec![0f32; h];
            rms(&x[r * h..(r + 1) * h], &mut row, &self.norm, self.eps);
            last.extend_from_slice(&row);
        }
        Ok(last)
    }

    /// Rotary position embedding of one token's query and key heads (`row`: `[q | k]`), with
    /// the (sin, cos) of its position's angle for each rotation pair.
    fn rotate(&self, row: &mut [f32], angles: &[(f32, f32)]) {
        let hd = self.head_dim;
        let half = hd / 2;
        for head in row.chunks_exact_mut(hd) {
            for (p, &(sin, cos)) in angles.iter().enumerate() {
                let (a, b) = if self.neox {
                    (p, p + half)
                } else {
                    (2 * p, 2 * p + 1)
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos - x1 * sin;
                head[b] = x0 * sin + x1 * cos;
            }
        }
    }

    /// Causal attention per sequence and head (grouped: `heads / kv_heads` query heads share a
    /// key/value head), after the prefix's keys and values when given.
    fn attention(
        &self,
        qkv: &[f32],
        ctx: &mut [f32],
        seqs: &[&[u32]],
        starts: &[usize],
        past: Option<(&[f32], &[f32])>,
    ) {
        use rayon::prelude::*;
        let (h, hd) = (self.hidden, self.head_dim);
        let kvw = self.kv_heads * hd;
        let qkv_w = h + 2 * kvw;
        let group = self.heads / self.kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let (pk, pv) = past.unwrap_or((&[], &[]));
        let plen = pk.len() / kvw.max(1);
        assert!(
            ctx.len() / h >= qkv.len() / qkv_w,
            "a context row for every token"
        );
        let out = SendPtr(ctx.as_mut_ptr());
        let tasks: Vec<(usize, usize)> = (0..seqs.len())
            .flat_map(|s| (0..self.heads).map(move |hh| (s, hh)))
            .collect();
        tasks.into_par_iter().for_each(move |(s, hh)| {
            let out = out;
            let g = hh / group;
            let base = starts[s];
            let len = seqs[s].len();
            let mut scores = vec![0f32; plen + len];
            let mut acc = vec![0f32; hd];
            for i in 0..len {
                let q = &qkv[(base + i) * qkv_w + hh * hd..][..hd];
                let n = plen + i + 1;
                for (j, sc) in scores[..n].iter_mut().enumerate() {
                    let k = if j < plen {
                        &pk[j * kvw + g * hd..][..hd]
                    } else {
                        &qkv[(base + j - plen) * qkv_w + h + g * hd..][..hd]
                    };
                    *sc = kernels::dot(q, k) * scale;
                }
                kernels::softmax(&mut scores[..n]);
                acc.fill(0.0);
                for (j, &p) in scores[..n].iter().enumerate() {
                    let v = if j < plen {
                        &pv[j * kvw + g * hd..][..hd]
                    } else {
                        &qkv[(base + j - plen) * qkv_w + h + kvw + g * hd..][..hd]
                    };
                    kernels::axpy(&mut acc, p, v);
                }
                // SAFETY: `ctx` holds every row (asserted above); each task writes only its own
                // (sequence rows, head columns).
                unsafe {
                    let dst = out.0.add((base + i) * h + hh * hd);
                    std::ptr::copy_nonoverlapping(acc.as_ptr(), dst, hd);
                }
            }
        });
    }
}

/// Stacks `[out, in]` GGUF weights along `out` as one `[in, Σ out]` layer.
fn dense(ws: &[candle_core::Tensor], bias: Vec<f32>) -> Result<Dense> {
    let w = candle_core::Tensor::cat(ws, 0)?;
    let (n_out, n_in) = w.dims2()?;
    let wt = w.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let bias = if bias.is_empty() {
        vec![0.0; n_out]
    } else {
        bias
    };
    Ok(Dense::new(wt, bias, n_in, n_out))
}

/// RMSNorm of one row: `x / √(mean(x²) + eps) · w`.
fn rms(x: &[f32], out: &mut [f32], w: &[f32], eps: f32) {
    let ms = kernels::dot(x, x) / x.len() as f32;
    let inv = 1.0 / (ms + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * inv * g;
    }
}

fn rms_rows(x: &[f32], out: &mut [f32], w: &[f32], eps: f32) {
    let n = w.len();
    for (r, o) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        rms(r, o, w, eps);
    }
}
