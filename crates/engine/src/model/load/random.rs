//! Random weights at a model's shapes, generated on the device: the stand-in for a checkpoint
//! that does not exist on the benchmark machine (no 72B download there).
//!
//! Why a [`WeightSource`] and not a separate model: the benchmark must run the *real* code path
//! (`Qwen2::load` then `Qwen2::forward`), so the only thing replaced is where the numbers come
//! from. Tensors are drawn one at a time (in f32, then cast: candle's CUDA `randn` has no bf16),
//! so the transient f32 copy is one tensor, never a whole layer.

use crate::model::linear::Weight;
use crate::model::load::{EmbeddingTable, Slice, Stacked, WeightSource};
use crate::model::Qwen2Config;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};

/// Standard deviation of the projection weights (the usual initializer range of Qwen2).
const WEIGHT_STD: f64 = 0.02;

/// Named tensors of a Qwen2 of `config`'s shapes, filled with random numbers on request.
pub struct RandomSource {
    cfg: Qwen2Config,
}

impl RandomSource {
    pub fn new(cfg: &Qwen2Config) -> Self {
        Self { cfg: cfg.clone() }
    }

    /// Shape of a tensor by its HF name, and whether it is a norm weight (drawn around 1).
    fn shape_of(&self, name: &str) -> Result<(Vec<usize>, bool)> {
        let c = &self.cfg;
        let (q, kv) = (
            c.num_attention_heads * c.head_dim,
            c.num_key_value_heads * c.head_dim,
        );
        let h = c.hidden_size;
        if name == "model.embed_tokens.weight" || name == "lm_head.weight" {
            return Ok((vec![c.vocab_size, h], false));
        }
        if name == "model.norm.weight" {
            return Ok((vec![h], true));
        }
        let rest = name
            .strip_prefix("model.layers.")
            .and_then(|r| r.split_once('.'))
            .map(|(_, r)| r)
            .with_context(|| format!("random weights: unknown tensor {name}"))?;
        let shape = match rest {
            "input_layernorm.weight" | "post_attention_layernorm.weight" => {
                return Ok((vec![h], true))
            }
            "self_attn.q_proj.weight" => vec![q, h],
            "self_attn.k_proj.weight" | "self_attn.v_proj.weight" => vec![kv, h],
            "self_attn.q_proj.bias" => vec![q],
            "self_attn.k_proj.bias" | "self_attn.v_proj.bias" => vec![kv],
            "self_attn.o_proj.weight" => vec![h, q],
            "mlp.gate_proj.weight" | "mlp.up_proj.weight" => vec![c.intermediate_size, h],
            "mlp.down_proj.weight" => vec![h, c.intermediate_size],
            _ => bail!("random weights: unknown tensor {name}"),
        };
        Ok((shape, false))
    }

    /// The shape of `name`, or of its `slice` (a rank's share under tensor parallelism).
    fn sliced_shape(&self, name: &str, slice: Option<Slice>) -> Result<(Vec<usize>, bool)> {
        let (mut shape, is_norm) = self.shape_of(name)?;
        if let Some(s) = slice {
            match shape.get(s.dim) {
                Some(&n) if s.len > 0 && s.start + s.len <= n => shape[s.dim] = s.len,
                _ => bail!("random weights: slice {s:?} is outside {name} {shape:?}"),
            }
        }
        Ok((shape, is_norm))
    }

    /// A slice is drawn at its own shape: the values are random either way, so a rank of a TP
    /// group holds exactly its share and never the whole tensor.
    fn draw(&self, name: &str, slice: Option<Slice>, dtype: DType, dev: &Device) -> Result<Tensor> {
        let (shape, is_norm) = self.sliced_shape(name, slice)?;
        let t = if is_norm {
            (Tensor::randn(0f32, 0.1, shape, dev)? + 1.0)?
        } else {
            Tensor::randn(0f32, WEIGHT_STD as f32, shape, dev)?
        };
        Ok(t.to_dtype(dtype)?)
    }
}

impl WeightSource for RandomSource {
    fn describe(&self) -> String {
        format!(
            "random weights ({} layers, hidden {}, {} heads / {} KV heads, MLP {}, vocab {})",
            self.cfg.num_hidden_layers,
            self.cfg.hidden_size,
            self.cfg.num_attention_heads,
            self.cfg.num_key_value_heads,
            self.cfg.intermediate_size,
            self.cfg.vocab_size
        )
    }
    fn contains(&self, name: &str) -> bool {
        self.shape_of(name).is_ok()
    }
    fn tensor(
        &self,
        name: &str,
        slice: Option<Slice>,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        self.draw(name, slice, dtype, dev)
    }
    fn linear_weight(
        &self,
        name: &str,
        slice: Option<Slice>,
        dtype: DType,
        dev: &Device,
    ) -> Result<Weight> {
        Ok(Weight::Dense(self.draw(name, slice, dtype, dev)?))
    }
    fn embedding(
        &self,
        name: &str,
        slice: Option<Slice>,
        dtype: DType,
        dev: &Device,
    ) -> Result<EmbeddingTable> {
        Ok(EmbeddingTable::Dense(self.draw(name, slice, dtype, dev)?))
    }
    /// Draws the stacked matrix at once (the same distribution as its parts): no parts and no
    /// concatenation on the device, as a real checkpoint is stacked on the host.
    fn stacked_linear_weight(
        &self,
        parts: &[(&str, Option<Slice>)],
        dtype: DType,
        dev: &Device,
    ) -> Result<Stacked> {
        let (mut rows, mut cols) = (0, None);
        for (name, slice) in parts {
            let (shape, _) = self.sliced_shape(name, *slice)?;
            if cols.is_some_and(|c| c != shape[1]) {
                bail!("cannot stack {name}: its width differs");
            }
            cols = Some(shape[1]);
            rows += shape[0];
        }
        let cols = cols.context("nothing to stack")?;
        let t = Tensor::randn(0f32, WEIGHT_STD as f32, (rows, cols), dev)?;
        Ok(Stacked::One(t.to_dtype(dtype)?))
    }
}

/// Deterministic pseudo-random token ids in `0..vocab` (never all-equal, never zeros): prompts
/// for a model with random weights.
pub fn token_ids(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % vocab as u64) as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_the_config_and_slices() {
        let cfg = crate::model::shapes::tiny();
        let src = RandomSource::new(&cfg);
        let dev = Device::Cpu;
        let q = src
            .tensor(
                "model.layers.1.self_attn.q_proj.weight",
                None,
                DType::F32,
                &dev,
            )
            .unwrap();
        assert_eq!(
            q.dims(),
            &[cfg.num_attention_heads * cfg.head_dim, cfg.hidden_size]
        );
        let o = src
            .tensor(
                "model.layers.0.self_attn.o_proj.weight",
                None,
                DType::F32,
                &dev,
            )
            .unwrap();
        assert_eq!(
            o.dims(),
            &[cfg.hidden_size, cfg.num_attention_heads * cfg.head_dim]
        );
        let n = src
            .tensor("model.norm.weight", None, DType::F32, &dev)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        // Norm weights sit around 1 and are not constant (no zeros, no ones-only shortcut).
        let mean = n.iter().sum::<f32>() / n.len() as f32;
        assert!((mean - 1.0).abs() < 0.1 && n.iter().any(|&v| v != n[0]));
        assert!(src.contains("lm_head.weight"));
        assert!(!src.contains("model.layers.0.self_attn.o_proj.bias"));
        // A rank's share is drawn at its shape; a slice past the end is an error.
        let half = cfg.num_attention_heads * cfg.head_dim / 2;
        let s = |start, len| Some(Slice { dim: 0, start, len });
        let q = "model.layers.0.self_attn.q_proj.weight";
        let t = src.tensor(q, s(half, half), DType::F32, &dev).unwrap();
        assert_eq!(t.dims(), &[half, cfg.hidden_size]);
        assert!(src.tensor(q, s(half, half + 1), DType::F32, &dev).is_err());
        assert!(src
            .tensor(
                "model.norm.weight",
                s(0, cfg.hidden_size + 1),
                DType::F32,
                &dev
            )
            .is_err());
    }
}
