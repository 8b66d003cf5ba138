//! The x86 kernels: one weight row (`Q4_K` or `Q6_K` blocks, read in place) times `R` rows of
//! 8-bit activations, on AVX-512 (BW + VNNI, 64 weights per instruction) or AVX2 (32), picked
//! at run time.
//!
//! Per block they do what ggml's kernels do: unpack the 4- or 6-bit weights to bytes once,
//! then for each activation row multiply the bytes and add neighbours to 16 bits (`maddubs`:
//! unsigned weights times signed activations; no saturation at these ranges, at most
//! 2·63·127), multiply by the 16-bit scales and add to 32 bits (`madd`, or VNNI's `dpwssd`,
//! which also accumulates). The block's integer sums are exact; they are scaled to `f32` and
//! added in vector lanes, one horizontal sum per row at the end. Unpacking once for `R` rows is
//! what makes a decode step of several sequences cost little more than one.

use super::blocks::{q4k_scale_words, Q8Rows, QK, QK32};
use super::blocks::{Q4K_BYTES, Q5_0_BYTES, Q6K_BYTES, Q8_0_BYTES};
use std::arch::x86_64::*;

/// i16 lane indexes for `_mm512_permutexvar_epi16`: the first 16 lanes take scale `a`, the
/// last 16 scale `b`.
const fn halves(a: i16, b: i16) -> [i16; 32] {
    let mut v = [a; 32];
    let mut l = 16;
    while l < 32 {
        v[l] = b;
        l += 1;
    }
    v
}

/// i16 lane indexes: four runs of eight lanes taking scales `first .. first + 4`.
const fn quarters(first: i16) -> [i16; 32] {
    let mut v = [0i16; 32];
    let mut l = 0;
    while l < 32 {
        v[l] = first + (l / 8) as i16;
        l += 1;
    }
    v
}

/// `Q4_K`: activation segment s (see `blocks::q4k_slot`) holds subblocks (0,2), (1,3), (4,6),
/// (5,7), 16 lanes each after `maddubs`.
const Q4K_IDX: [[i16; 32]; 4] = [halves(0, 2), halves(1, 3), halves(4, 6), halves(5, 7)];
/// `Q6_K`: the four 64-weight quarters of a block take scales 0-3, 4-7, 8-11, 12-15.
const Q6K_IDX: [[i16; 32]; 4] = [quarters(0), quarters(4), quarters(8), quarters(12)];

/// How far ahead of the block being read the weight stream is prefetched, in bytes. A decode
/// step is one pass over all weights: the hardware prefetcher alone kept too few lines in
/// flight to reach the memory bandwidth on one core.
const PREFETCH: usize = 3072;

/// Asks for the cache lines of the `bytes` at `PREFETCH` past `p` (hints only: never faults,
/// so reading past the weights' end is harmless).
#[inline(always)]
unsafe fn prefetch_ahead(p: *const u8, bytes: usize) {
    let mut off = 0;
    while off < bytes {
        // SAFETY: a prefetch is a hint; it does not access memory architecturally.
        unsafe { _mm_prefetch(p.wrapping_add(PREFETCH + off) as *const i8, _MM_HINT_T0) };
        off += 64;
    }
}

#[inline(always)]
unsafe fn load_idx(v: &[i16; 32]) -> __m512i {
    // SAFETY: 32 i16 are 64 bytes.
    unsafe { _mm512_loadu_si512(v.as_ptr() as *const __m512i) }
}

/// `d` (and `dmin` for `Q4_K`) of the block at `p`, as f32 lanes 0 (and 1).
#[inline(always)]
unsafe fn f16_pair(p: *const u8) -> __m128 {
    // SAFETY: the caller's `p` points at two f16 inside a block; F16C is enabled by every
    // kernel that calls this.
    unsafe { _mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(p as *const i32))) }
}

#[inline(always)]
unsafe fn hsum_ps128(v: __m128) -> f32 {
    // SAFETY: SSE3 is part of every level this module runs at.
    unsafe {
        let s = _mm_add_ps(v, _mm_movehl_ps(v, v));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

#[inline(always)]
unsafe fn hsum_ps256(v: __m256) -> f32 {
    // SAFETY: AVX is part of every level this module runs at.
    unsafe {
        hsum_ps128(_mm_add_ps(
            _mm256_castps256_ps128(v),
            _mm256_extractf128_ps(v, 1),
        ))
    }
}

/// `Σ scale·w·x` of one 256-weight block as sixteen i32 lanes: four 64-byte segments of
/// unpacked weights `w` against the activation block at `xs`, each with its i16 scales.
#[inline(always)]
unsafe fn block_sum_avx512(w: &[__m512i; 4], xs: *const i8, scales: &[__m512i; 4]) -> __m512i {
    // SAFETY: the caller enables AVX-512 BW + VNNI and `xs` points at 256 activation bytes.
    unsafe {
        let mut sum = _mm512_setzero_si512();
        for s in 0..4 {
            let x = _mm512_loadu_si512(xs.add(64 * s) as *const __m512i);
            sum = _mm512_dpwssd_epi32(sum, _mm512_maddubs_epi16(w[s], x), scales[s]);
        }
        sum
    }
}

/// One `Q4_K` weight row times activation rows `i0 .. i0 + R`, AVX-512.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VNNI, FMA and F16C; `w` must hold `a.blocks` `Q4_K`
/// blocks and `a` at least `i0 + R` rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,fma,f16c")]
pub(super) unsafe fn q4k_rows_avx512<const R: usize>(w: &[u8], a: &Q8Rows, i0: usize) -> [f32; R] {
    assert!(w.len() >= a.blocks * Q4K_BYTES && i0 + R <= a.m);
    // SAFETY (whole body): every load reads inside one weight block (144 bytes: d and dmin at
    // 0, qs at 16..144) or one activation block (256 values, 8 sums), which the assert and
    // `Q8Rows`' sizes guarantee.
    unsafe {
        let m4 = _mm512_set1_epi8(0x0F);
        let idx = Q4K_IDX.map(|v| load_idx(&v));
        let mut acc = [_mm512_setzero_ps(); R];
        let mut acc_min = [_mm_setzero_ps(); R];
        for b in 0..a.blocks {
            let wb = &w[b * Q4K_BYTES..(b + 1) * Q4K_BYTES];
            prefetch_ahead(wb.as_ptr(), Q4K_BYTES);
            let words = q4k_scale_words(wb);
            let sm = _mm256_cvtepu8_epi16(_mm_loadu_si128(words.as_ptr() as *const __m128i));
            let scv = _mm512_broadcast_i32x4(_mm256_castsi256_si128(sm));
            let mins = _mm256_extracti128_si256(sm, 1);
            let scales = idx.map(|i| _mm512_permutexvar_epi16(i, scv));
            let q0 = _mm512_loadu_si512(wb.as_ptr().add(16) as *const __m512i);
            let q1 = _mm512_loadu_si512(wb.as_ptr().add(80) as *const __m512i);
            let nib = [
                _mm512_and_si512(q0, m4),
                _mm512_and_si512(_mm512_srli_epi16(q0, 4), m4),
                _mm512_and_si512(q1, m4),
                _mm512_and_si512(_mm512_srli_epi16(q1, 4), m4),
            ];
            let d_dmin = f16_pair(wb.as_ptr());
            for r in 0..R {
                let bi = (i0 + r) * a.blocks + b;
                let sum = block_sum_avx512(&nib, a.qs.as_ptr().add(bi * QK), &scales);
                let f = _mm_mul_ps(d_dmin, _mm_set1_ps(*a.d.get_unchecked(bi)));
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_broadcastss_ps(f), acc[r]);
                acc_min[r] = q4k_mins_sse(mins, a.bsums32.as_ptr().add(bi * 8), f, acc_min[r]);
            }
        }
        std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]) - hsum_ps128(acc_min[r]))
    }
}

/// The `Q4_K` weights' minimum term of one block: `acc + Σ min·Σx · (dmin·dx)`, with the
/// eight i16 mins in `mins`, the block's eight i16 activation sums (per 32 values) at `bsums`,
/// and `f = (d·dx, dmin·dx, …)`. Shared by the AVX-512 and AVX2 kernels.
#[inline(always)]
unsafe fn q4k_mins_sse(mins: __m128i, bsums: *const i16, f: __m128, acc: __m128) -> __m128 {
    // SAFETY: the caller enables AVX2 + FMA and `bsums` points at 8 i16.
    unsafe {
        let bs = _mm_loadu_si128(bsums as *const __m128i);
        let m = _mm_cvtepi32_ps(_mm_madd_epi16(mins, bs));
        _mm_fmadd_ps(m, _mm_permute_ps(f, 0b01_01_01_01), acc)
    }
}

/// The `Q6_K` weights' offset of 32 for one block: `acc + 32·f·Σ scale·Σx`, with the sixteen
/// i16 scales `sc`, the block's sixteen activation sums at `bsums` and `f = d·dx` in lane 0.
#[inline(always)]
unsafe fn q6k_offset_avx2(sc: __m256i, bsums: *const i16, f: __m128, acc: __m256) -> __m256 {
    // SAFETY: the caller enables AVX2 + FMA and `bsums` points at 16 i16.
    unsafe {
        let bs = _mm256_loadu_si256(bsums as *const __m256i);
        let off = _mm256_cvtepi32_ps(_mm256_madd_epi16(sc, bs));
        let f32x = _mm256_broadcastss_ps(_mm_mul_ss(f, _mm_set_ss(32.0)));
        _mm256_fmadd_ps(off, f32x, acc)
    }
}

/// One `Q6_K` weight row times activation rows `i0 .. i0 + R`, AVX-512.
///
/// # Safety
/// As [`q4k_rows_avx512`], for `Q6_K` blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,fma,f16c")]
pub(super) unsafe fn q6k_rows_avx512<const R: usize>(w: &[u8], a: &Q8Rows, i0: usize) -> [f32; R] {
    assert!(w.len() >= a.blocks * Q6K_BYTES && i0 + R <= a.m);
    // SAFETY (whole body): loads stay inside one weight block (ql 0..128, qh 128..192,
    // scales 192..208, d 208..210) or one activation block.
    unsafe {
        let m4 = _mm512_set1_epi8(0x0F);
        let m30 = _mm512_set1_epi8(0x30);
        // qh is read twice over (bytes 0..32 and 32..64 of the register): the first copy
        // gives the low-nibble weights' top bits (0-1, then 2-3), the second the high ones'.
        let shift_lo = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
        let shift_hi = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
        let idx = Q6K_IDX.map(|v| load_idx(&v));
        let mut acc = [_mm512_setzero_ps(); R];
        let mut acc_off = [_mm256_setzero_ps(); R];
        for b in 0..a.blocks {
            let wb = &w[b * Q6K_BYTES..(b + 1) * Q6K_BYTES];
            prefetch_ahead(wb.as_ptr(), Q6K_BYTES);
            let sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(wb.as_ptr().add(192) as *const __m128i));
            let scz = _mm512_broadcast_i64x4(sc);
            let scales = idx.map(|i| _mm512_permutexvar_epi16(i, scz));
            let mut q = [_mm512_setzero_si512(); 4];
            for h in 0..2 {
                let l = _mm512_loadu_si512(wb.as_ptr().add(64 * h) as *const __m512i);
                let qh = _mm256_loadu_si256(wb.as_ptr().add(128 + 32 * h) as *const __m256i);
                let hb = _mm512_broadcast_i64x4(qh);
                let top_lo = _mm512_slli_epi16(_mm512_srlv_epi16(hb, shift_lo), 4);
                let top_hi = _mm512_slli_epi16(_mm512_srlv_epi16(hb, shift_hi), 4);
                q[2 * h] = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_and_si512(top_lo, m30));
                q[2 * h + 1] = _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                    _mm512_and_si512(top_hi, m30),
                );
            }
            let d = _mm_cvtph_ps(_mm_cvtsi32_si128(
                u16::from_le_bytes([wb[208], wb[209]]) as i32
            ));
            for r in 0..R {
                let bi = (i0 + r) * a.blocks + b;
                let sum = block_sum_avx512(&q, a.qs.as_ptr().add(bi * QK), &scales);
                let f = _mm_mul_ss(d, _mm_set_ss(*a.d.get_unchecked(bi)));
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_broadcastss_ps(f), acc[r]);
                acc_off[r] = q6k_offset_avx2(sc, a.bsums.as_ptr().add(bi * 16), f, acc_off[r]);
            }
        }
        std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]) - hsum_ps256(acc_off[r]))
    }
}

/// One `Q4_K` weight row times activation rows `i0 .. i0 + R`, AVX2.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; otherwise as [`q4k_rows_avx512`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q4k_rows_avx2<const R: usize>(w: &[u8], a: &Q8Rows, i0: usize) -> [f32; R] {
    assert!(w.len() >= a.blocks * Q4K_BYTES && i0 + R <= a.m);
    // Where chunk c's low and high nibbles sit in the activation block (`blocks::q4k_slot`).
    const LO: [usize; 4] = [0, 32, 128, 160];
    const HI: [usize; 4] = [64, 96, 192, 224];
    // SAFETY (whole body): loads stay inside one weight block or one activation block.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); R];
        let mut acc_min = [_mm_setzero_ps(); R];
        for b in 0..a.blocks {
            let wb = &w[b * Q4K_BYTES..(b + 1) * Q4K_BYTES];
            let words = q4k_scale_words(wb);
            let sm = _mm256_cvtepu8_epi16(_mm_loadu_si128(words.as_ptr() as *const __m128i));
            let mins = _mm256_extracti128_si256(sm, 1);
            let sc = _mm256_castsi256_si128(sm);
            let d_dmin = f16_pair(wb.as_ptr());
            for r in 0..R {
                let bi = (i0 + r) * a.blocks + b;
                let xs = a.qs.as_ptr().add(bi * QK);
                let mut sum = _mm256_setzero_si256();
                for c in 0..4 {
                    let q = _mm256_loadu_si256(wb.as_ptr().add(16 + 32 * c) as *const __m256i);
                    let lo = _mm256_and_si256(q, m4);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                    let x_lo = _mm256_loadu_si256(xs.add(LO[c]) as *const __m256i);
                    let x_hi = _mm256_loadu_si256(xs.add(HI[c]) as *const __m256i);
                    let (a_lo, a_hi) = scale_pair_avx2(sc, c);
                    let p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x_lo), a_lo);
                    let p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x_hi), a_hi);
                    sum = _mm256_add_epi32(sum, _mm256_add_epi32(p_lo, p_hi));
                }
                let f = _mm_mul_ps(d_dmin, _mm_set1_ps(*a.d.get_unchecked(bi)));
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_broadcastss_ps(f), acc[r]);
                acc_min[r] = q4k_mins_sse(mins, a.bsums32.as_ptr().add(bi * 8), f, acc_min[r]);
            }
        }
        std::array::from_fn(|r| hsum_ps256(acc[r]) - hsum_ps128(acc_min[r]))
    }
}

/// The scales of subblocks `2c` and `2c + 1` broadcast over 16 i16 lanes each.
#[inline(always)]
unsafe fn scale_pair_avx2(sc: __m128i, c: usize) -> (__m256i, __m256i) {
    // SAFETY: AVX2 is enabled by the caller.
    unsafe {
        let all = _mm256_broadcastsi128_si256(sc);
        // Byte shuffles that repeat i16 lane j over the whole register.
        let rep = |j: usize| {
            let lo = (2 * j) as i8;
            let pair = _mm_set_epi8(
                lo + 1,
                lo,
                lo + 1,
                lo,
                lo + 1,
                lo,
                lo + 1,
                lo,
                lo + 1,
                lo,
                lo + 1,
                lo,
                lo + 1,
                lo,
                lo + 1,
                lo,
            );
            _mm256_shuffle_epi8(all, _mm256_broadcastsi128_si256(pair))
        };
        (rep(2 * c), rep(2 * c + 1))
    }
}

/// One `Q6_K` weight row times activation rows `i0 .. i0 + R`, AVX2.
///
/// # Safety
/// As [`q4k_rows_avx2`], for `Q6_K` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q6k_rows_avx2<const R: usize>(w: &[u8], a: &Q8Rows, i0: usize) -> [f32; R] {
    assert!(w.len() >= a.blocks * Q6K_BYTES && i0 + R <= a.m);
    // SAFETY (whole body): loads stay inside one weight block or one activation block.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let m3 = _mm256_set1_epi8(0x03);
        let mut acc = [_mm256_setzero_ps(); R];
        let mut acc_off = [_mm256_setzero_ps(); R];
        for b in 0..a.blocks {
            let wb = &w[b * Q6K_BYTES..(b + 1) * Q6K_BYTES];
            let sc16 =
                _mm256_cvtepi8_epi16(_mm_loadu_si128(wb.as_ptr().add(192) as *const __m128i));
            let d = _mm_cvtph_ps(_mm_cvtsi32_si128(
                u16::from_le_bytes([wb[208], wb[209]]) as i32
            ));
            for r in 0..R {
                let bi = (i0 + r) * a.blocks + b;
                let xs = a.qs.as_ptr().add(bi * QK);
                let mut sum = _mm256_setzero_si256();
                for h in 0..2 {
                    let ql0 = _mm256_loadu_si256(wb.as_ptr().add(64 * h) as *const __m256i);
                    let ql1 = _mm256_loadu_si256(wb.as_ptr().add(64 * h + 32) as *const __m256i);
                    let qh = _mm256_loadu_si256(wb.as_ptr().add(128 + 32 * h) as *const __m256i);
                    let top = |t: __m256i| _mm256_slli_epi16(_mm256_and_si256(t, m3), 4);
                    // Quarters of the half: values l, l+32, l+64, l+96 (l = 0..32).
                    let q = [
                        _mm256_or_si256(_mm256_and_si256(ql0, m4), top(qh)),
                        _mm256_or_si256(_mm256_and_si256(ql1, m4), top(_mm256_srli_epi16(qh, 2))),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                            top(_mm256_srli_epi16(qh, 4)),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                            top(_mm256_srli_epi16(qh, 6)),
                        ),
                    ];
                    for (j, qj) in q.iter().enumerate() {
                        let x = _mm256_loadu_si256(xs.add(128 * h + 32 * j) as *const __m256i);
                        let p = _mm256_maddubs_epi16(*qj, x);
                        // Lanes 0..8 are values 0..16 of the quarter, lanes 8..16 the next 16.
                        let (s0, s1) =
                            (wb[192 + 8 * h + 2 * j] as i8, wb[193 + 8 * h + 2 * j] as i8);
                        let scales =
                            _mm256_set_m128i(_mm_set1_epi16(s1 as i16), _mm_set1_epi16(s0 as i16));
                        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, scales));
                    }
                }
                let f = _mm_mul_ss(d, _mm_set_ss(*a.d.get_unchecked(bi)));
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_broadcastss_ps(f), acc[r]);
                acc_off[r] = q6k_offset_avx2(sc16, a.bsums.as_ptr().add(bi * 16), f, acc_off[r]);
            }
        }
        std::array::from_fn(|r| hsum_ps256(acc[r]) - hsum_ps256(acc_off[r]))
    }
}

/// `Σ w·x` over 32 signed weight bytes and 32 activation bytes, as eight i32 lanes: the sign
/// of each weight moved onto its activation so that `maddubs` (unsigned × signed) applies.
#[inline(always)]
unsafe fn dot32_avx2(w: __m256i, x: __m256i) -> __m256i {
    // SAFETY: AVX2 is enabled by every caller.
    unsafe {
        let p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
        _mm256_madd_epi16(p, _mm256_set1_epi16(1))
    }
}

/// The 32 bits of `bits` as 32 bytes, 0xFF where the bit is set (byte j: bit j).
#[inline(always)]
unsafe fn bytes_of_bits(bits: u32) -> __m256i {
    // SAFETY: AVX2 is enabled by every caller.
    unsafe {
        // Byte j takes byte j / 8 of `bits`, then every bit but bit j % 8 is set: the byte is
        // all ones exactly when that bit was.
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(bits as i32),
            _mm256_set_epi64x(
                0x0303_0303_0303_0303,
                0x0202_0202_0202_0202,
                0x0101_0101_0101_0101,
                0,
            ),
        );
        let others = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe_u64 as i64);
        _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi8(-1))
    }
}

/// The `f32` accumulation shared by the 32-weight kinds: `acc += d·dx · Σ` per row.
macro_rules! rows32 {
    ($w:expr, $a:expr, $i0:expr, $R:expr, $bytes:expr, |$wb:ident| $weights:expr) => {{
        let (w, a, i0) = ($w, $a, $i0);
        assert!(w.len() >= a.blocks * $bytes && i0 + $R <= a.m);
        let mut acc = [_mm256_setzero_ps(); $R];
        for b in 0..a.blocks {
            let $wb = &w[b * $bytes..(b + 1) * $bytes];
            prefetch_ahead($wb.as_ptr(), $bytes);
            let q: __m256i = $weights;
            let d = f16_pair($wb.as_ptr());
            for r in 0..$R {
                let bi = (i0 + r) * a.blocks + b;
                let x = _mm256_loadu_si256(a.qs.as_ptr().add(bi * QK32) as *const __m256i);
                let f = _mm_mul_ss(d, _mm_set_ss(*a.d.get_unchecked(bi)));
                let sum = _mm256_cvtepi32_ps(dot32_avx2(q, x));
                acc[r] = _mm256_fmadd_ps(sum, _mm256_broadcastss_ps(f), acc[r]);
            }
        }
        std::array::from_fn(|r| hsum_ps256(acc[r]))
    }};
}

/// One `Q8_0` weight row times activation rows `i0 .. i0 + R`, AVX2.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `w` must hold `a.blocks` `Q8_0` blocks and `a`
/// (32-value blocks) at least `i0 + R` rows.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q8_0_rows_avx2<const R: usize>(w: &[u8], a: &Q8Rows, i0: usize) -> [f32; R] {
    // SAFETY: loads stay inside one weight block (d at 0, qs at 2..34) or one activation
    // block (the assert in the macro; the f16 pair read at 0 takes d and qs' first byte).
    unsafe {
        rows32!(w, a, i0, R, Q8_0_BYTES, |wb| _mm256_loadu_si256(
            wb.as_ptr().add(2) as *const __m256i
        ))
    }
}

/// One `Q5_0` weight row times activation rows `i0 .. i0 + R`, AVX2.
///
/// # Safety
/// As [`q8_0_rows_avx2`], for `Q5_0` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q5_0_rows_avx2<const R: usize>(w: &[u8], a: &Q8Rows, i0: usize) -> [f32; R] {
    // SAFETY: loads stay inside one weight block (d at 0, qh at 2..6, qs at 6..22) or one
    // activation block.
    unsafe {
        rows32!(w, a, i0, R, Q5_0_BYTES, |wb| {
            let qs = _mm_loadu_si128(wb.as_ptr().add(6) as *const __m128i);
            let m4 = _mm_set1_epi8(0x0F);
            let nib = _mm256_set_m128i(
                _mm_and_si128(_mm_srli_epi16(qs, 4), m4),
                _mm_and_si128(qs, m4),
            );
            let qh = u32::from_le_bytes([wb[2], wb[3], wb[4], wb[5]]);
            let fifth = _mm256_and_si256(bytes_of_bits(qh), _mm256_set1_epi8(0x10));
            _mm256_sub_epi8(_mm256_or_si256(nib, fifth), _mm256_set1_epi8(16))
        })
    }
}
