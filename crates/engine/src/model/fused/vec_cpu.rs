//! The inner loops of a decode step's attention on the CPU: a query's dot products with the
//! key rows, and the probability-weighted sum of the value rows.
//!
//! Why our own: `f32` sums do not vectorize as written (the compiler keeps their order), so
//! a plain `iter().sum()` dot product ran at one multiply-add per cycle, and the attention of
//! a decode step at 512 cached tokens cost as much as a tenth of the step's weights. Here the
//! sums are kept in eight lanes (AVX2 + FMA picked at run time where the CPU has them, else
//! the same lanes in plain code), as `softmax_cpu` does for the softmax. The price is the
//! order of the additions: results differ from a sequential sum in the last bits.

#[cfg(target_arch = "x86_64")]
use super::softmax_cpu::avx2_fma;

/// Lanes of the partial sums (eight f32: one AVX2 register).
const LANES: usize = 8;

/// `Σ a[i] · b[i]` over the common length.
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return unsafe { dot_avx2(a, b) };
    }
    dot_any(a, b)
}

/// `acc[i] += p · x[i]` over the common length.
pub(super) fn axpy(acc: &mut [f32], p: f32, x: &[f32]) {
    let n = acc.len().min(x.len());
    let (acc, x) = (&mut acc[..n], &x[..n]);
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return unsafe { axpy_avx2(acc, p, x) };
    }
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += p * v;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    // Two accumulators: a head's 64 or 128 values are 8 or 16 multiply-adds, and one chain
    // would wait on the FMA latency at each.
    let mut acc = [_mm256_setzero_ps(); 2];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (i, (x, y)) in ca.zip(cb).enumerate() {
        // SAFETY: `x` and `y` hold LANES f32 each.
        let (x, y) = unsafe { (_mm256_loadu_ps(x.as_ptr()), _mm256_loadu_ps(y.as_ptr())) };
        acc[i & 1] = _mm256_fmadd_ps(x, y, acc[i & 1]);
    }
    let s = _mm256_add_ps(acc[0], acc[1]);
    let half = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
    let quad = _mm_add_ps(half, _mm_movehl_ps(half, half));
    let one = _mm_add_ss(quad, _mm_shuffle_ps::<0b01>(quad, quad));
    let mut sum = _mm_cvtss_f32(one);
    for (&x, &y) in ta.iter().zip(tb) {
        sum += x * y;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn axpy_avx2(acc: &mut [f32], p: f32, x: &[f32]) {
    use std::arch::x86_64::*;
    let vp = _mm256_set1_ps(p);
    let mut ca = acc.chunks_exact_mut(LANES);
    let cx = x.chunks_exact(LANES);
    let tx = cx.remainder();
    for (a, v) in (&mut ca).zip(cx) {
        // SAFETY: `a` and `v` hold LANES f32 each.
        unsafe {
            let r = _mm256_fmadd_ps(vp, _mm256_loadu_ps(v.as_ptr()), _mm256_loadu_ps(a.as_ptr()));
            _mm256_storeu_ps(a.as_mut_ptr(), r);
        }
    }
    for (a, &v) in ca.into_remainder().iter_mut().zip(tx) {
        *a += p * v;
    }
}

#[inline(always)]
fn dot_any(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((s, &u), &v) in acc.iter_mut().zip(x).zip(y) {
            *s += u * v;
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (&x, &y) in ta.iter().zip(tb) {
        sum += x * y;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.71 + seed).sin()).collect()
    }

    #[test]
    fn dot_and_axpy_agree_with_plain_sums_at_every_length() {
        // Head widths (64, 128), a ragged tail, and lengths below one register.
        for n in [0usize, 3, 8, 13, 64, 128, 131] {
            let (a, b) = (ramp(n, 0.3), ramp(n, 1.7));
            let want: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            let got = dot(&a, &b);
            assert!(
                (got as f64 - want).abs() <= 1e-5 * (n as f64).max(1.0),
                "{n}: {got} vs {want}"
            );
            assert!((dot_any(&a, &b) as f64 - want).abs() <= 1e-5 * (n as f64).max(1.0));
            let mut acc = ramp(n, 2.9);
            let mut plain = acc.clone();
            axpy(&mut acc, 0.37, &a);
            for (p, &x) in plain.iter_mut().zip(&a) {
                *p += 0.37 * x;
            }
            for (g, w) in acc.iter().zip(&plain) {
                // One fused multiply-add against a product and a sum: one rounding apart.
                assert!((g - w).abs() <= 1e-6, "{n}: {g} vs {w}");
            }
        }
    }
}
