//! `Q8_0` weights repacked once for AVX-512 VNNI decode (the 0.5B's projections, whose
//! 896-wide rows get no k-quant, and every model's `Q8_0` output layer).
//!
//! Why a second layout: in the GGUF a `Q8_0` block is an `f16` scale and 32 signed bytes, 34
//! bytes in all, so the kernel on the file's blocks ([`super::x86::q8_0_rows_avx2`]) loads
//! 32 bytes at odd offsets, converts one scale, and moves each weight's sign onto its
//! activation before `maddubs` (unsigned × signed) and a widening `madd`: it was the limit of
//! a 0.5B decode step on one core (65% of a `perf` profile). Here a row is its weights as
//! contiguous offset bytes (`q + 128`, so VNNI's `dpbusd`, unsigned × signed, takes them as
//! they are, two blocks per instruction) and its scales as `f32`. The offset is taken back
//! exactly: `Σ (q + 128)·x = Σ q·x + 128·Σ x`, with the `Σ x` of each lane's four activations
//! computed once per call.
//!
//! Same numbers as the GGUF-layout kernel, bit for bit: each `dpbusd` lane is the exact sum
//! of the same four products that kernel's `madd` lane holds, and the lanes are converted,
//! scaled by the same `f32` product `d_w · d_x` and added in the same block order into eight
//! `f32` lanes, summed the same way at the end. A kernel change must not change a greedy
//! token (issue #18); this one cannot. Rows are padded to whole pairs of blocks with zero
//! weights, zero activations and a zero scale, which add exact zeros.

use super::blocks::{Q8Rows, Q8_0_BYTES, QK32};
use super::Kind;
use half::f16;

/// Weights per 512-bit register: two blocks.
const PAIR: usize = 2 * QK32;
/// Products per `dpbusd` lane.
const LANE: usize = 4;

/// A `Q8_0` matrix `(n, k)` in the decode layout: per row, `kp` offset bytes (`k` rounded up
/// to whole pairs of blocks) and `kp / 32` `f32` scales.
#[derive(Debug)]
pub struct Packed8 {
    n: usize,
    k: usize,
    kp: usize,
    qs: Vec<u8>,
    scales: Vec<f32>,
}

impl Packed8 {
    /// Repacks the GGUF bytes of a `Q8_0` matrix of `n` rows of `k` weights; `None` when `k`
    /// is no whole number of blocks or the bytes are not `n` such rows.
    pub fn from_q8_0(bytes: &[u8], n: usize, k: usize) -> Option<Packed8> {
        if k == 0 || !k.is_multiple_of(QK32) || bytes.len() != n * (k / QK32) * Q8_0_BYTES {
            return None;
        }
        let kp = k.div_ceil(PAIR) * PAIR;
        let (blocks, blocks_p) = (k / QK32, kp / QK32);
        let mut qs = vec![128u8; n * kp];
        let mut scales = vec![0f32; n * blocks_p];
        for r in 0..n {
            for b in 0..blocks {
                let at = (r * blocks + b) * Q8_0_BYTES;
                let src = &bytes[at..at + Q8_0_BYTES];
                scales[r * blocks_p + b] = f16::from_le_bytes([src[0], src[1]]).to_f32();
                let dst = &mut qs[r * kp + b * QK32..r * kp + (b + 1) * QK32];
                for (o, &q) in dst.iter_mut().zip(&src[2..]) {
                    *o = (q as i8 as i16 + 128) as u8;
                }
            }
        }
        Some(Packed8 {
            n,
            k,
            kp,
            qs,
            scales,
        })
    }

    /// Output rows.
    pub fn rows(&self) -> usize {
        self.n
    }

    /// Input width.
    pub fn width(&self) -> usize {
        self.k
    }
}

/// Activation rows for [`Packed8`]: the `Q8_0` quantization of [`Q8Rows`] (the same bytes and
/// scales), padded to whole pairs of blocks, with `128 · Σ` of each lane's four values.
pub struct PackedRows {
    m: usize,
    kp: usize,
    qs: Vec<i8>,
    /// `128 · Σ x` per four values (one `dpbusd` lane).
    offsets: Vec<i32>,
    /// One scale per block.
    d: Vec<f32>,
}

impl PackedRows {
    /// Quantizes `m` rows of `k` values (`x`, row-major) as [`Q8Rows`] does for `Q8_0`.
    pub fn quantize(x: &[f32], m: usize, k: usize) -> PackedRows {
        let q = Q8Rows::quantize(x, m, Kind::Q8_0);
        let kp = k.div_ceil(PAIR) * PAIR;
        let (blocks, blocks_p) = (k / QK32, kp / QK32);
        let mut out = PackedRows {
            m,
            kp,
            qs: vec![0; m * kp],
            offsets: vec![0; m * kp / LANE],
            d: vec![0.0; m * blocks_p],
        };
        for r in 0..m {
            let src = &q.qs[r * blocks * QK32..(r + 1) * blocks * QK32];
            out.qs[r * kp..r * kp + src.len()].copy_from_slice(src);
            for (o, four) in out.offsets[r * kp / LANE..]
                .iter_mut()
                .zip(src.chunks_exact(LANE))
            {
                *o = 128 * four.iter().map(|&v| v as i32).sum::<i32>();
            }
            out.d[r * blocks_p..r * blocks_p + blocks]
                .copy_from_slice(&q.d[r * blocks..(r + 1) * blocks]);
        }
        out
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.m
    }
}

/// The scalar definition: weight row `r` times activation row `i`; each block's sum exact in
/// integers, scaled by `d_w · d_x` and added in `f32` in block order.
pub fn row_dot_scalar(w: &Packed8, r: usize, a: &PackedRows, i: usize) -> f32 {
    let blocks_p = w.kp / QK32;
    let mut sum = 0f32;
    for b in 0..blocks_p {
        let wq = &w.qs[r * w.kp + b * QK32..r * w.kp + (b + 1) * QK32];
        let xq = &a.qs[i * a.kp + b * QK32..i * a.kp + (b + 1) * QK32];
        let offset: i32 = a.offsets[(i * a.kp + b * QK32) / LANE..][..QK32 / LANE]
            .iter()
            .sum();
        let dot: i32 = wq.iter().zip(xq).map(|(&u, &x)| u as i32 * x as i32).sum();
        sum += (dot - offset) as f32 * (w.scales[r * blocks_p + b] * a.d[i * blocks_p + b]);
    }
    sum
}

/// One weight row times activation rows `i0 .. i0 + R`, AVX-512 VNNI.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VL, VNNI and FMA; `r < w.n`, `i0 + R <= a.m`, and
/// `w`, `a` of the same padded width.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma")]
pub unsafe fn rows_avx512<const R: usize>(
    w: &Packed8,
    r: usize,
    a: &PackedRows,
    i0: usize,
) -> [f32; R] {
    use std::arch::x86_64::*;
    debug_assert!(r < w.n && i0 + R <= a.m && w.kp == a.kp);
    // SAFETY (whole body): every load reads inside row `r` of `w` (`kp` bytes, `kp / 32`
    // scales) or rows `i0 .. i0 + R` of `a`, by the caller's contract; prefetches never fault.
    unsafe {
        let blocks_p = w.kp / QK32;
        let wq = w.qs.as_ptr().add(r * w.kp);
        let ws = w.scales.as_ptr().add(r * blocks_p);
        let mut acc = [_mm256_setzero_ps(); R];
        for p in 0..w.kp / PAIR {
            let wp = wq.add(p * PAIR);
            _mm_prefetch(wp.wrapping_add(PREFETCH) as *const i8, _MM_HINT_T0);
            let wv = _mm512_loadu_si512(wp as *const __m512i);
            let (dw0, dw1) = (*ws.add(2 * p), *ws.add(2 * p + 1));
            for (j, acc) in acc.iter_mut().enumerate() {
                let i = i0 + j;
                let at = i * a.kp + p * PAIR;
                let x = _mm512_loadu_si512(a.qs.as_ptr().add(at) as *const __m512i);
                let off = _mm512_loadu_si512(a.offsets.as_ptr().add(at / LANE) as *const __m512i);
                let lanes =
                    _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, x), off);
                let f = _mm512_cvtepi32_ps(lanes);
                let d = a.d.as_ptr().add(i * blocks_p + 2 * p);
                *acc = _mm256_fmadd_ps(_mm512_castps512_ps256(f), _mm256_set1_ps(dw0 * *d), *acc);
                let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(f)));
                *acc = _mm256_fmadd_ps(high, _mm256_set1_ps(dw1 * *d.add(1)), *acc);
            }
        }
        std::array::from_fn(|j| {
            let v = acc[j];
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
        })
    }
}

/// How far ahead of the pair being read the weight stream is prefetched (as the GGUF-layout
/// kernels do: one core's hardware prefetcher alone kept too few lines in flight).
#[cfg(target_arch = "x86_64")]
const PREFETCH: usize = 3072;
