//! Rotary position embeddings with Qwen's base (`rope_theta`, 1e6 for Qwen2.5).
//!
//! Qwen2 rotates the two halves of each head (the "NeoX" layout, `candle_nn::rotary_emb::rope`),
//! not interleaved pairs. Positions are per sequence, so ragged left-padded batches rotate each
//! row by its own positions: the tables are gathered per `(row, token)`.

use candle_core::{DType, Device, Result, Tensor};

#[derive(Debug, Clone)]
pub struct Rope {
    /// `(max_positions, head_dim)` = `[cos | sin]` per position, f32: one gather per forward
    /// pass serves the fused kernels as is and the plain path through two slices.
    cs: Tensor,
    max_positions: usize,
}

impl Rope {
    pub fn new(head_dim: usize, theta: f64, max_positions: usize, device: &Device) -> Result<Self> {
        let inv_freq: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| (1.0 / theta.powf(i as f64 / head_dim as f64)) as f32)
            .collect();
        let half = inv_freq.len();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let t = Tensor::arange(0u32, max_positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((max_positions, 1))?;
        let freqs = t.matmul(&inv_freq)?;
        Ok(Self {
            cs: Tensor::cat(&[freqs.cos()?, freqs.sin()?], 1)?,
            max_positions,
        })
    }

    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Gathers the tables for `positions` (`b * t` values, row-major), once per forward pass,
    /// in the compute dtype, so every layer reuses them.
    pub fn tables(
        &self,
        positions: &[u32],
        b: usize,
        t: usize,
        dtype: DType,
    ) -> Result<RopeTables> {
        if positions.len() != b * t {
            candle_core::bail!("rope: {} positions for a ({b}, {t}) batch", positions.len())
        }
        if let Some(&max) = positions.iter().max() {
            if max as usize >= self.max_positions {
                candle_core::bail!(
                    "position {max} is beyond the model's context ({} positions)",
                    self.max_positions
                )
            }
        }
        let idx = Tensor::new(positions, self.cs.device())?;
        let hd = self.cs.dim(1)?;
        let cs = self
            .cs
            .index_select(&idx, 0)?
            .reshape((b, t, hd))?
            .to_dtype(dtype)?;
        Ok(RopeTables {
            cs,
            halves: std::sync::OnceLock::new(),
        })
    }
}

/// `[cos | sin]` for one batch of positions, `(b, t, head_dim)`, in the compute dtype.
#[derive(Debug, Clone)]
pub struct RopeTables {
    cs: Tensor,
    /// Contiguous cos and sin halves for candle's RoPE, made on the plain path's first use
    /// and reused by every layer of the pass.
    halves: std::sync::OnceLock<(Tensor, Tensor)>,
}

impl RopeTables {
    /// `[cos | sin]`, `(b, t, head_dim)`, in the compute dtype.
    pub fn packed(&self) -> &Tensor {
        &self.cs
    }

    /// Rotates `x` of shape `(b, heads, t, head_dim)` with candle's RoPE (the plain path).
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let (cos, sin) = match self.halves.get() {
            Some(h) => h,
            None => {
                let half = self.cs.dim(2)? / 2;
                let cos = self.cs.narrow(2, 0, half)?.contiguous()?;
                let sin = self.cs.narrow(2, half, half)?.contiguous()?;
                self.halves.get_or_init(|| (cos, sin))
            }
        };
        candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_zero_is_identity_and_rotation_preserves_norm() -> Result<()> {
        let dev = Device::Cpu;
        let rope = Rope::new(8, 1e6, 16, &dev)?;
        let x = Tensor::arange(0f32, 16., &dev)?.reshape((1, 1, 2, 8))?;
        let y = rope.tables(&[0, 5], 1, 2, DType::F32)?.apply(&x)?;
        let (x0, y0) = (x.get(0)?.get(0)?.get(0)?, y.get(0)?.get(0)?.get(0)?);
        assert_eq!(x0.to_vec1::<f32>()?, y0.to_vec1::<f32>()?);
        let n = |t: &Tensor| {
            t.sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let (x1, y1) = (x.get(0)?.get(0)?.get(1)?, y.get(0)?.get(0)?.get(1)?);
        assert!((n(&x1) - n(&y1)).abs() < 1e-3);
        Ok(())
    }
}
