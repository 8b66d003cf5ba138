//! The communicator abstraction shared by every tensor-parallel implementation.

use candle_core::{Result, Tensor};

/// Collectives that a tensor-parallel Qwen2 needs. Implementations must be deterministic: the
/// same inputs on every rank give bit-identical outputs on every rank (greedy decoding across
/// ranks depends on it), and a failed or vanished peer must surface as an error, never a hang.
pub trait Communicator: Send + Sync {
    /// This process's rank, in `0..world_size()`.
    fn rank(&self) -> usize;
    /// Number of ranks taking part.
    fn world_size(&self) -> usize;
    /// Element-wise sum of `t` over all ranks; every rank gets the result. Used after the
    /// row-parallel projections (`o_proj`, `down_proj`).
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor>;
    /// Concatenation of every rank's `t` along dimension `dim`, in rank order. Used to join
    /// vocabulary-split logits and the per-rank (max, argmax) pairs of greedy decoding.
    fn all_gather(&self, t: &Tensor, dim: usize) -> Result<Tensor>;
}

/// The trivial communicator of a one-rank run: every collective returns its input.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleRank;

impl Communicator for SingleRank {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.clone())
    }
    fn all_gather(&self, t: &Tensor, _dim: usize) -> Result<Tensor> {
        Ok(t.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn single_rank_collectives_are_identity() -> Result<()> {
        let t = Tensor::new(&[1f32, -2.5, 3.0], &Device::Cpu)?;
        let c = SingleRank;
        assert_eq!((c.rank(), c.world_size()), (0, 1));
        assert_eq!(
            c.all_reduce_sum(&t)?.to_vec1::<f32>()?,
            vec![1.0, -2.5, 3.0]
        );
        assert_eq!(c.all_gather(&t, 0)?.to_vec1::<f32>()?, vec![1.0, -2.5, 3.0]);
        Ok(())
    }
}
