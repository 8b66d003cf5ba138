//! Matrix-vector products of quantized weights (`Q4_K`, `Q6_K`, and `Q8_0`, `Q5_0` where a
//! GGUF's rows are no multiple of 256 wide) with a few rows of activations, on the CPU: the
//! decode step's projections.
//!
//! Why our own: a decode step reads every weight once and does little else, so its speed is
//! the rate at which the weights stream from memory. candle's x86 path repacks `Q4_K` into
//! tiles with unpacked `f32` scales (6 bits per weight instead of 4.5) and keeps `Q6_K` at one
//! row on its AVX2 `vec_dot` (and `Q8_0`/`Q5_0` at widths like the 0.5B's 896 on one dot
//! product per row and column). Here the kernels read the GGUF blocks in place (the bytes the
//! file mapped, nothing repacked), quantize the activations once per call to 8 bits, and sum
//! each block's products exactly in integers on the widest units the CPU has (AVX-512 VNNI,
//! else AVX2; chosen at run time). The same scheme as llama.cpp's CPU kernels, written here.
//!
//! [`matmul`] takes small row counts ([`MAX_ROWS`]: a decode step), and [`matmul_packed`]
//! the same for `Q8_0` on a repacked copy ([`Packed8`]). A prefill chunk reuses each weight
//! across hundreds of rows: through `Q8_0` it runs the 8-bit GEMM of `prefill`
//! ([`matmul_chunk`]); through the k-quants it stays on candle's tiled kernels, which measured
//! faster than a GEMM of ours at the job's 3-4k-token prompts (README, the CPU engine).
//!
//! Numbers: activations are rounded to 8 bits per block exactly as candle rounds them (ggml's
//! rules), and each block's integer sum is exact, so results differ from candle's kernels only
//! in the order `f32` partial sums are added.

mod blocks;
mod packed;
mod prefill;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use blocks::{Kind, Q8Rows};
pub use packed::{Packed8, PackedRows};

use blocks::{q4k_block_dot, q5_0_block_dot, q6k_block_dot, q8_0_block_dot};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Result, Tensor};

/// The most activation rows one call takes (a decode step of that many sequences). Above it
/// the weights are reused enough for candle's tiled kernels to win.
pub const MAX_ROWS: usize = 16;

/// Output rows per unit of work handed to a thread.
const ROWS_PER_TASK: usize = 32;

/// The SIMD level the kernels run at on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// AVX-512 F, BW, VL and VNNI (with AVX2, FMA, F16C).
    Avx512,
    /// AVX2, FMA and F16C.
    Avx2,
    /// Neither: the scalar definition (tests), or candle's kernels in a run.
    Scalar,
}

/// What this CPU runs (detected once). `PARAMX_QGEMV=off` in the environment turns the
/// kernels off (candle's path everywhere), so a benchmark can compare both in one binary.
pub fn level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        if std::env::var("PARAMX_QGEMV").is_ok_and(|v| v == "off" || v == "0") {
            return Level::Scalar;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let base = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            if base
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni")
            {
                return Level::Avx512;
            }
            if base {
                return Level::Avx2;
            }
        }
        Level::Scalar
    })
}

/// The kernel kind for a GGML type, if there is one.
pub fn kind_of(dtype: GgmlDType) -> Option<Kind> {
    match dtype {
        GgmlDType::Q4K => Some(Kind::Q4K),
        GgmlDType::Q6K => Some(Kind::Q6K),
        GgmlDType::Q8_0 => Some(Kind::Q8_0),
        GgmlDType::Q5_0 => Some(Kind::Q5_0),
        _ => None,
    }
}

/// `x Wᵀ` for a quantized `W` (`(n, k)`) and `x` (`(..., k)`, `f32`, on the CPU) when this
/// module has a SIMD kernel for it and `x` holds at most [`MAX_ROWS`] rows; `None` otherwise
/// (the caller takes candle's path).
pub fn matmul(w: &QTensor, x: &Tensor) -> Result<Option<Tensor>> {
    let Some(kind) = kind_of(w.dtype()) else {
        return Ok(None);
    };
    if level() == Level::Scalar || !matches!(x.device(), Device::Cpu) || x.dtype() != DType::F32 {
        return Ok(None);
    }
    let (n, k) = w.shape().dims2()?;
    let dims = x.dims();
    if k % kind.block_len() != 0 || dims.last() != Some(&k) {
        return Ok(None);
    }
    let m = x.elem_count() / k;
    if m == 0 || m > MAX_ROWS {
        return Ok(None);
    }
    let bytes = w.data()?;
    if bytes.len() != n * (k / kind.block_len()) * kind.block_bytes() {
        candle_core::bail!(
            "qgemv: a {kind:?} weight of shape ({n}, {k}) has {} bytes",
            bytes.len()
        )
    }
    let xs = x.flatten_all()?.to_vec1::<f32>()?;
    let a = Q8Rows::quantize(&xs, m, kind);
    let mut out = vec![0f32; m * n];
    gemv(kind, &bytes, n, &a, &mut out, level());
    let mut shape = dims.to_vec();
    if let Some(last) = shape.last_mut() {
        *last = n;
    }
    Tensor::from_vec(out, shape, &Device::Cpu).map(Some)
}

/// Whether a `Q8_0` weight of `k` columns is worth repacking ([`Packed8`]) for decode on this
/// CPU: only where the packed kernel runs (AVX-512 VNNI) and `k` is whole blocks.
pub fn packs_q8_0(k: usize) -> bool {
    level() == Level::Avx512 && k.is_multiple_of(blocks::QK32)
}

/// `x Wᵀ` for a `Q8_0` weight (GGUF blocks) and a prefill chunk `x` (`(..., k)`, `f32`, on
/// the CPU), on AVX-512 VNNI (see `prefill`); `None` otherwise (the caller takes the dense
/// path).
///
/// Any row count: the caller chooses by tokens per sequence, never by the rows of the whole
/// batch, and each row's result does not depend on the rows beside it (per-row scales, lanes
/// summed in block order). A sequence prefilled alone and the same sequence inside a batch
/// of sequences therefore get the same numbers, and the same greedy tokens.
pub fn matmul_chunk(w: &QTensor, x: &Tensor) -> Result<Option<Tensor>> {
    if w.dtype() != GgmlDType::Q8_0
        || level() != Level::Avx512
        || !matches!(x.device(), Device::Cpu)
        || x.dtype() != DType::F32
    {
        return Ok(None);
    }
    let (n, k) = w.shape().dims2()?;
    let dims = x.dims();
    if !k.is_multiple_of(blocks::QK32) || dims.last() != Some(&k) {
        return Ok(None);
    }
    let m = x.elem_count() / k;
    if m == 0 {
        return Ok(None);
    }
    let bytes = w.data()?;
    if bytes.len() != n * (k / blocks::QK32) * blocks::Q8_0_BYTES {
        candle_core::bail!(
            "qgemv: a Q8_0 weight of shape ({n}, {k}) has {} bytes",
            bytes.len()
        )
    }
    let xs = x.flatten_all()?.to_vec1::<f32>()?;
    let a = prefill::TiledRows::quantize(&xs, m, k);
    let mut out = vec![0f32; m * n];
    prefill::gemm(&bytes, n, &a, &mut out, true);
    let mut shape = dims.to_vec();
    if let Some(last) = shape.last_mut() {
        *last = n;
    }
    Tensor::from_vec(out, shape, &Device::Cpu).map(Some)
}

/// `x Wᵀ` for a repacked `Q8_0` weight `w` ([`Packed8`]) and `x` (`(..., k)`, `f32`, on the
/// CPU) of at most [`MAX_ROWS`] rows, on AVX-512 VNNI; `None` otherwise (the caller takes the
/// weight's other path).
pub fn matmul_packed(w: &Packed8, x: &Tensor) -> Result<Option<Tensor>> {
    if level() != Level::Avx512 || !matches!(x.device(), Device::Cpu) || x.dtype() != DType::F32 {
        return Ok(None);
    }
    let (n, k) = (w.rows(), w.width());
    let dims = x.dims();
    if dims.last() != Some(&k) {
        return Ok(None);
    }
    let m = x.elem_count() / k;
    if m == 0 || m > MAX_ROWS {
        return Ok(None);
    }
    let xs = x.flatten_all()?.to_vec1::<f32>()?;
    let a = PackedRows::quantize(&xs, m, k);
    let mut out = vec![0f32; m * n];
    gemv_packed(w, &a, &mut out, level());
    let mut shape = dims.to_vec();
    if let Some(last) = shape.last_mut() {
        *last = n;
    }
    Tensor::from_vec(out, shape, &Device::Cpu).map(Some)
}

/// [`gemv`] for a repacked `Q8_0` weight: `out[i, r] = Σ W[r, ·] x[i, ·]`, on candle's pool.
/// Below [`Level::Avx512`] the scalar definition (tests).
pub fn gemv_packed(w: &Packed8, a: &PackedRows, out: &mut [f32], level: Level) {
    let (n, m) = (w.rows(), a.rows());
    assert_eq!(out.len(), m * n, "qgemv: output size");
    let ptr = OutPtr(out.as_mut_ptr());
    let work = |range: std::ops::Range<usize>| {
        let ptr = ptr;
        for t in range {
            for r in t * ROWS_PER_TASK..((t + 1) * ROWS_PER_TASK).min(n) {
                let mut i0 = 0;
                while i0 < m {
                    let group = (m - i0).min(GROUP);
                    let mut vals = [0f32; GROUP];
                    packed_rows_dot(w, r, a, i0, group, level, &mut vals);
                    for (j, &v) in vals[..group].iter().enumerate() {
                        // SAFETY: `i0 + j < m`, `r < n`: inside `out`; row `r` is this task's.
                        unsafe { *ptr.0.add((i0 + j) * n + r) = v };
                    }
                    i0 += group;
                }
            }
        }
    };
    candle_core::utils::barrier_pool().execute_chunked(n.div_ceil(ROWS_PER_TASK), work);
}

/// One packed weight row times activation rows `i0 .. i0 + group`, into `out[..group]`.
fn packed_rows_dot(
    w: &Packed8,
    r: usize,
    a: &PackedRows,
    i0: usize,
    group: usize,
    level: Level,
    out: &mut [f32; GROUP],
) {
    #[cfg(target_arch = "x86_64")]
    if level == Level::Avx512 {
        // SAFETY: `Level::Avx512` is only detected on CPUs with every feature the kernel
        // enables; `r < n` and `i0 + group <= m` by the caller; `w` and `a` share `k`.
        unsafe {
            match group {
                1 => out[..1].copy_from_slice(&packed::rows_avx512::<1>(w, r, a, i0)),
                2 => out[..2].copy_from_slice(&packed::rows_avx512::<2>(w, r, a, i0)),
                3 => out[..3].copy_from_slice(&packed::rows_avx512::<3>(w, r, a, i0)),
                _ => out.copy_from_slice(&packed::rows_avx512::<4>(w, r, a, i0)),
            }
        }
        return;
    }
    for (j, o) in out[..group].iter_mut().enumerate() {
        *o = packed::row_dot_scalar(w, r, a, i0 + j);
    }
}

/// The output pointer shared by the workers; each writes only its own rows' columns.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: workers write disjoint elements (their own output rows), and the call that owns the
// buffer waits for all of them.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// `out[i, r] = Σ W[r, ·] x[i, ·]` for the `n` rows of `w` (`kind` blocks) and the rows of `a`,
/// split over candle's worker threads (the pool the rest of a step uses, so nothing else
/// spins beside it).
pub fn gemv(kind: Kind, w: &[u8], n: usize, a: &Q8Rows, out: &mut [f32], level: Level) {
    assert_eq!(out.len(), a.m * n, "qgemv: output size");
    let row_bytes = a.blocks * kind.block_bytes();
    assert!(w.len() >= n * row_bytes, "qgemv: weight size");
    let ptr = OutPtr(out.as_mut_ptr());
    let tasks = n.div_ceil(ROWS_PER_TASK);
    let work = |range: std::ops::Range<usize>| {
        let ptr = ptr;
        for t in range {
            for r in t * ROWS_PER_TASK..((t + 1) * ROWS_PER_TASK).min(n) {
                let row = &w[r * row_bytes..(r + 1) * row_bytes];
                let mut i0 = 0;
                while i0 < a.m {
                    let group = (a.m - i0).min(GROUP);
                    let mut vals = [0f32; GROUP];
                    rows_dot(kind, row, a, i0, group, level, &mut vals);
                    for (j, &v) in vals[..group].iter().enumerate() {
                        // SAFETY: `i0 + j < m`, `r < n`: inside `out`; row `r` is this task's.
                        unsafe { *ptr.0.add((i0 + j) * n + r) = v };
                    }
                    i0 += group;
                }
            }
        }
    };
    candle_core::utils::barrier_pool().execute_chunked(tasks, work);
}

/// Activation rows one kernel call takes: the weights are unpacked once per block for them.
const GROUP: usize = 4;

/// One weight row times activation rows `i0 .. i0 + group` (`group <= GROUP`), at `level`,
/// into `out[..group]`.
fn rows_dot(
    kind: Kind,
    row: &[u8],
    a: &Q8Rows,
    i0: usize,
    group: usize,
    level: Level,
    out: &mut [f32; GROUP],
) {
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! call {
            ($f:ident) => {{
                // SAFETY: `level` is what `level()` detected (or lower), so the CPU has the
                // kernel's features; `row` holds `a.blocks` blocks of `kind` (checked by
                // `gemv`) and `i0 + group <= a.m`.
                unsafe {
                    match group {
                        1 => out[..1].copy_from_slice(&x86::$f::<1>(row, a, i0)),
                        2 => out[..2].copy_from_slice(&x86::$f::<2>(row, a, i0)),
                        3 => out[..3].copy_from_slice(&x86::$f::<3>(row, a, i0)),
                        _ => out.copy_from_slice(&x86::$f::<4>(row, a, i0)),
                    }
                }
                return;
            }};
        }
        match (level, kind) {
            (Level::Avx512, Kind::Q4K) => call!(q4k_rows_avx512),
            (Level::Avx512, Kind::Q6K) => call!(q6k_rows_avx512),
            (Level::Avx2, Kind::Q4K) => call!(q4k_rows_avx2),
            (Level::Avx2, Kind::Q6K) => call!(q6k_rows_avx2),
            // 32-weight blocks: one 256-bit register each; the AVX2 kernels serve both levels.
            (Level::Avx512 | Level::Avx2, Kind::Q8_0) => call!(q8_0_rows_avx2),
            (Level::Avx512 | Level::Avx2, Kind::Q5_0) => call!(q5_0_rows_avx2),
            (Level::Scalar, _) => {}
        }
    }
    for (j, o) in out[..group].iter_mut().enumerate() {
        *o = row_dot_scalar(kind, row, a, i0 + j);
    }
}

/// The scalar definition every kernel is held to.
fn row_dot_scalar(kind: Kind, row: &[u8], a: &Q8Rows, i: usize) -> f32 {
    let bb = kind.block_bytes();
    let mut sum = 0f32;
    for b in 0..a.blocks {
        let wb = &row[b * bb..(b + 1) * bb];
        let bi = i * a.blocks + b;
        sum += match kind {
            Kind::Q4K => q4k_block_dot(wb, a, bi),
            Kind::Q6K => q6k_block_dot(wb, a, bi),
            Kind::Q8_0 => q8_0_block_dot(wb, a, bi),
            Kind::Q5_0 => q5_0_block_dot(wb, a, bi),
        };
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QMatMul;
    use candle_core::Module;

    /// A weight `(n, k)` and activations `(m, k)` with a spread of magnitudes and signs.
    fn data(n: usize, k: usize, m: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut s = seed;
        let mut next = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        };
        let w = (0..n * k)
            .map(|i| next() * (1.0 + (i % 7) as f32))
            .collect();
        let x = (0..m * k).map(|_| next() * 3.0).collect();
        (w, x)
    }

    const KINDS: [GgmlDType; 4] = [
        GgmlDType::Q4K,
        GgmlDType::Q6K,
        GgmlDType::Q8_0,
        GgmlDType::Q5_0,
    ];

    fn levels() -> Vec<Level> {
        match level() {
            Level::Avx512 => vec![Level::Scalar, Level::Avx2, Level::Avx512],
            Level::Avx2 => vec![Level::Scalar, Level::Avx2],
            Level::Scalar => vec![Level::Scalar],
        }
    }

    #[test]
    fn every_level_and_row_group_matches_the_scalar_definition() -> Result<()> {
        // 7 rows: groups of 4 and 3. The kernels add the same integer block sums in f32 lanes
        // instead of one running sum: relative differences of a few f32 ulps of the row's
        // magnitude.
        let (n, k, m) = (40, 3 * 256, 7);
        let (w, x) = data(n, k, m, 7);
        for dtype in KINDS {
            let wt = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu)?;
            let q = QTensor::quantize(&wt, dtype)?;
            let bytes = q.data()?;
            let kind = kind_of(dtype).expect("a k-quant");
            let a = Q8Rows::quantize(&x, m, kind);
            let mut want = vec![0f32; m * n];
            gemv(kind, &bytes, n, &a, &mut want, Level::Scalar);
            let scale = want.iter().map(|v| v.abs()).fold(0f32, f32::max);
            for lv in levels() {
                let mut got = vec![0f32; m * n];
                gemv(kind, &bytes, n, &a, &mut got, lv);
                for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-5 * scale,
                        "{dtype:?} at {lv:?}, {j}: {g} vs {w}"
                    );
                }
                // Each row alone gives the same numbers as inside a group.
                let one = Q8Rows::quantize(&x[k..2 * k], 1, kind);
                let mut alone = vec![0f32; n];
                gemv(kind, &bytes, n, &one, &mut alone, lv);
                assert_eq!(
                    &alone[..],
                    &got[n..2 * n],
                    "{dtype:?} at {lv:?}: row 1 alone"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn packed_q8_0_gives_the_gguf_kernels_numbers_bit_for_bit() -> Result<()> {
        // 28 blocks (the 0.5B's width 896) and 3 (an odd count: one padded block); 7 rows:
        // groups of 4 and 3.
        for (n, k, m) in [(40, 896, 7), (9, 96, 2)] {
            let (w, x) = data(n, k, m, 5);
            let q =
                QTensor::quantize(&Tensor::from_vec(w, (n, k), &Device::Cpu)?, GgmlDType::Q8_0)?;
            let bytes = q.data()?;
            let packed = Packed8::from_q8_0(&bytes, n, k).expect("whole blocks");
            let rows = PackedRows::quantize(&x, m, k);
            let a = Q8Rows::quantize(&x, m, Kind::Q8_0);
            let mut want = vec![0f32; m * n];
            gemv(Kind::Q8_0, &bytes, n, &a, &mut want, level());
            let scale = want.iter().map(|v| v.abs()).fold(0f32, f32::max);
            for lv in levels() {
                let mut got = vec![0f32; m * n];
                gemv_packed(&packed, &rows, &mut got, lv);
                if lv == Level::Avx512 {
                    // The same lanes, scales and order of additions as the GGUF-layout kernel.
                    assert_eq!(got, want, "k={k}");
                } else {
                    // The scalar definition adds whole blocks in one running sum.
                    for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - w).abs() <= 1e-5 * scale,
                            "k={k} at {lv:?}, {j}: {g} vs {w}"
                        );
                    }
                }
            }
        }
        // Not whole blocks, or not the bytes of that shape: no packing.
        assert!(Packed8::from_q8_0(&[0; 34], 1, 33).is_none());
        assert!(Packed8::from_q8_0(&[0; 33], 1, 32).is_none());
        Ok(())
    }

    #[test]
    fn q8_0_prefill_gemm_matches_its_scalar_definition_and_the_dense_product() -> Result<()> {
        // 37 rows: two full tiles and a ragged one; 13 weight rows: a unit of 8 and one of 5.
        let (n, k, m) = (13, 96, 37);
        let (w, x) = data(n, k, m, 9);
        let q = QTensor::quantize(&Tensor::from_vec(w, (n, k), &Device::Cpu)?, GgmlDType::Q8_0)?;
        let bytes = q.data()?;
        let a = prefill::TiledRows::quantize(&x, m, k);
        let mut want = vec![0f32; m * n];
        prefill::gemm(&bytes, n, &a, &mut want, false);
        // The scalar definition against the dequantized weights and unrounded activations:
        // only the activations' 8-bit rounding differs.
        let xt = Tensor::from_vec(x.clone(), (m, k), &Device::Cpu)?;
        let dense: Vec<f32> = xt
            .matmul(&q.dequantize(&Device::Cpu)?.t()?)?
            .flatten_all()?
            .to_vec1()?;
        let scale = dense.iter().map(|v| v.abs()).fold(0f32, f32::max);
        for (g, d) in want.iter().zip(&dense) {
            assert!((g - d).abs() <= 1e-2 * scale, "{g} vs {d}");
        }
        if level() == Level::Avx512 {
            let mut got = vec![0f32; m * n];
            prefill::gemm(&bytes, n, &a, &mut got, true);
            // Exact integer sums, one fused multiply-add per block instead of two roundings.
            for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= 1e-5 * scale, "{j}: {g} vs {w}");
            }
            let xt3 = Tensor::from_vec(x.clone(), (1, m, k), &Device::Cpu)?;
            let y = matmul_chunk(&q, &xt3)?.expect("a chunk of 37 rows");
            assert_eq!(y.dims(), &[1, m, n]);
            assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, got);
            // Each row alone (one partial tile) gives its numbers inside the chunk, bit for
            // bit: a sequence's tokens do not depend on the batch it is prefilled in.
            for i in [0, 17, m - 1] {
                let row =
                    Tensor::from_vec(x[i * k..(i + 1) * k].to_vec(), (1, 1, k), &Device::Cpu)?;
                let alone = matmul_chunk(&q, &row)?.expect("one row");
                assert_eq!(
                    alone.flatten_all()?.to_vec1::<f32>()?,
                    got[i * n..(i + 1) * n]
                );
            }
        }
        Ok(())
    }

    #[test]
    fn the_scalar_definition_is_the_dequantized_product() -> Result<()> {
        // Against the dequantized weights times the unquantized activations: the only
        // difference is the activations' 8-bit rounding (relative error ~1/254 per value).
        let (n, k, m) = (24, 2 * 256, 2);
        let (w, x) = data(n, k, m, 11);
        for dtype in KINDS {
            let wt = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu)?;
            let q = QTensor::quantize(&wt, dtype)?;
            let deq = q.dequantize(&Device::Cpu)?;
            let xt = Tensor::from_vec(x.clone(), (m, k), &Device::Cpu)?;
            let want: Vec<f32> = xt.matmul(&deq.t()?)?.flatten_all()?.to_vec1()?;
            let kind = kind_of(dtype).expect("a k-quant");
            let a = Q8Rows::quantize(&x, m, kind);
            let mut got = vec![0f32; m * n];
            gemv(kind, &q.data()?, n, &a, &mut got, Level::Scalar);
            let scale = want.iter().map(|v| v.abs()).fold(0f32, f32::max);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-2 * scale, "{dtype:?}: {g} vs {w}");
            }
        }
        Ok(())
    }

    #[test]
    fn matmul_agrees_with_candles_kernels_and_declines_what_it_has_no_kernel_for() -> Result<()> {
        let (n, k) = (64, 4 * 256);
        let (w, x) = data(n, k, 4, 3);
        let wt = Tensor::from_vec(w, (n, k), &Device::Cpu)?;
        for dtype in KINDS {
            let q = QTensor::quantize(&wt, dtype)?;
            for m in [1usize, 4] {
                let xt = Tensor::from_vec(x[..m * k].to_vec(), (1, m, k), &Device::Cpu)?;
                let Some(ours) = matmul(&q, &xt)? else {
                    assert_eq!(level(), Level::Scalar, "a SIMD CPU takes the kernel");
                    continue;
                };
                assert_eq!(ours.dims(), &[1, m, n]);
                let theirs = QMatMul::from_qtensor(QTensor::quantize(&wt, dtype)?)?.forward(&xt)?;
                let diff = (&ours - &theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
                let scale = theirs.abs()?.max_all()?.to_scalar::<f32>()?;
                // k-quants: the same integers, only the order of f32 additions differs. Q8_0 and
                // Q5_0: candle's repacked path rounds these activations per 256 values (Q8_K),
                // ggml's and ours per 32 (Q8_0): two roundings of the same product.
                let tol = if kind_of(dtype).is_some_and(|k| k.block_len() == 32) {
                    2e-2
                } else {
                    1e-5
                };
                assert!(diff <= tol * scale, "{dtype:?} m={m}: {diff} of {scale}");
            }
        }
        // No kernel: another type, too many rows.
        let q4_0 = QTensor::quantize(&wt, GgmlDType::Q4_0)?;
        let x1 = Tensor::zeros((1, k), DType::F32, &Device::Cpu)?;
        assert!(matmul(&q4_0, &x1)?.is_none());
        let q4 = QTensor::quantize(&wt, GgmlDType::Q4K)?;
        let many = Tensor::zeros((MAX_ROWS + 1, k), DType::F32, &Device::Cpu)?;
        assert!(matmul(&q4, &many)?.is_none());
        Ok(())
    }
}
