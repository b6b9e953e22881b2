//! The head while it trains: f64 parameters, hand-written forward and backward passes, AdamW.
//!
//! Every sum runs in a fixed order on one thread, with no fused multiply-add, so a given seed and
//! given embeddings produce the same weights bit for bit on any x86-64 or ARM machine.

use super::rng::Rng;
use crate::pooled::{Dense, PooledHead};

/// One linear layer, `w` stored input-major (`[n_in][n_out]`) so that the inner loops run over
/// contiguous outputs (vectorizable without changing any sum's order).
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub w: Vec<f64>,
    pub b: Vec<f64>,
    pub n_in: usize,
    pub n_out: usize,
}

impl Layer {
    fn zeros(n_in: usize, n_out: usize) -> Self {
        Layer {
            w: vec![0.0; n_in * n_out],
            b: vec![0.0; n_out],
            n_in,
            n_out,
        }
    }

    /// PyTorch's default `nn.Linear` initialisation: uniform in ±1/√n_in for weights and bias.
    fn uniform(n_in: usize, n_out: usize, rng: &mut Rng) -> Self {
        let bound = 1.0 / (n_in as f64).sqrt();
        let mut l = Layer::zeros(n_in, n_out);
        l.w.iter_mut().for_each(|w| *w = rng.symmetric(bound));
        l.b.iter_mut().for_each(|b| *b = rng.symmetric(bound));
        l
    }

    fn forward(&self, x: &[f64], out: &mut [f64]) {
        out.copy_from_slice(&self.b);
        for (xk, row) in x.iter().zip(self.w.chunks_exact(self.n_out)) {
            for (o, w) in out.iter_mut().zip(row) {
                *o += xk * w;
            }
        }
    }

    /// The f32 layer in PyTorch layout (`[n_out][n_in]`).
    fn to_dense(&self) -> Dense {
        let mut w = vec![0f32; self.n_in * self.n_out];
        for k in 0..self.n_in {
            for j in 0..self.n_out {
                w[j * self.n_in + k] = self.w[k * self.n_out + j] as f32;
            }
        }
        Dense {
            w,
            b: self.b.iter().map(|&b| b as f32).collect(),
            n_in: self.n_in,
            n_out: self.n_out,
        }
    }
}

/// Linear layers with ReLU between them: `[input, classes]` is a linear head, `[input, hidden,
/// classes]` an MLP.
#[derive(Debug, Clone)]
pub(crate) struct Net {
    pub layers: Vec<Layer>,
}

/// Per-example buffers: the input and each layer's output (post-ReLU except the last).
pub(crate) struct Work {
    acts: Vec<Vec<f64>>,
    deltas: Vec<Vec<f64>>,
}

impl Net {
    /// A linear net starts at zero (the problem is convex); an MLP from `rng`.
    pub fn new(dims: &[usize], rng: &mut Rng) -> Self {
        let layers = if dims.len() == 2 {
            vec![Layer::zeros(dims[0], dims[1])]
        } else {
            dims.windows(2)
                .map(|d| Layer::uniform(d[0], d[1], rng))
                .collect()
        };
        Net { layers }
    }

    pub fn zeros_like(&self) -> Net {
        Net {
            layers: self
                .layers
                .iter()
                .map(|l| Layer::zeros(l.n_in, l.n_out))
                .collect(),
        }
    }

    pub fn work(&self) -> Work {
        let first = self.layers.first().map_or(0, |l| l.n_in);
        let mut acts = vec![vec![0.0; first]];
        acts.extend(self.layers.iter().map(|l| vec![0.0; l.n_out]));
        Work {
            deltas: acts.clone(),
            acts,
        }
    }

    pub fn zero(&mut self) {
        for l in &mut self.layers {
            l.w.iter_mut().for_each(|v| *v = 0.0);
            l.b.iter_mut().for_each(|v| *v = 0.0);
        }
    }

    /// Adds `weight`·∇(cross-entropy against the target) at `x` to `grad` (same shapes as
    /// `self`); returns the example's loss. The target is `truth` with label smoothing
    /// `smoothing` (ε): probability 1 − ε + ε/k on `truth` and ε/k on each other label (ε = 0 is
    /// the one-hot target and the plain cross-entropy).
    pub fn accumulate(
        &self,
        x: &[f32],
        truth: usize,
        smoothing: f64,
        weight: f64,
        grad: &mut Net,
        ws: &mut Work,
    ) -> f64 {
        let n = self.layers.len();
        for (a, &v) in ws.acts[0].iter_mut().zip(x) {
            *a = v as f64;
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let (done, rest) = ws.acts.split_at_mut(i + 1);
            layer.forward(&done[i], &mut rest[0]);
            if i + 1 < n {
                rest[0].iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
        // Softmax and the loss's gradient at the logits.
        let logits = &ws.acts[n];
        let max = logits.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let sum: f64 = logits.iter().map(|&v| (v - max).exp()).sum();
        let k = logits.len() as f64;
        let target = |j: usize| smoothing / k + if j == truth { 1.0 - smoothing } else { 0.0 };
        let lse = sum.ln() + max;
        let loss = if smoothing == 0.0 {
            lse - logits[truth]
        } else {
            logits
                .iter()
                .enumerate()
                .fold(0.0, |acc, (j, &l)| acc + target(j) * (lse - l))
        };
        for (j, (d, &l)) in ws.deltas[n].iter_mut().zip(logits).enumerate() {
            let p = (l - max).exp() / sum;
            *d = weight * (p - target(j));
        }
        for i in (0..n).rev() {
            let layer = &self.layers[i];
            let g = &mut grad.layers[i];
            let (lower, upper) = ws.deltas.split_at_mut(i + 1);
            let delta = &upper[0];
            for (gb, d) in g.b.iter_mut().zip(delta) {
                *gb += d;
            }
            for (xk, grow) in ws.acts[i].iter().zip(g.w.chunks_exact_mut(layer.n_out)) {
                for (gw, d) in grow.iter_mut().zip(delta) {
                    *gw += xk * d;
                }
            }
            if i > 0 {
                // Back through the weights and the ReLU of the layer below.
                for ((dk, row), &a) in lower[i]
                    .iter_mut()
                    .zip(layer.w.chunks_exact(layer.n_out))
                    .zip(&ws.acts[i])
                {
                    *dk = if a > 0.0 {
                        row.iter().zip(delta).fold(0.0, |s, (w, d)| s + w * d)
                    } else {
                        0.0
                    };
                }
            }
        }
        loss
    }

    /// The f32 head that inference runs.
    pub fn to_head(&self) -> PooledHead {
        let mut dense: Vec<Dense> = self.layers.iter().map(Layer::to_dense).collect();
        let classifier = dense.pop().unwrap_or(Dense {
            w: Vec::new(),
            b: Vec::new(),
            n_in: 0,
            n_out: 0,
        });
        PooledHead {
            dense: dense.pop(),
            classifier,
        }
    }
}

/// AdamW (Loshchilov & Hutter) as in PyTorch: decoupled weight decay on weights, none on biases.
pub(crate) struct AdamW {
    m: Net,
    v: Net,
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// β₁ᵗ and β₂ᵗ, kept as running products.
    b1t: f64,
    b2t: f64,
}

impl AdamW {
    pub fn new(net: &Net) -> Self {
        AdamW {
            m: net.zeros_like(),
            v: net.zeros_like(),
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            b1t: 1.0,
            b2t: 1.0,
        }
    }

    pub fn step(&mut self, net: &mut Net, grad: &Net, lr: f64, weight_decay: f64) {
        self.b1t *= self.beta1;
        self.b2t *= self.beta2;
        let (c1, c2) = (1.0 - self.b1t, 1.0 - self.b2t);
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        let update = |p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64], decay: f64| {
            for (((p, g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                *p -= lr * decay * *p;
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                *p -= lr * (*m / c1) / ((*v / c2).sqrt() + eps);
            }
        };
        for (((l, g), m), v) in net
            .layers
            .iter_mut()
            .zip(&grad.layers)
            .zip(&mut self.m.layers)
            .zip(&mut self.v.layers)
        {
            update(&mut l.w, &g.w, &mut m.w, &mut v.w, weight_decay);
            update(&mut l.b, &g.b, &mut m.b, &mut v.b, 0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numerical gradient check of the MLP's backward pass, with and without label smoothing.
    #[test]
    fn gradients_match_finite_differences() {
        for smoothing in [0.0, 0.2] {
            let mut rng = Rng::new(11);
            let net = Net::new(&[4, 5, 3], &mut rng);
            let x = [0.3f32, -0.7, 0.2, 0.9];
            let mut grad = net.zeros_like();
            let mut ws = net.work();
            net.accumulate(&x, 2, smoothing, 1.0, &mut grad, &mut ws);
            let loss_of = |n: &Net| {
                let mut g = n.zeros_like();
                let mut w = n.work();
                n.accumulate(&x, 2, smoothing, 1.0, &mut g, &mut w)
            };
            let h = 1e-6;
            for layer in 0..2 {
                for idx in [0, 3, 7] {
                    let mut plus = net.clone();
                    plus.layers[layer].w[idx] += h;
                    let mut minus = net.clone();
                    minus.layers[layer].w[idx] -= h;
                    let numeric = (loss_of(&plus) - loss_of(&minus)) / (2.0 * h);
                    let analytic = grad.layers[layer].w[idx];
                    assert!(
                        (numeric - analytic).abs() < 1e-6,
                        "ε {smoothing} layer {layer} w[{idx}]: {numeric} vs {analytic}"
                    );
                }
                let mut plus = net.clone();
                plus.layers[layer].b[1] += h;
                let mut minus = net.clone();
                minus.layers[layer].b[1] -= h;
                let numeric = (loss_of(&plus) - loss_of(&minus)) / (2.0 * h);
                assert!((numeric - grad.layers[layer].b[1]).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn smoothing_raises_the_loss_of_a_confident_right_answer() {
        let net = Net {
            layers: vec![Layer {
                w: vec![5.0, 0.0, 0.0, 5.0],
                b: vec![0.0, 0.0],
                n_in: 2,
                n_out: 2,
            }],
        };
        let (mut g, mut ws) = (net.zeros_like(), net.work());
        let plain = net.accumulate(&[1.0, 0.0], 0, 0.0, 1.0, &mut g, &mut ws);
        let smooth = net.accumulate(&[1.0, 0.0], 0, 0.1, 1.0, &mut g, &mut ws);
        // -(0.95 ln p0 + 0.05 ln p1) with p = softmax([5, 0]).
        let lse = (5f64.exp() + 1.0).ln();
        assert!((plain - (lse - 5.0)).abs() < 1e-12);
        assert!((smooth - (0.95 * (lse - 5.0) + 0.05 * lse)).abs() < 1e-12);
    }

    #[test]
    fn f32_head_matches_the_f64_net() {
        let mut rng = Rng::new(3);
        let net = Net::new(&[4, 6, 3], &mut rng);
        let x = [0.5f32, -0.25, 1.0, 0.0];
        let mut ws = net.work();
        let mut g = net.zeros_like();
        net.accumulate(&x, 0, 0.0, 1.0, &mut g, &mut ws);
        let logits = net.to_head().logits(&x);
        for (a, b) in logits.iter().zip(&ws.acts[2]) {
            assert!((*a as f64 - b).abs() < 1e-5);
        }
    }

    #[test]
    fn adamw_descends_and_decays_only_weights() {
        let mut rng = Rng::new(5);
        let mut net = Net::new(&[2, 2], &mut rng);
        let mut opt = AdamW::new(&net);
        let data = [([1.0f32, 0.0], 0), ([0.0, 1.0], 1)];
        let mut first = None;
        let mut last = 0.0;
        for _ in 0..200 {
            let mut grad = net.zeros_like();
            let mut ws = net.work();
            let loss: f64 = data
                .iter()
                .map(|(x, y)| net.accumulate(x, *y, 0.0, 0.5, &mut grad, &mut ws))
                .sum();
            first.get_or_insert(loss);
            last = loss;
            opt.step(&mut net, &grad, 0.05, 0.0);
        }
        assert!(last < first.unwrap_or(0.0) * 0.1, "{first:?} -> {last}");
        // Pure decay: zero gradient shrinks weights by (1 - lr·wd) and leaves biases.
        let mut n2 = net.clone();
        let before_w = n2.layers[0].w[0];
        let before_b = n2.layers[0].b[0];
        let zero = n2.zeros_like();
        AdamW::new(&n2).step(&mut n2, &zero, 0.1, 0.5);
        assert!((n2.layers[0].w[0] - before_w * 0.95).abs() < 1e-12);
        assert_eq!(n2.layers[0].b[0], before_b);
    }
}
