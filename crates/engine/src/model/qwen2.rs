//! The Qwen2 decoder: one implementation for every size, device and rank count.
//!
//! Tensor parallelism (Megatron style) is expressed only through [`Parallelism`] tags and the
//! slices the loader reads: q/k/v/gate/up are column-parallel (each rank holds whole heads and a
//! slice of the MLP), o_proj/down are row-parallel (all-reduce inside [`Linear`]), the embedding
//! and the lm_head are split by vocabulary. With [`crate::tp::SingleRank`] every collective is the
//! identity and every slice is the whole tensor.

use super::attention::{attention, attention_fused, attention_shared, AttentionLayout};
use super::config::Qwen2Config;
use super::fused::{self, Heads, Kernels};
use super::kv_cache::KvCache;
use super::linear::{Linear, Parallelism, Weight};
use super::load::{EmbeddingTable, Slice, Stacked, WeightSource};
use super::rope::{Rope, RopeTables};
use crate::tp::Communicator;
use anyhow::{bail, Context, Result};
use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, IndexOp, Tensor, D};
use std::sync::Arc;

/// Options for building a model from a [`WeightSource`].
#[derive(Clone)]
pub struct ModelOptions {
    pub device: Device,
    /// Compute dtype of activations, dense weights and the KV cache (f32 on the CPU).
    pub dtype: DType,
    /// Queries per attention block (bounds the score matrix; see `attention.rs`).
    pub attention_block: usize,
    /// Longest sequence (prompt + generated) the RoPE table covers; `None`: the config's.
    pub max_positions: Option<usize>,
    pub comm: Arc<dyn Communicator>,
    /// Quantized layers run chunks of at least this many tokens per row as dequantized dense
    /// matmuls (faster prefill on the CPU); `None`: always the quantized kernels.
    pub prefill_dense_min_tokens: Option<usize>,
    /// The layer glue: fused kernels (default) or the plain candle reference path.
    pub kernels: Kernels,
    /// Checked between layers while the weights load: once set, the load ends with
    /// [`crate::model::LoadStopped`] (a 72B slice takes minutes to read, and a job asked to
    /// stop must not wait for it). `None`: never stopped.
    pub stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl ModelOptions {
    /// One rank on the CPU in f32; multi-token chunks through Q8_0 weights run as dense
    /// GEMMs (see `Linear`), decode steps through the quantized kernels.
    pub fn cpu() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
            attention_block: std::env::var("PARAMX_XB")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(256),
            max_positions: None,
            comm: Arc::new(crate::tp::SingleRank),
            prefill_dense_min_tokens: Some(2),
            kernels: Kernels::Fused,
            stop: None,
        }
    }
}

/// The part `[start, start + len)` of something split evenly over ranks (the last may be short).
fn rank_range(total: usize, rank: usize, world: usize) -> (usize, usize) {
    let chunk = total.div_ceil(world);
    let start = (rank * chunk).min(total);
    (start, chunk.min(total - start))
}

struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::rms_norm(x, &self.weight, self.eps)
    }
}

/// A column-parallel projection whose output is several projections side by side (`q | k | v`,
/// `gate | up`). Dense parts come stacked into one weight from the source
/// (`WeightSource::stacked_linear_weight`), so the step runs one GEMM (for the small k/v
/// products of a decode step, launch and tail effects cost more than their bytes); quantized
/// parts (GGUF files give q, k, v different types) stay separate and their outputs are
/// concatenated.
enum Packed {
    One(Linear),
    Parts(Vec<Linear>),
}

impl Packed {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Packed::One(l) => l.forward(x),
            Packed::Parts(parts) => {
                let ys = parts
                    .iter()
                    .map(|l| l.forward(x))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Tensor::cat(&ys, D::Minus1)
            }
        }
    }
}

struct Layer {
    input_norm: RmsNorm,
    /// `q | k | v` of this rank's heads, without bias.
    qkv: Packed,
    /// `q | k | v` biases (zeros for a model without them), added by the fused kernels.
    qkv_bias: Tensor,
    o: Linear,
    post_norm: RmsNorm,
    /// `gate | up` of this rank's MLP slice.
    gate_up: Packed,
    down: Linear,
}

/// Vocabulary-split token embedding.
struct Embedding {
    table: EmbeddingTable,
    vocab_start: usize,
    vocab_len: usize,
}

pub struct Qwen2 {
    cfg: Qwen2Config,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    /// Column-parallel over the vocabulary: each rank computes logits for its own tokens.
    lm_head: Linear,
    rope: Rope,
    comm: Arc<dyn Communicator>,
    device: Device,
    dtype: DType,
    attention_block: usize,
    /// Query / KV heads on this rank.
    local_heads: usize,
    local_kv_heads: usize,
    kernels: Kernels,
}

impl Qwen2 {
    /// Builds the model (this rank's part of it) from `src`.
    pub fn load(cfg: &Qwen2Config, src: &dyn WeightSource, opts: &ModelOptions) -> Result<Self> {
        let comm = opts.comm.clone();
        let (rank, world) = (comm.rank(), comm.world_size());
        // Whole heads and equal parts of the MLP and the vocabulary (the logits and (max, argmax)
        // gathers concatenate equal-sized parts): the plan's rule, so the plan approves no job
        // that fails here.
        cfg.rank_shape(world)?;
        let (dev, dt) = (&opts.device, opts.dtype);
        let hd = cfg.head_dim;
        let local_kv = cfg.num_key_value_heads / world;
        let local_heads = cfg.num_attention_heads / world;
        let ffn = cfg.intermediate_size / world;
        let part = |n: usize| -> Option<Slice> {
            (world > 1).then(|| Slice {
                dim: 0,
                start: rank * n,
                len: n,
            })
        };
        let in_part = |n: usize| -> Option<Slice> {
            (world > 1).then(|| Slice {
                dim: 1,
                start: rank * n,
                len: n,
            })
        };
        let norm = |name: &str| -> Result<RmsNorm> {
            Ok(RmsNorm {
                weight: src.tensor(name, None, dt, dev)?,
                eps: cfg.rms_norm_eps as f32,
            })
        };
        let column = |w: Weight| -> Linear {
            Linear::new(w, None, Parallelism::ColumnParallel, comm.clone())
                .with_prefill_dense_min_tokens(opts.prefill_dense_min_tokens)
        };
        // Loads `name.weight` of each part (this rank's rows), stacked.
        let packed = |parts: &[(&str, usize)]| -> Result<Packed> {
            let names: Vec<String> = parts.iter().map(|(n, _)| format!("{n}.weight")).collect();
            let req: Vec<(&str, Option<Slice>)> = names
                .iter()
                .zip(parts)
                .map(|(n, (_, rows))| (n.as_str(), part(*rows)))
                .collect();
            Ok(match src.stacked_linear_weight(&req, dt, dev)? {
                Stacked::One(w) => Packed::One(column(Weight::Dense(w))),
                Stacked::Parts(ws) => Packed::Parts(ws.into_iter().map(column).collect()),
            })
        };
        // The packed q | k | v bias; zeros where a model has none.
        let packed_bias = |parts: &[(&str, usize)]| -> Result<Tensor> {
            let bs = parts
                .iter()
                .map(|(name, rows)| {
                    let n = format!("{name}.bias");
                    if src.contains(&n) {
                        src.tensor(&n, part(*rows), dt, dev)
                    } else {
                        Ok(Tensor::zeros(*rows, dt, dev)?)
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Tensor::cat(&bs, 0)?)
        };
        let row = |name: &str, cols: usize| -> Result<Linear> {
            let w = src.linear_weight(&format!("{name}.weight"), in_part(cols), dt, dev)?;
            Ok(Linear::new(w, None, Parallelism::RowParallel, comm.clone())
                .with_prefill_dense_min_tokens(opts.prefill_dense_min_tokens))
        };

        let (vocab_start, vocab_len) = rank_range(cfg.vocab_size, rank, world);
        let vocab_slice = (world > 1).then_some(Slice {
            dim: 0,
            start: vocab_start,
            len: vocab_len,
        });
        let table = src
            .embedding("model.embed_tokens.weight", vocab_slice, dt, dev)
            .with_context(|| format!("loading the embedding from {}", src.describe()))?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            crate::model::check_stop(opts)?;
            let p = format!("model.layers.{i}");
            let layer = (|| -> Result<Layer> {
                let (q, k, v) = (
                    format!("{p}.self_attn.q_proj"),
                    format!("{p}.self_attn.k_proj"),
                    format!("{p}.self_attn.v_proj"),
                );
                let qkv = [
                    (q.as_str(), local_heads * hd),
                    (k.as_str(), local_kv * hd),
                    (v.as_str(), local_kv * hd),
                ];
                let (gate, up) = (format!("{p}.mlp.gate_proj"), format!("{p}.mlp.up_proj"));
                Ok(Layer {
                    input_norm: norm(&format!("{p}.input_layernorm.weight"))?,
                    qkv: packed(&qkv)?,
                    qkv_bias: packed_bias(&qkv)?,
                    o: row(&format!("{p}.self_attn.o_proj"), local_heads * hd)?,
                    post_norm: norm(&format!("{p}.post_attention_layernorm.weight"))?,
                    gate_up: packed(&[(gate.as_str(), ffn), (up.as_str(), ffn)])?,
                    down: row(&format!("{p}.mlp.down_proj"), ffn)?,
                })
            })()
            .with_context(|| format!("loading layer {i} from {}", src.describe()))?;
            layers.push(layer);
        }
        let lm_weight = if !cfg.tie_word_embeddings && src.contains("lm_head.weight") {
            src.linear_weight("lm_head.weight", vocab_slice, dt, dev)?
        } else {
            match &table {
                EmbeddingTable::Dense(t) => Weight::Dense(t.clone()),
                EmbeddingTable::Quantized(q) => Weight::Quantized(QMatMul::from_arc(q.clone())?),
            }
        };
        let max_positions = opts.max_positions.unwrap_or(cfg.max_position_embeddings);
        Ok(Self {
            cfg: cfg.clone(),
            embed: Embedding {
                table,
                vocab_start,
                vocab_len,
            },
            layers,
            norm: norm("model.norm.weight")?,
            lm_head: Linear::new(lm_weight, None, Parallelism::ColumnParallel, comm.clone()),
            rope: Rope::new(hd, cfg.rope_theta, max_positions, dev)?,
            comm,
            device: dev.clone(),
            dtype: dt,
            attention_block: opts.attention_block.max(1),
            local_heads,
            local_kv_heads: local_kv,
            kernels: opts.kernels,
        })
    }

    /// Switches between the fused kernels and the plain candle path (same weights): for
    /// benchmarks and checks that compare the two in one process.
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.kernels = kernels;
    }
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    pub fn config(&self) -> &Qwen2Config {
        &self.cfg
    }
    pub fn device(&self) -> &Device {
        &self.device
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn comm(&self) -> &Arc<dyn Communicator> {
        &self.comm
    }
    /// Longest sequence (padding included) the model can position.
    pub fn max_positions(&self) -> usize {
        self.rope.max_positions()
    }

    /// A KV cache for rows with the given left padding and `capacity` slots each.
    pub fn new_cache(&self, pad: Vec<usize>, capacity: usize) -> Result<KvCache> {
        Ok(KvCache::new(
            self.layers.len(),
            self.local_kv_heads,
            self.cfg.head_dim,
            pad,
            capacity,
            self.dtype,
            &self.device,
        )?)
    }

    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let Embedding {
            table,
            vocab_start,
            vocab_len,
        } = &self.embed;
        let world = self.comm.world_size();
        let lookup = |ids: &Tensor| -> candle_core::Result<Tensor> {
            match table {
                EmbeddingTable::Dense(t) => {
                    let (b, s) = ids.dims2()?;
                    t.index_select(&ids.flatten_all()?, 0)?
                        .reshape((b, s, t.dim(1)?))
                }
                EmbeddingTable::Quantized(q) => q.embedding(ids),
            }
        };
        if world == 1 {
            return Ok(lookup(ids)?.to_dtype(self.dtype)?);
        }
        // Each rank looks up the ids it owns (others read row 0 and are zeroed), then one sum.
        let raw = ids.to_dtype(DType::I64)?;
        let local = (raw.clone() - *vocab_start as f64)?;
        let in_range = local.ge(0i64)?.mul(&local.lt(*vocab_len as i64)?)?;
        let safe = in_range
            .where_cond(&local, &local.zeros_like()?)?
            .to_dtype(DType::U32)?;
        let rows = lookup(&safe)?.to_dtype(self.dtype)?;
        let rows = rows.broadcast_mul(&in_range.to_dtype(self.dtype)?.unsqueeze(D::Minus1)?)?;
        Ok(self.comm.all_reduce_sum(&rows)?)
    }

    /// Runs `tokens` (`(batch, t)`, u32) through the model, appending their keys and values to
    /// `cache` (slots `cache.len()..cache.len() + t`), and returns the final-norm hidden states
    /// `(batch, t, hidden)`.
    pub fn forward(&self, tokens: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        self.forward_after(tokens, None, cache)
    }

    /// [`Qwen2::forward`] for rows that continue `prefix` (a one-row cache, filled by an
    /// earlier `forward`), whose keys and values every row attends to without a copy
    /// (`attention::attention_shared`). `cache` holds the rows' own slots and was made with
    /// `KvCache::continue_after(prefix.len())`; `prefix` is only read.
    pub fn forward_after(
        &self,
        tokens: &Tensor,
        prefix: Option<&KvCache>,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        if let Some(p) = prefix {
            if p.batch() != 1 {
                bail!("forward: a shared prefix has one row, not {}", p.batch());
            }
        }
        if b != cache.batch() {
            bail!(
                "forward: {b} rows of tokens for a cache of {} rows",
                cache.batch()
            );
        }
        let positions = cache.positions(t);
        let rope = self.rope.tables(&positions, b, t, self.dtype)?;
        let layout = AttentionLayout {
            pad: cache.pad(),
            q_slot0: cache.len(),
            block: self.attention_block,
        };
        // The residual stream is carried with the sublayer output still to be added
        // (`pending`), so that each add and the RMSNorm after it run as one fused op.
        let mut x = self.embed(tokens)?;
        let mut pending: Option<Tensor> = None;
        for (i, layer) in self.layers.iter().enumerate() {
            let (resid, h) = self.add_norm(x, pending.as_ref(), &layer.input_norm)?;
            let (resid, mlp_out) =
                self.layer_forward(i, layer, resid, &h, cache, prefix, &rope, layout)?;
            x = resid;
            pending = Some(mlp_out);
        }
        cache.advance(t);
        let (_, out) = self.add_norm(x, pending.as_ref(), &self.norm)?;
        Ok(out)
    }

    /// `(x + y, norm(x + y))`, fused or plain; without `y`, `(x, norm(x))`.
    fn add_norm(&self, x: Tensor, y: Option<&Tensor>, norm: &RmsNorm) -> Result<(Tensor, Tensor)> {
        Ok(match (y, self.kernels) {
            (None, _) => {
                let h = norm.forward(&x)?;
                (x, h)
            }
            (Some(y), Kernels::Fused) => fused::add_rms_norm(&x, y, &norm.weight, norm.eps)?,
            (Some(y), Kernels::Plain) => {
                let s = (x + y)?;
                let h = norm.forward(&s)?;
                (s, h)
            }
        })
    }

    /// One decoder layer on the residual stream `x` and its normed copy `h`: returns the
    /// residual after attention and the MLP output still to be added to it.
    #[allow(clippy::too_many_arguments)]
    fn layer_forward(
        &self,
        index: usize,
        l: &Layer,
        x: Tensor,
        h: &Tensor,
        cache: &KvCache,
        prefix: Option<&KvCache>,
        rope: &RopeTables,
        layout: AttentionLayout<'_>,
    ) -> Result<(Tensor, Tensor)> {
        let (b, t, _) = x.dims3()?;
        let hd = self.cfg.head_dim;
        let (nq, nkv) = (self.local_heads, self.local_kv_heads);
        let qkv = l.qkv.forward(h)?;
        let att = match self.kernels {
            Kernels::Fused => {
                let geo = Heads {
                    heads: nq,
                    kv_heads: nkv,
                    head_dim: hd,
                };
                cache.check_room(t)?;
                let slot0 = cache.len();
                let kv = cache.layer(index);
                fused::kv_append(kv, &qkv, &l.qkv_bias, rope.packed(), geo, slot0)?;
                if let (Some(p), true) = (prefix, fused::cascade_fits(&qkv, t, hd, slot0 + t)) {
                    // Decode steps on a shared prefix: one tensor-core kernel for the prefix
                    // and the decode kernel for the rows' own keys (see the function).
                    let pad = cache.pad_tensor();
                    fused::attention_cascade_decode(
                        &qkv,
                        &l.qkv_bias,
                        rope.packed(),
                        kv,
                        pad,
                        p.layer(index),
                        p.len(),
                        geo,
                        slot0,
                    )?
                } else if let Some(p) = prefix {
                    let q = fused::rope_q(&qkv, &l.qkv_bias, rope.packed(), geo)?;
                    let (k_all, v_all) = cache.views(index, slot0 + t)?;
                    let (pk, pv) = p.views(index, p.len())?;
                    attention_shared(&q, &pk, &pv, &k_all, &v_all, layout, true)?
                        .transpose(1, 2)?
                        .reshape((b, t, nq * hd))?
                } else if fused::decode_fits(t, hd, slot0 + t) {
                    let pad = cache.pad_tensor();
                    fused::attention_decode(&qkv, &l.qkv_bias, rope.packed(), kv, pad, geo, slot0)?
                } else {
                    let q = fused::rope_q(&qkv, &l.qkv_bias, rope.packed(), geo)?;
                    let (k_all, v_all) = cache.views(index, slot0 + t)?;
                    attention_fused(&q, &k_all, &v_all, layout, cache.pad_tensor())?
                        .transpose(1, 2)?
                        .reshape((b, t, nq * hd))?
                }
            }
            Kernels::Plain => {
                let qkv = qkv.broadcast_add(&l.qkv_bias)?;
                let heads = |from: usize, n: usize| -> candle_core::Result<Tensor> {
                    qkv.narrow(2, from * hd, n * hd)?
                        .reshape((b, t, n, hd))?
                        .transpose(1, 2)?
                        .contiguous()
                };
                let q = rope.apply(&heads(0, nq)?)?;
                let k = rope.apply(&heads(nq, nkv)?)?;
                let v = heads(nq + nkv, nkv)?;
                let (k_all, v_all) = cache.append(index, &k, &v)?;
                match prefix {
                    Some(p) => {
                        let (pk, pv) = p.views(index, p.len())?;
                        attention_shared(&q, &pk, &pv, &k_all, &v_all, layout, false)?
                    }
                    None => attention(&q, &k_all, &v_all, layout)?,
                }
                .transpose(1, 2)?
                .reshape((b, t, nq * hd))?
            }
        };
        let o = l.o.forward(&att)?;
        let (x, h) = self.add_norm(x, Some(&o), &l.post_norm)?;
        let gu = l.gate_up.forward(&h)?;
        let act = match self.kernels {
            Kernels::Fused => fused::silu_mul(&gu)?,
            Kernels::Plain => {
                let f = gu.dim(D::Minus1)? / 2;
                (candle_nn::ops::silu(&gu.narrow(D::Minus1, 0, f)?)?
                    * gu.narrow(D::Minus1, f, f)?)?
            }
        };
        Ok((x, l.down.forward(&act)?))
    }

    /// Full-vocabulary logits (f32) for hidden states `(batch, hidden)` or `(batch, t, hidden)`.
    /// With several ranks the vocabulary slices are gathered (in rank order).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let local = self.lm_head.forward(hidden)?.to_dtype(DType::F32)?;
        let last = local.rank() - 1;
        let full = if self.comm.world_size() > 1 {
            self.comm.all_gather(&local, last)?
        } else {
            local
        };
        // Ranks may pad the vocabulary split; never expose more than the config's vocabulary.
        Ok(full.narrow(last, 0, self.cfg.vocab_size)?)
    }

    /// Greedy choice for hidden states `(batch, hidden)` without gathering the logits: each rank
    /// reduces its slice to `(max, argmax)` and only those pairs are exchanged. Ties go to the
    /// lowest token id, as a single-rank argmax does.
    pub fn greedy(&self, hidden: &Tensor) -> Result<Vec<u32>> {
        let local = self.lm_head.forward(hidden)?.to_dtype(DType::F32)?;
        let (b, _) = local.dims2()?;
        let max = local.max_keepdim(1)?;
        let arg = local.argmax_keepdim(1)?.to_dtype(DType::F32)?;
        if self.comm.world_size() == 1 {
            return Ok(arg.flatten_all()?.to_dtype(DType::U32)?.to_vec1::<u32>()?);
        }
        let global = (arg + self.embed.vocab_start as f64)?;
        let pairs = Tensor::cat(&[max, global], 1)?; // (b, 2)
        let all = self.comm.all_gather(&pairs, 1)?.to_vec2::<f32>()?; // (b, 2 * world)
        let mut out = Vec::with_capacity(b);
        for row in all {
            let mut best = (f32::NEG_INFINITY, u32::MAX);
            for pair in row.chunks_exact(2) {
                let (v, id) = (pair[0], pair[1] as u32);
                if v > best.0 || (v == best.0 && id < best.1) {
                    best = (v, id);
                }
            }
            out.push(best.1);
        }
        Ok(out)
    }

    /// Benchmark probe: every projection of every layer and the lm_head applied to `x`
    /// `(batch, t, hidden)` (zeros of the right widths feed o_proj and down_proj), nothing else.
    /// Its time is the weight-read part of a decode step through the very GEMMs `forward` uses,
    /// which separates the GEMM rate from the glue around it (`paramx bench-gpu`).
    pub fn projections_only(&self, x: &Tensor) -> Result<()> {
        let (b, t, _) = x.dims3()?;
        let hd = self.cfg.head_dim;
        let att = Tensor::zeros((b, t, self.local_heads * hd), self.dtype, &self.device)?;
        let ffn = self.cfg.intermediate_size / self.comm.world_size();
        let act = Tensor::zeros((b, t, ffn), self.dtype, &self.device)?;
        for l in &self.layers {
            l.qkv.forward(x)?;
            l.o.forward(&att)?;
            l.gate_up.forward(x)?;
            l.down.forward(&act)?;
        }
        self.lm_head.forward(x)?;
        Ok(())
    }

    /// Last-position hidden state of every row: `(batch, t, hidden)` -> `(batch, hidden)`.
    pub fn last_hidden(hidden: &Tensor) -> Result<Tensor> {
        let t = hidden.dim(1)?;
        Ok(hidden.i((.., t - 1, ..))?.contiguous()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_ranges_cover_the_vocabulary() {
        assert_eq!(rank_range(10, 0, 1), (0, 10));
        assert_eq!(rank_range(10, 0, 3), (0, 4));
        assert_eq!(rank_range(10, 2, 3), (8, 2));
    }
}
