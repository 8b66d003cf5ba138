//! One linear layer type for every projection of the model, dense or quantized, replicated or
//! sharded across tensor-parallel ranks.
//!
//! Why one type: the tensor-parallel code shards the *same* layers the single-rank code runs, so
//! the only difference between one rank and N ranks is the [`Parallelism`] tag and the slice of
//! the weight that the loader handed in. The row-parallel all-reduce lives here (and only here),
//! so it cannot be forgotten or done twice.

use crate::tp::Communicator;
use candle_core::quantized::{GgmlDType, QMatMul};
use candle_core::{Module, Result, Tensor};
use std::sync::{Arc, OnceLock};

/// How a layer's weight is split across ranks (Megatron style).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parallelism {
    /// Every rank holds the whole weight.
    Replicated,
    /// Each rank holds a slice of the output features (and of the bias); outputs stay sharded.
    ColumnParallel,
    /// Each rank holds a slice of the input features; partial outputs are summed across ranks
    /// and then the (replicated) bias is added once.
    RowParallel,
}

/// The weight matrix, `(out_features, in_features)` as seen by this rank.
#[derive(Debug, Clone)]
pub enum Weight {
    /// A plain tensor in the model's compute dtype.
    Dense(Tensor),
    /// A GGML-quantized matrix multiplied through candle's quantized kernels.
    Quantized(QMatMul),
}

/// `y = x Wᵀ (+ all-reduce) + b` for `x` of shape `(..., in_features)`.
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    parallelism: Parallelism,
    comm: Arc<dyn Communicator>,
    prefill_dense_min_tokens: Option<usize>,
    /// A `Q8_0` weight's decode layout (`qgemv::Packed8`), built at its first decode step on
    /// a CPU that runs the packed kernel; `None` inside where it does not apply. Prefill
    /// chunks keep the GGUF blocks.
    packed: OnceLock<Option<super::qgemv::Packed8>>,
}

impl std::fmt::Debug for Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linear")
            .field("weight", &self.weight)
            .field("bias", &self.bias.as_ref().map(|b| b.shape().clone()))
            .field("parallelism", &self.parallelism)
            .finish()
    }
}

impl Linear {
    pub fn new(
        weight: Weight,
        bias: Option<Tensor>,
        parallelism: Parallelism,
        comm: Arc<dyn Communicator>,
    ) -> Self {
        Self {
            weight,
            bias,
            parallelism,
            comm,
            prefill_dense_min_tokens: None,
            packed: OnceLock::new(),
        }
    }

    /// Whether `x` (`(b, t, in)`) should run through a dequantized dense matmul: only for
    /// chunks of `prefill_dense_min_tokens` or more tokens per row, and only for Q8_0 weights
    /// whose input width is not a multiple of 256. Those get no repacked (AVX512-VNNI) kernel
    /// in candle and fall back to one quantized dot product per (row, column); measured on the
    /// 0.5B (Q5_0/Q8_0, width 896), 536-token prefill, 1 thread: 27.6 -> 79.5 tok/s. K-quant
    /// weights (the 1.5B's Q4_K/Q6_K) keep candle's repacked kernels, which beat a dense GEMM.
    fn dense_rows(&self, x: &Tensor) -> bool {
        let (Some(min), [_, t, k]) = (self.prefill_dense_min_tokens, x.dims()) else {
            return false;
        };
        let q8_0 = match &self.weight {
            Weight::Quantized(QMatMul::QTensor(q)) => q.dtype() == GgmlDType::Q8_0,
            _ => false,
        };
        *t >= min && q8_0 && k % 256 != 0
    }

    /// Chunks of at least `min` tokens per row multiply quantized weights as dequantized dense
    /// matrices (`None`: always the quantized kernels).
    pub fn with_prefill_dense_min_tokens(mut self, min: Option<usize>) -> Self {
        self.prefill_dense_min_tokens = min;
        self
    }

    /// The packed copy of a `Q8_0` weight for a decode step of `x`: built on first use, and
    /// only for few rows on a CPU whose kernel reads it.
    fn packed_q8_0(
        &self,
        q: &candle_core::quantized::QTensor,
        x: &Tensor,
    ) -> Option<&super::qgemv::Packed8> {
        let (n, k) = q.shape().dims2().ok()?;
        let rows = x.elem_count() / k.max(1);
        if q.dtype() != GgmlDType::Q8_0
            || !x.device().is_cpu()
            || rows > super::qgemv::MAX_ROWS
            || !super::qgemv::packs_q8_0(k)
        {
            return None;
        }
        self.packed
            .get_or_init(|| {
                let bytes = q.data().ok()?;
                super::qgemv::Packed8::from_q8_0(&bytes, n, k)
            })
            .as_ref()
    }

    pub fn parallelism(&self) -> Parallelism {
        self.parallelism
    }

    pub fn weight(&self) -> &Weight {
        &self.weight
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.weight {
            Weight::Dense(w) => {
                // (b, t, in) x (in, out): broadcast_matmul keeps the leading dims.
                let x = if x.dtype() != w.dtype() {
                    x.to_dtype(w.dtype())?
                } else {
                    x.clone()
                };
                x.broadcast_matmul(&w.t()?)?
            }
            Weight::Quantized(QMatMul::QTensor(q)) if self.dense_rows(x) => {
                // A multi-token chunk: the 8-bit GEMM where the CPU has one (see
                // `qgemv::matmul_chunk`), else one dequantized f32 GEMM, which beats per-row
                // quantized dot products once the weights are reused across enough rows.
                match super::qgemv::matmul_chunk(q, x)? {
                    Some(y) => y,
                    None => {
                        let w = q.dequantize(x.device())?;
                        x.to_dtype(w.dtype())?.broadcast_matmul(&w.t()?)?
                    }
                }
            }
            Weight::Quantized(qm) => {
                // A decode step's few rows: our kernels, on a repacked copy for `Q8_0` (see
                // `qgemv::Packed8`), else on the GGUF blocks in place (see `qgemv`); prefill
                // chunks and other types: candle's.
                let ours = match qm {
                    QMatMul::QTensor(q) => match self.packed_q8_0(q, x) {
                        Some(p) => super::qgemv::matmul_packed(p, x)?,
                        None => None,
                    }
                    .map_or_else(|| super::qgemv::matmul(q, x), |y| Ok(Some(y)))?,
                    _ => None,
                };
                match ours {
                    Some(y) => y,
                    None => qm.forward(x)?,
                }
            }
        };
        let y = match self.parallelism {
            Parallelism::RowParallel if self.comm.world_size() > 1 => {
                self.comm.all_reduce_sum(&y)?
            }
            _ => y,
        };
        match &self.bias {
            Some(b) => y.broadcast_add(&b.to_dtype(y.dtype())?),
            None => Ok(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tp::SingleRank;
    use candle_core::{Device, IndexOp};

    #[test]
    fn dense_linear_matches_hand_computation() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::new(&[[1f32, 2.], [3., 4.], [5., 6.]], &dev)?; // out 3, in 2
        let b = Tensor::new(&[0.5f32, -1., 0.], &dev)?;
        let lin = Linear::new(
            Weight::Dense(w),
            Some(b),
            Parallelism::Replicated,
            Arc::new(SingleRank),
        );
        let x = Tensor::new(&[[[1f32, -1.]]], &dev)?; // (1,1,2)
        let y = lin.forward(&x)?.i((0, 0))?.to_vec1::<f32>()?;
        assert_eq!(y, vec![-0.5, -2.0, -1.0]);
        Ok(())
    }
}
