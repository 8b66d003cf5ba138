//! Batched `f32` matrix products on the CPU, split over candle's barrier pool: the attention's
//! score and value products of a prefill chunk.
//!
//! Why our own split: candle's CPU matmul hands each batch item (a KV head) to `gemm` with
//! rayon's pool, while the quantized projections run on candle's barrier pool. On a 2-core box
//! the two pools took turns badly: a profile of a 2-thread run (`perf record`, 2026-12-07,
//! 1.5B) had the barrier pool's worker spinning in 10% of all samples while rayon's two
//! workers ran the attention products, and the calling thread waiting on the pool's barrier in
//! another 4%: three busy threads on two cores. Here the same `gemm` kernels run single-threaded,
//! one piece each (a batch item, or a band of its rows), on the barrier pool, so one pool does
//! all of a step's work. The numbers are `gemm`'s own: each output element is one `gemm` dot
//! product, whichever piece computes it.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

/// Rows of a band below which a batch item is not split further: `gemm` packs the right-hand
/// matrix for each call, so a band must reuse it enough to pay for that.
const MIN_BAND_ROWS: usize = 16;

/// Pieces per pool thread the work is cut into: enough to even out the pieces' sizes.
const PIECES_PER_THREAD: usize = 4;

/// `a · b` for `a` `(..., m, k)` and `b` `(..., k, n)` with the same batch dims: on the CPU in
/// `f32`, on the barrier pool (any strides; `b` may be a transposed view, as `kᵀ` is);
/// elsewhere candle's matmul.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let cpu_f32 = a.device().is_cpu()
        && a.dtype() == candle_core::DType::F32
        && b.dtype() == candle_core::DType::F32;
    if !cpu_f32 || a.rank() < 2 || a.rank() != b.rank() {
        return a.matmul(b);
    }
    a.apply_op2_no_bwd(b, &PoolMatMul)
}

struct PoolMatMul;

/// Element offset of each batch item of `layout` (the dims before the last two), in order.
fn batch_offsets(layout: &Layout) -> Vec<usize> {
    let dims = layout.dims();
    let stride = layout.stride();
    let batch = &dims[..dims.len() - 2];
    let count: usize = batch.iter().product();
    (0..count)
        .map(|mut i| {
            let mut off = layout.start_offset();
            for (d, s) in batch.iter().zip(stride).rev() {
                off += (i % d) * s;
                i /= d;
            }
            off
        })
        .collect()
}

impl CustomOp2 for PoolMatMul {
    fn name(&self) -> &'static str {
        "pool-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(a), CpuStorage::F32(b)) = (s1, s2) else {
            candle_core::bail!("pool-matmul: f32 only")
        };
        let (da, db) = (l1.dims(), l2.dims());
        let r = da.len();
        let (m, k, n) = (da[r - 2], da[r - 1], db[r - 1]);
        if db[r - 2] != k || da[..r - 2] != db[..r - 2] {
            candle_core::bail!("pool-matmul: shapes {:?} and {:?} do not multiply", da, db)
        }
        let (sa, sb) = (l1.stride(), l2.stride());
        let (a_rs, a_cs) = (sa[r - 2] as isize, sa[r - 1] as isize);
        let (b_rs, b_cs) = (sb[r - 2] as isize, sb[r - 1] as isize);
        let (offs_a, offs_b) = (batch_offsets(l1), batch_offsets(l2));
        let items = offs_a.len();
        let mut out = vec![0f32; items * m * n];
        let mut shape = da[..r - 2].to_vec();
        shape.extend([m, n]);
        if items == 0 || m == 0 || n == 0 {
            return Ok((CpuStorage::F32(out), Shape::from(shape)));
        }
        // Cut each item into bands of rows so that there are enough pieces for the pool.
        let threads = candle_core::utils::get_num_threads().max(1);
        let want = (threads * PIECES_PER_THREAD).div_ceil(items);
        let bands = want.min(m.div_ceil(MIN_BAND_ROWS)).max(1);
        let band = m.div_ceil(bands);
        let bands = m.div_ceil(band);
        let ptr = super::SharedMut(out.as_mut_ptr());
        let piece = |p: usize| {
            let ptr = ptr;
            let (item, r0) = (p / bands, (p % bands) * band);
            let rows = band.min(m - r0);
            let a0 = offs_a[item] + r0 * sa[r - 2];
            // SAFETY: the layouts were checked by candle against their storages, so every
            // element `a0 + i a_rs + j a_cs` (i < rows, j < k) and `offs_b + j b_rs + c b_cs`
            // lies inside `a` and `b`; this piece writes rows `r0 .. r0 + rows` of item `item`
            // of the contiguous output and no other piece does.
            unsafe {
                gemm::gemm(
                    rows,
                    n,
                    k,
                    ptr.0.add(item * m * n + r0 * n),
                    1,
                    n as isize,
                    false,
                    a.as_ptr().add(a0),
                    a_cs,
                    a_rs,
                    b.as_ptr().add(offs_b[item]),
                    b_cs,
                    b_rs,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                )
            }
        };
        candle_core::utils::barrier_pool().execute_chunked(items * bands, |range| {
            for p in range {
                piece(p)
            }
        });
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn ramp(shape: &[usize], seed: f32) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| (i as f32 * 0.37 + seed).sin() * 2.0)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu)
    }

    /// Each output element is one `gemm` dot product either way; the sums may be ordered
    /// differently from candle's blocked call, so compare to a few ulps of the magnitude.
    fn close(x: &Tensor, y: &Tensor) -> Result<()> {
        assert_eq!(x.dims(), y.dims());
        let diff = (x - y)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let scale = y.abs()?.max_all()?.to_scalar::<f32>()?.max(1.0);
        assert!(diff <= 1e-5 * scale, "{diff} of {scale}");
        Ok(())
    }

    #[test]
    fn agrees_with_candles_matmul_on_views_and_bands() -> Result<()> {
        // Attention's shapes: (b, kv, rows, d) x (b, kv, keys, d)ᵀ over a narrowed cache, then
        // the probabilities x V; rows from 1 (one band) to 70 (several bands of an item).
        for rows in [1usize, 5, 70] {
            let q = ramp(&[2, 3, rows, 16], 0.1)?;
            let cache = ramp(&[2, 3, 40, 16], 0.7)?;
            let k = cache.narrow(2, 0, 33)?;
            let kt = k.t()?;
            close(&matmul(&q, &kt)?, &q.matmul(&kt)?)?;
            let p = candle_nn::ops::softmax_last_dim(&q.matmul(&kt)?)?;
            close(&matmul(&p, &k)?, &p.matmul(&k)?)?;
        }
        // A permuted (non-contiguous) left side and a rank-3 product.
        let x = ramp(&[4, 6, 8], 0.3)?.transpose(0, 1)?;
        let y = ramp(&[6, 8, 5], 0.9)?;
        close(&matmul(&x, &y)?, &x.matmul(&y)?)?;
        Ok(())
    }

    #[test]
    fn other_dtypes_and_mismatched_shapes_take_candles_path_or_fail() -> Result<()> {
        let a = ramp(&[2, 4, 8], 0.2)?;
        let b = ramp(&[2, 8, 3], 0.4)?;
        let (ah, bh) = (
            a.to_dtype(candle_core::DType::F16)?,
            b.to_dtype(candle_core::DType::F16)?,
        );
        let got = matmul(&ah, &bh)?.to_dtype(candle_core::DType::F32)?;
        let want = ah.matmul(&bh)?.to_dtype(candle_core::DType::F32)?;
        assert_eq!(got.to_vec3::<f32>()?, want.to_vec3::<f32>()?);
        // Batch dims that differ are an error, as in candle.
        let c = ramp(&[3, 8, 3], 0.4)?;
        assert!(matmul(&a, &c).is_err());
        assert_eq!(matmul(&a, &b)?.dims(), &[2, 4, 3]);
        Ok(())
    }
}
