//! Reading weights from the two on-disk formats behind one interface.
//!
//! Tensor names are the HF ones (`model.layers.3.self_attn.q_proj.weight`); the GGUF reader
//! maps them to llama.cpp names. A [`Slice`] asks for one rank's part of a tensor, so a
//! tensor-parallel rank never materialises the parts that other ranks hold.

pub mod gguf;
pub mod random;
pub mod safetensors;

use crate::model::linear::Weight;
use anyhow::Result;
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};
use std::sync::Arc;

/// The part `start..start + len` of dimension `dim` (HF orientation: linear weights are
/// `(out_features, in_features)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub dim: usize,
    pub start: usize,
    pub len: usize,
}

/// An embedding table, kept quantized when the file is (rows are dequantized on lookup).
#[derive(Debug, Clone)]
pub enum EmbeddingTable {
    Dense(Tensor),
    Quantized(Arc<QTensor>),
}

/// Linear weights of one input width stacked by output rows (`q | k | v`, `gate | up`).
#[derive(Debug, Clone)]
pub enum Stacked {
    /// One dense `(sum of rows, in_features)` tensor: the step runs one GEMM.
    One(Tensor),
    /// The parts, in order, when one of them is quantized (GGUF files give them different
    /// quantization types, which cannot be stacked).
    Parts(Vec<Weight>),
}

/// A source of named tensors (one GGUF file, or an HF directory of safetensors shards).
pub trait WeightSource: Send + Sync {
    /// The file or directory, for error messages.
    fn describe(&self) -> String;
    fn contains(&self, name: &str) -> bool;
    /// A tensor as a dense `dtype` tensor (dequantized if needed), optionally one slice of it.
    fn tensor(
        &self,
        name: &str,
        slice: Option<Slice>,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor>;
    /// A linear layer's weight, quantized if the file is quantized.
    fn linear_weight(
        &self,
        name: &str,
        slice: Option<Slice>,
        dtype: DType,
        device: &Device,
    ) -> Result<Weight>;
    /// An embedding table, quantized if the file is quantized.
    fn embedding(
        &self,
        name: &str,
        slice: Option<Slice>,
        dtype: DType,
        device: &Device,
    ) -> Result<EmbeddingTable>;

    /// The linear weights `parts` (name, this rank's rows) stacked by rows. This default loads
    /// each part and concatenates dense ones on the device. Sources that can stack before the
    /// upload override it: on a GPU the parts and their concatenation would otherwise share the
    /// memory pool, and the freed parts leave holes between the weights (1.5 GiB on a 72B rank,
    /// measured) that no later allocation is guaranteed to fill.
    fn stacked_linear_weight(
        &self,
        parts: &[(&str, Option<Slice>)],
        dtype: DType,
        device: &Device,
    ) -> Result<Stacked> {
        let ws = parts
            .iter()
            .map(|(name, slice)| self.linear_weight(name, *slice, dtype, device))
            .collect::<Result<Vec<_>>>()?;
        let dense: Vec<&Tensor> = ws
            .iter()
            .filter_map(|w| match w {
                Weight::Dense(t) => Some(t),
                Weight::Quantized(_) => None,
            })
            .collect();
        if dense.len() < ws.len() {
            return Ok(Stacked::Parts(ws));
        }
        Ok(Stacked::One(Tensor::cat(&dense, 0)?))
    }
}

/// Copies the `slice` of a row-major array of `shape` whose elements take `elem` bytes.
/// Only the sliced bytes are touched, so slicing an mmapped file reads only those pages.
pub(crate) fn slice_bytes(
    data: &[u8],
    shape: &[usize],
    elem: usize,
    slice: Slice,
) -> Result<Vec<u8>> {
    let Slice { dim, start, len } = slice;
    if dim >= shape.len() || start + len > shape[dim] {
        anyhow::bail!("slice {slice:?} is out of range for shape {shape:?}");
    }
    let inner: usize = shape[dim + 1..].iter().product::<usize>() * elem;
    let outer: usize = shape[..dim].iter().product();
    let row = shape[dim] * inner;
    if data.len() != outer * row {
        anyhow::bail!(
            "tensor data has {} bytes, shape {shape:?} needs {}",
            data.len(),
            outer * row
        );
    }
    let mut out = Vec::with_capacity(outer * len * inner);
    for o in 0..outer {
        let base = o * row + start * inner;
        out.extend_from_slice(&data[base..base + len * inner]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_rows_and_columns() {
        let data: Vec<u8> = (0..12).collect(); // 3 x 4, one byte each
        let rows = slice_bytes(
            &data,
            &[3, 4],
            1,
            Slice {
                dim: 0,
                start: 1,
                len: 2,
            },
        )
        .unwrap();
        assert_eq!(rows, (4..12).collect::<Vec<u8>>());
        let cols = slice_bytes(
            &data,
            &[3, 4],
            1,
            Slice {
                dim: 1,
                start: 2,
                len: 2,
            },
        )
        .unwrap();
        assert_eq!(cols, vec![2, 3, 6, 7, 10, 11]);
        assert!(slice_bytes(
            &data,
            &[3, 4],
            1,
            Slice {
                dim: 1,
                start: 3,
                len: 2
            }
        )
        .is_err());
    }
}
