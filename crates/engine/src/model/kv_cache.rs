//! The key/value cache of one batch of sequences, preallocated once and written in place.
//!
//! Layout: per layer one tensor `(2, batch, kv_heads, capacity, head_dim)`, K then V (one tensor
//! so that the fused append writes both in one kernel, see `fused::kv_append`). A forward pass
//! over `t` new tokens writes slots `len..len + t` of every row in place (no concatenation, no
//! reallocation per step), and attention reads the views `0..len + t` of K and V.
//!
//! Ragged batches are left-padded: row `b` holds `pad[b]` padding slots before its first real
//! token. Padding keys are masked out of attention, and RoPE positions count from the first real
//! token (`slot - pad[b]`), so a row's numbers do not depend on what else is in the batch.

use candle_core::{DType, Device, IndexOp, Result, Tensor};

#[derive(Debug)]
pub struct KvCache {
    layers: Vec<Tensor>,
    batch: usize,
    capacity: usize,
    len: usize,
    pad: Vec<usize>,
    /// `pad` as a `(batch)` u32 tensor on the cache's device, for the fused softmax's mask.
    pad_tensor: Tensor,
    /// RoPE position of each row's first real slot: 0, or the length of the shared prefix the
    /// rows continue (see `attention::attention_shared`).
    pos_offset: usize,
}

impl KvCache {
    /// Allocates `layers` K/V pairs for `pad.len()` rows of `capacity` slots (padding included).
    pub fn new(
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        pad: Vec<usize>,
        capacity: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let batch = pad.len();
        if batch == 0 {
            candle_core::bail!("kv cache: empty batch")
        }
        if let Some(p) = pad.iter().find(|&&p| p >= capacity) {
            candle_core::bail!("kv cache: padding {p} does not fit a capacity of {capacity}")
        }
        let shape = (2, batch, kv_heads, capacity, head_dim);
        let layers = (0..layers)
            .map(|_| Tensor::zeros(shape, dtype, device))
            .collect::<Result<Vec<_>>>()?;
        let pad_tensor = pad_tensor(&pad, device)?;
        Ok(Self {
            layers,
            batch,
            capacity,
            len: 0,
            pad,
            pad_tensor,
            pos_offset: 0,
        })
    }

    /// Bytes one cache of this geometry takes (K and V, all layers).
    pub fn bytes_for(
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        batch: usize,
        capacity: usize,
        dtype: DType,
    ) -> usize {
        2 * layers * kv_heads * head_dim * batch * capacity * dtype.size_in_bytes()
    }

    pub fn batch(&self) -> usize {
        self.batch
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Slots filled so far (including left padding).
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Left padding of each row.
    pub fn pad(&self) -> &[usize] {
        &self.pad
    }

    /// `pad` on the device, `(batch)` u32.
    pub fn pad_tensor(&self) -> &Tensor {
        &self.pad_tensor
    }

    /// The whole K/V tensor of `layer`, `(2, batch, kv_heads, capacity, head_dim)`: what the
    /// fused append writes into.
    pub fn layer(&self, layer: usize) -> &Tensor {
        &self.layers[layer]
    }

    /// Views of the K and V of slots `0..len` of `layer`, `(batch, kv_heads, len, head_dim)`.
    pub fn views(&self, layer: usize, len: usize) -> Result<(Tensor, Tensor)> {
        let l = &self.layers[layer];
        Ok((l.i(0)?.narrow(2, 0, len)?, l.i(1)?.narrow(2, 0, len)?))
    }

    /// An error unless `t` more slots fit.
    pub fn check_room(&self, t: usize) -> Result<()> {
        if self.len + t > self.capacity {
            candle_core::bail!(
                "kv cache full: {} + {t} slots exceed the capacity of {}",
                self.len,
                self.capacity
            )
        }
        Ok(())
    }

    /// Makes the rows continue a shared prefix of `prefix_len` tokens: their first real slot
    /// takes RoPE position `prefix_len`.
    pub fn continue_after(mut self, prefix_len: usize) -> Self {
        self.pos_offset = prefix_len;
        self
    }

    /// RoPE positions of the next `t` slots, row-major `(batch, t)`. Padding slots get the
    /// first real slot's position (they are never attended to).
    pub fn positions(&self, t: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.batch * t);
        for &p in &self.pad {
            out.extend(
                (self.len..self.len + t).map(|s| (s.saturating_sub(p) + self.pos_offset) as u32),
            );
        }
        out
    }

    /// Writes `k`, `v` of shape `(batch, kv_heads, t, head_dim)` into slots `len..len + t` of
    /// `layer` and returns views of slots `0..len + t`. Does not advance `len`: the model calls
    /// [`KvCache::advance`] once after all layers.
    pub fn append(&self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = k.dim(2)?;
        self.check_room(t)?;
        let l = &self.layers[layer];
        l.i(0)?.slice_set(&k.contiguous()?, 2, self.len)?;
        l.i(1)?.slice_set(&v.contiguous()?, 2, self.len)?;
        self.views(layer, self.len + t)
    }

    pub fn advance(&mut self, t: usize) {
        self.len += t;
    }

    /// Keeps only `rows` (in that order), e.g. to stop computing sequences that have finished.
    /// Copies one layer at a time, so the transient extra memory is one layer's K/V.
    pub fn retain(&mut self, rows: &[usize]) -> Result<()> {
        if rows.is_empty() || rows.iter().any(|&r| r >= self.batch) {
            candle_core::bail!("kv cache: cannot keep rows {rows:?} of {}", self.batch)
        }
        let device = self.layers[0].device().clone();
        let idx = Tensor::new(rows.iter().map(|&r| r as u32).collect::<Vec<_>>(), &device)?;
        for kv in self.layers.iter_mut() {
            *kv = kv.index_select(&idx, 1)?.contiguous()?;
        }
        self.pad = rows.iter().map(|&r| self.pad[r]).collect();
        self.pad_tensor = pad_tensor(&self.pad, &device)?;
        self.batch = rows.len();
        Ok(())
    }
}

fn pad_tensor(pad: &[usize], device: &Device) -> Result<Tensor> {
    let v: Vec<u32> = pad.iter().map(|&p| p as u32).collect();
    Tensor::from_vec(v, pad.len(), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_writes_in_place_and_positions_skip_padding() -> Result<()> {
        let dev = Device::Cpu;
        let mut c = KvCache::new(1, 1, 2, vec![0, 2], 4, DType::F32, &dev)?;
        assert_eq!(c.positions(3), vec![0, 1, 2, 0, 0, 0]);
        let k = Tensor::ones((2, 1, 3, 2), DType::F32, &dev)?;
        let (kv, _) = c.append(0, &k, &k)?;
        assert_eq!(kv.dims(), &[2, 1, 3, 2]);
        c.advance(3);
        assert_eq!(c.positions(1), vec![3, 1]);
        let k1 = Tensor::full(7f32, (2, 1, 1, 2), &dev)?;
        let (kv, _) = c.append(0, &k1, &k1)?;
        assert_eq!(
            kv.get(1)?.get(0)?.to_vec2::<f32>()?,
            vec![vec![1., 1.], vec![1., 1.], vec![1., 1.], vec![7., 7.]]
        );
        c.advance(1);
        assert!(c.append(0, &k1, &k1).is_err(), "full cache must refuse");
        c.retain(&[1])?;
        assert_eq!((c.batch(), c.pad(), c.len()), (1, &[2usize][..], 4));
        assert_eq!(c.positions(0), Vec::<u32>::new());
        let c = KvCache::new(1, 1, 2, vec![0, 2], 4, DType::F32, &dev)?.continue_after(10);
        assert_eq!(
            c.positions(3),
            vec![10, 11, 12, 10, 10, 10],
            "rows after a 10-token prefix"
        );
        Ok(())
    }
}
