//! The inner loops of a softmax row on the CPU: the largest scaled score, and the exponentials
//! `exp(scale x s - m)` written in place with their sum.
//!
//! Why our own exp: the scalar `expf` of libm was the largest single cost of the attention
//! softmax on the CPU (6-8% of a whole run, one call per score). Here it is a polynomial the
//! compiler turns into SIMD lanes, with AVX2 + FMA picked at run time where the CPU has them
//! (the default build targets plain x86-64), and sums kept in eight lanes so that they
//! vectorize too. The price is the last bits: the exponentials differ from libm's by at most
//! a few units in the last place (see the tests), and the sum is added in another order.

/// Lanes of the partial sums and maxima (eight f32: one AVX2 register).
const LANES: usize = 8;

/// `max(scale x s)` over `xs` (`-inf` for none).
pub(super) fn max_scaled(xs: &[f32], scale: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return unsafe { max_scaled_avx2(xs, scale) };
    }
    max_scaled_any(xs, scale)
}

/// Writes `exp(scale x s - m)` over each `s` of `xs` and returns their sum.
pub(super) fn exp_shifted_sum(xs: &mut [f32], scale: f32, m: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return unsafe { exp_shifted_sum_avx2(xs, scale, m) };
    }
    exp_shifted_sum_any(xs, scale, m)
}

/// Whether this CPU has AVX2 and FMA (detected once): the SIMD loops here and in `vec_cpu`.
#[cfg(target_arch = "x86_64")]
pub(super) fn avx2_fma() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn max_scaled_avx2(xs: &[f32], scale: f32) -> f32 {
    use std::arch::x86_64::*;
    let vs = _mm256_set1_ps(scale);
    let mut acc = _mm256_set1_ps(f32::NEG_INFINITY);
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        // SAFETY: `c` holds LANES f32.
        let x = unsafe { _mm256_loadu_ps(c.as_ptr()) };
        acc = _mm256_max_ps(acc, _mm256_mul_ps(x, vs));
    }
    let mut lanes = [0f32; LANES];
    // SAFETY: `lanes` holds LANES f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
    let mut m = lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for &v in tail {
        m = m.max(v * scale);
    }
    m
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_shifted_sum_avx2(xs: &mut [f32], scale: f32, m: f32) -> f32 {
    use std::arch::x86_64::*;
    let vs = _mm256_set1_ps(scale);
    let vm = _mm256_set1_ps(m);
    let mut acc = _mm256_setzero_ps();
    let mut chunks = xs.chunks_exact_mut(LANES);
    for c in &mut chunks {
        // SAFETY: `c` holds LANES f32.
        let x = unsafe { _mm256_loadu_ps(c.as_ptr()) };
        let e = exp8(_mm256_sub_ps(_mm256_mul_ps(x, vs), vm));
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(c.as_mut_ptr(), e) };
        acc = _mm256_add_ps(acc, e);
    }
    let mut lanes = [0f32; LANES];
    // SAFETY: `lanes` holds LANES f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
    let mut l: f32 = lanes.iter().sum();
    for v in chunks.into_remainder() {
        let e = exp(*v * scale - m);
        *v = e;
        l += e;
    }
    l
}

/// [`exp`] on eight lanes, step for step (the same products and sums, so the same bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn exp8(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let c = _mm256_set1_ps;
    let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, c(EXP_MIN));
    let x = _mm256_min_ps(_mm256_max_ps(x, c(EXP_MIN)), c(EXP_MAX));
    let shifted = _mm256_add_ps(_mm256_mul_ps(x, c(LOG2E)), c(SHIFT));
    let n_bits = _mm256_sub_epi32(
        _mm256_castps_si256(shifted),
        _mm256_set1_epi32(SHIFT.to_bits() as i32),
    );
    let n = _mm256_sub_ps(shifted, c(SHIFT));
    let r = _mm256_sub_ps(
        _mm256_sub_ps(x, _mm256_mul_ps(n, c(LN2_HI))),
        _mm256_mul_ps(n, c(LN2_LO)),
    );
    let mut p = _mm256_add_ps(_mm256_mul_ps(r, c(1.0 / 720.0)), c(1.0 / 120.0));
    for k in [1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm256_add_ps(_mm256_mul_ps(p, r), c(k));
    }
    let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        n_bits,
        _mm256_set1_epi32(127),
    )));
    _mm256_andnot_ps(under, _mm256_mul_ps(p, pow2))
}

#[inline(always)]
fn max_scaled_any(xs: &[f32], scale: f32) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = a.max(v * scale);
        }
    }
    let mut m = acc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for &v in tail {
        m = m.max(v * scale);
    }
    m
}

#[inline(always)]
fn exp_shifted_sum_any(xs: &mut [f32], scale: f32, m: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = xs.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c.iter_mut()) {
            let e = exp(*v * scale - m);
            *v = e;
            *a += e;
        }
    }
    let mut l: f32 = acc.iter().sum();
    for v in chunks.into_remainder() {
        let e = exp(*v * scale - m);
        *v = e;
        l += e;
    }
    l
}

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 in two parts, so that `n x LN2_HI` is exact for the n that occur.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// 1.5 x 2^23: added to a float below 2^22 in size, it rounds it to an integer in the low bits.
const SHIFT: f32 = 12_582_912.0;
/// The inputs [`exp`] distinguishes: below `EXP_MIN` f32 leaves its normal range (0), at
/// `EXP_MAX` `n` is still 127.
const EXP_MIN: f32 = -87.3;
const EXP_MAX: f32 = 88.3;

/// `e^x` for f32 without a libm call, so that loops over it vectorize: `x = n ln2 + r` with
/// `|r| <= ln2 / 2`, `e^r` by a degree-6 polynomial (Taylor; its remainder at `ln2 / 2` is
/// below 2^-27), `2^n` built in the exponent bits. Inputs below -87.3 (where f32 leaves its
/// normal range) give 0, and above 88.3 give e^88.3 (the largest power of two kept finite; a softmax only
/// feeds it values <= 0).
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    let under = x < EXP_MIN;
    let x = x.clamp(EXP_MIN, EXP_MAX);
    // Round to nearest by the 1.5 x 2^23 trick: the sum's low mantissa bits then hold `n`
    // itself, read back as an integer (a float-to-int cast saturates through branches, which
    // kept the loop scalar). Plain products and sums, no `mul_add`: without FMA in the target
    // that would be a libm call per element again.
    let shifted = x * LOG2E + SHIFT;
    let n_bits = shifted.to_bits().wrapping_sub(SHIFT.to_bits()) as i32;
    let n = shifted - SHIFT;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = r * (1.0 / 720.0) + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    let pow2 = f32::from_bits((n_bits.wrapping_add(127) << 23) as u32);
    if under {
        0.0
    } else {
        p * pow2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units of the last place.
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_stays_within_a_few_ulps_of_libm() {
        let mut worst = (0u32, 0f32);
        let mut x = -87.0f32;
        while x <= 20.0 {
            let d = ulps(exp(x), x.exp());
            if d > worst.0 {
                worst = (d, x);
            }
            x += 0.000_37;
        }
        assert!(worst.0 <= 4, "{worst:?}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(88.0).is_finite());
    }

    #[test]
    fn row_loops_match_the_scalar_definitions() {
        // Lengths around the lane width, with a tail.
        for len in [0usize, 1, 7, 8, 9, 31, 1000] {
            let xs: Vec<f32> = (0..len)
                .map(|i| ((i * 37) % 101) as f32 * 0.13 - 6.0)
                .collect();
            let scale = 0.7;
            let m = max_scaled(&xs, scale);
            let want = xs
                .iter()
                .map(|&v| v * scale)
                .fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(m, want, "len {len}");
            if len == 0 {
                continue;
            }
            let mut got = xs.clone();
            let l = exp_shifted_sum(&mut got, scale, m);
            let mut sum = 0f64;
            for (g, &v) in got.iter().zip(&xs) {
                // The SIMD lanes and the scalar tail compute the same bits.
                assert_eq!(g.to_bits(), exp(v * scale - m).to_bits(), "len {len}");
                let e = ((v * scale - m) as f64).exp();
                assert!(((*g as f64) - e).abs() <= 1e-6 * e.max(1e-30), "len {len}");
                sum += e;
            }
            assert!(
                (l as f64 - sum).abs() <= 1e-5 * sum,
                "len {len}: {l} vs {sum}"
            );
        }
    }
}
