//! The GGML k-quant block layouts this module reads in place, the 8-bit activation blocks it
//! multiplies them with, and the scalar dot products that define the results.
//!
//! Why scalar definitions beside the SIMD kernels: they say what a kernel computes in the
//! plainest terms (each block's integer sum, exact, then a few `f32` operations), and the tests
//! hold every SIMD kernel to them. The kernels sum the same integers; they add the blocks'
//! `f32` terms in lanes, so they differ from these only in the order of those additions.
//!
//! Layouts (ggml's, little-endian, no padding):
//! - `Q4_K`, 144 bytes per 256 weights: `d: f16, dmin: f16, scales: [u8; 12]` (eight 6-bit
//!   scales and eight 6-bit mins, one per 32 weights), `qs: [u8; 128]` (4-bit, see
//!   [`q4k_value`]). Weight = `d·scale·q − dmin·min`.
//! - `Q6_K`, 210 bytes per 256 weights: `ql: [u8; 128]` (low 4 bits), `qh: [u8; 64]` (high
//!   2 bits), `scales: [i8; 16]` (one per 16 weights), `d: f16`. Weight = `d·scale·(q − 32)`.
//! - `Q8_0`, 34 bytes per 32 weights: `d: f16, qs: [i8; 32]`. Weight = `d·q`.
//! - `Q5_0`, 22 bytes per 32 weights: `d: f16, qh: u32` (bit j: the fifth bit of weight j),
//!   `qs: [u8; 16]` (weights j and j + 16 in the low and high nibble of byte j).
//!   Weight = `d·(q − 16)`. (GGUF files use these two where a row's width is no multiple of
//!   256, as in the 0.5B's 896.)

use half::f16;

/// Weights per k-quant block.
pub(crate) const QK: usize = 256;
/// Bytes of one `Q4_K` block.
pub(crate) const Q4K_BYTES: usize = 144;
/// Bytes of one `Q6_K` block.
pub(crate) const Q6K_BYTES: usize = 210;
/// Weights per `Q8_0` / `Q5_0` block.
pub(crate) const QK32: usize = 32;
/// Bytes of one `Q8_0` block.
pub(crate) const Q8_0_BYTES: usize = 34;
/// Bytes of one `Q5_0` block.
pub(crate) const Q5_0_BYTES: usize = 22;

/// The k-quant formats this module multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Q4K,
    Q6K,
    Q8_0,
    Q5_0,
}

impl Kind {
    pub(crate) fn block_bytes(self) -> usize {
        match self {
            Kind::Q4K => Q4K_BYTES,
            Kind::Q6K => Q6K_BYTES,
            Kind::Q8_0 => Q8_0_BYTES,
            Kind::Q5_0 => Q5_0_BYTES,
        }
    }

    /// Weights per block.
    pub(crate) fn block_len(self) -> usize {
        match self {
            Kind::Q4K | Kind::Q6K => QK,
            Kind::Q8_0 | Kind::Q5_0 => QK32,
        }
    }
}

/// A `Q8_0` or `Q5_0` block's `d`.
pub(crate) fn d0(b: &[u8]) -> f32 {
    f16_at(b, 0)
}

/// The signed value of weight `j` (0..32) of a `Q5_0` block.
pub(crate) fn q5_0_value(b: &[u8], j: usize) -> i8 {
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let byte = b[6 + j % 16];
    let low = if j < 16 { byte & 0x0F } else { byte >> 4 };
    let high = ((qh >> j) & 1) as u8;
    (low | (high << 4)) as i8 - 16
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// A `Q4_K` block's `d` and `dmin`.
pub(crate) fn q4k_d_dmin(b: &[u8]) -> (f32, f32) {
    (f16_at(b, 0), f16_at(b, 2))
}

/// A `Q6_K` block's `d`.
pub(crate) fn q6k_d(b: &[u8]) -> f32 {
    f16_at(b, 208)
}

/// The eight 6-bit scales and eight 6-bit mins of a `Q4_K` block as four little-endian words:
/// bytes 0..8 the scales, 8..16 the mins. ggml's packing: scales and mins 0-3 in the low six
/// bits of bytes 0-3 and 4-7; 4-7 in the nibbles of bytes 8-11 with their top two bits in the
/// top bits of bytes 0-7. Word operations unpack four at a time.
#[inline(always)]
pub(crate) fn q4k_scale_words(b: &[u8]) -> [u32; 4] {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let word = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let (u0, u1, u2) = (word(4), word(8), word(12));
    [
        u0 & LOW6,
        (u2 & LOW4) | (((u0 >> 6) & LOW2) << 4),
        u1 & LOW6,
        ((u2 >> 4) & LOW4) | (((u1 >> 6) & LOW2) << 4),
    ]
}

/// [`q4k_scale_words`] as bytes: (scales, mins).
pub(crate) fn q4k_scales_mins(b: &[u8]) -> ([u8; 8], [u8; 8]) {
    let w = q4k_scale_words(b);
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    sc[..4].copy_from_slice(&w[0].to_le_bytes());
    sc[4..].copy_from_slice(&w[1].to_le_bytes());
    mn[..4].copy_from_slice(&w[2].to_le_bytes());
    mn[4..].copy_from_slice(&w[3].to_le_bytes());
    (sc, mn)
}

/// The 4-bit value of weight `i` (0..256) of a `Q4_K` block: byte `32c + j` of `qs` holds
/// weight `64c + j` in its low nibble and `64c + 32 + j` in its high nibble.
pub(crate) fn q4k_value(b: &[u8], i: usize) -> u8 {
    let (c, r) = (i / 64, i % 64);
    let byte = b[16 + 32 * c + r % 32];
    if r < 32 {
        byte & 0x0F
    } else {
        byte >> 4
    }
}

/// The unsigned 6-bit value (0..64, the weight is `value − 32`) of weight `i` of a `Q6_K`
/// block: in each half of 128, `ql[l]` holds weights `l` (low nibble) and `l + 64` (high),
/// `ql[l + 32]` weights `l + 32` and `l + 96`; `qh[l]` their top two bits, in that order
/// from bit 0.
pub(crate) fn q6k_value(b: &[u8], i: usize) -> u8 {
    let (h, r) = (i / 128, i % 128);
    let (ql, qh) = (&b[128 * h / 2..], &b[128 + 32 * h..]);
    let l = r % 32;
    let quarter = r / 32; // 0: l, 1: l+32, 2: l+64, 3: l+96
    let low = match quarter {
        0 => ql[l] & 0x0F,
        1 => ql[l + 32] & 0x0F,
        2 => ql[l] >> 4,
        _ => ql[l + 32] >> 4,
    };
    let high = (qh[l] >> (2 * quarter)) & 3;
    low | (high << 4)
}

/// A `Q6_K` block's sixteen scales.
pub(crate) fn q6k_scales(b: &[u8]) -> [i8; 16] {
    let mut sc = [0i8; 16];
    for (s, &byte) in sc.iter_mut().zip(&b[192..208]) {
        *s = byte as i8;
    }
    sc
}

/// Where activation `i` (0..256) of a block sits in the order the `Q4_K` kernels read: four
/// 64-byte segments, each the two 32-weight runs that one 64-byte load of `qs` holds in its low
/// (segments 0 and 2) or high (1 and 3) nibbles: `[0..32, 64..96]`, `[32..64, 96..128]`,
/// `[128..160, 192..224]`, `[160..192, 224..256]`. `Q6_K` reads the natural order.
pub(crate) fn q4k_slot(i: usize) -> usize {
    let (half, r) = (i / 128, i % 128);
    let (pair, j) = (r / 64, r % 64); // which 64-byte load of qs, offset in it
    let (nibble, j) = (j / 32, j % 32); // low or high nibble
    128 * half + 64 * nibble + 32 * pair + j
}

/// `m` rows of activations quantized to 8 bits per block as ggml quantizes them for the weight
/// kind (and candle, whose rounding this repeats): for the k-quants `Q8_K` (one `f32` scale per
/// 256 values, `round(x · 127 / max|x|)`), in the order the kind's kernel reads, with the sums
/// the kernels need to undo the weights' offsets; for `Q8_0`/`Q5_0` weights `Q8_0` (one scale
/// per 32 values, kept at `f16` precision as ggml stores it, natural order, no sums).
#[derive(Debug, Clone)]
pub struct Q8Rows {
    pub(crate) kind: Kind,
    pub(crate) m: usize,
    pub(crate) blocks: usize,
    /// One scale per block (`m · blocks`).
    pub(crate) d: Vec<f32>,
    /// `m · blocks · 256` values, each block in `kind`'s order.
    pub(crate) qs: Vec<i8>,
    /// Per block, the sums of its sixteen natural runs of 16 values (`m · blocks · 16`;
    /// at most 16 · 127, so 16 bits hold them, as the SIMD multiply-adds want).
    pub(crate) bsums: Vec<i16>,
    /// Per block, the sums of its eight runs of 32 values (`m · blocks · 8`).
    pub(crate) bsums32: Vec<i16>,
}

impl Q8Rows {
    /// Quantizes `x` (`m` rows of `blocks · 256` values, row-major) for `kind`'s kernels.
    pub fn quantize(x: &[f32], m: usize, kind: Kind) -> Self {
        if kind.block_len() == QK32 {
            return Self::quantize_q8_0(x, m, kind);
        }
        let k = x.len() / m.max(1);
        let blocks = k / QK;
        let mut out = Q8Rows {
            kind,
            m,
            blocks,
            d: vec![0.0; m * blocks],
            qs: vec![0; m * blocks * QK],
            bsums: vec![0; m * blocks * 16],
            bsums32: vec![0; m * blocks * 8],
        };
        let mut q = [0i8; QK];
        for (bi, xs) in x.chunks_exact(QK).enumerate().take(m * blocks) {
            // The value of largest magnitude, sign kept (ggml's rule: the first one found).
            let mut max = 0f32;
            let mut amax = 0f32;
            for &v in xs {
                if amax < v.abs() {
                    amax = v.abs();
                    max = v;
                }
            }
            if amax == 0.0 {
                q = [0; QK];
                out.d[bi] = 0.0;
            } else {
                let iscale = -127f32 / max;
                for (qv, &v) in q.iter_mut().zip(xs) {
                    *qv = (iscale * v).round().clamp(-128.0, 127.0) as i8;
                }
                out.d[bi] = 1.0 / iscale;
            }
            for (j, run) in q.chunks_exact(16).enumerate() {
                out.bsums[bi * 16 + j] = run.iter().map(|&v| v as i16).sum();
            }
            for j in 0..8 {
                out.bsums32[bi * 8 + j] =
                    out.bsums[bi * 16 + 2 * j] + out.bsums[bi * 16 + 2 * j + 1];
            }
            let dst = &mut out.qs[bi * QK..(bi + 1) * QK];
            match kind {
                Kind::Q4K => {
                    for (i, &v) in q.iter().enumerate() {
                        dst[q4k_slot(i)] = v;
                    }
                }
                _ => dst.copy_from_slice(&q),
            }
        }
        out
    }

    /// ggml's `Q8_0` rule: `d = max|x| / 127`, `q = round(x / d)`, `d` stored as `f16`.
    fn quantize_q8_0(x: &[f32], m: usize, kind: Kind) -> Self {
        let k = x.len() / m.max(1);
        let blocks = k / QK32;
        let mut out = Q8Rows {
            kind,
            m,
            blocks,
            d: vec![0.0; m * blocks],
            qs: vec![0; m * blocks * QK32],
            bsums: Vec::new(),
            bsums32: Vec::new(),
        };
        for (bi, xs) in x.chunks_exact(QK32).enumerate().take(m * blocks) {
            let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (q, &v) in out.qs[bi * QK32..(bi + 1) * QK32].iter_mut().zip(xs) {
                *q = (v * id).round() as i8;
            }
            out.d[bi] = f16::from_f32(d).to_f32();
        }
        out
    }

    /// The value of natural index `i` of block `bi` (tests and the scalar path).
    pub(crate) fn value(&self, bi: usize, i: usize) -> i8 {
        let slot = match self.kind {
            Kind::Q4K => q4k_slot(i),
            _ => i,
        };
        self.qs[bi * self.kind.block_len() + slot]
    }
}

/// The scalar definition of one `Q4_K` block times one activation block: the integer sums,
/// then `d_x · (d · Σ scale·q·x − dmin · Σ min·Σx)` in `f32`.
pub(crate) fn q4k_block_dot(w: &[u8], a: &Q8Rows, bi: usize) -> f32 {
    let (sc, mn) = q4k_scales_mins(w);
    let mut isum = 0i32;
    for (sub, &s) in sc.iter().enumerate() {
        let dot: i32 = (32 * sub..32 * sub + 32)
            .map(|i| q4k_value(w, i) as i32 * a.value(bi, i) as i32)
            .sum();
        isum += s as i32 * dot;
    }
    let bs = &a.bsums32[bi * 8..bi * 8 + 8];
    let msum: i32 = (0..8).map(|sub| mn[sub] as i32 * bs[sub] as i32).sum();
    let (d, dmin) = q4k_d_dmin(w);
    a.d[bi] * (d * isum as f32 - dmin * msum as f32)
}

/// The scalar definition of one `Q6_K` block times one activation block:
/// `d_x · d · Σ scale·(q − 32)·x` with the sum taken as `Σ scale·q·x − 32·Σ scale·Σx`.
pub(crate) fn q6k_block_dot(w: &[u8], a: &Q8Rows, bi: usize) -> f32 {
    let sc = q6k_scales(w);
    let mut isum = 0i32;
    for (g, &s) in sc.iter().enumerate() {
        let dot: i32 = (16 * g..16 * g + 16)
            .map(|i| q6k_value(w, i) as i32 * a.value(bi, i) as i32)
            .sum();
        isum += s as i32 * dot;
    }
    let bs = &a.bsums[bi * 16..bi * 16 + 16];
    let offset: i32 = sc.iter().zip(bs).map(|(&s, &b)| s as i32 * b as i32).sum();
    a.d[bi] * (q6k_d(w) * (isum - 32 * offset) as f32)
}

/// The scalar definition of one `Q8_0` block times one activation block.
pub(crate) fn q8_0_block_dot(w: &[u8], a: &Q8Rows, bi: usize) -> f32 {
    let isum: i32 = (0..QK32)
        .map(|j| w[2 + j] as i8 as i32 * a.value(bi, j) as i32)
        .sum();
    d0(w) * a.d[bi] * isum as f32
}

/// The scalar definition of one `Q5_0` block times one activation block.
pub(crate) fn q5_0_block_dot(w: &[u8], a: &Q8Rows, bi: usize) -> f32 {
    let isum: i32 = (0..QK32)
        .map(|j| q5_0_value(w, j) as i32 * a.value(bi, j) as i32)
        .sum();
    d0(w) * a.d[bi] * isum as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4k_slots_are_a_permutation_matching_the_nibble_loads() {
        let mut seen = [false; QK];
        for i in 0..QK {
            let s = q4k_slot(i);
            assert!(!seen[s], "slot {s} taken twice");
            seen[s] = true;
        }
        // Segment 0 is the low nibbles of qs[0..64]: weights 0..32 then 64..96.
        assert_eq!(q4k_slot(0), 0);
        assert_eq!(q4k_slot(64), 32);
        assert_eq!(q4k_slot(32), 64);
        assert_eq!(q4k_slot(96), 96);
        assert_eq!(q4k_slot(128), 128);
        assert_eq!(q4k_slot(255), 255);
    }

    #[test]
    fn q8_quantization_keeps_the_largest_value_exact_and_sums_runs() {
        let mut x = vec![0f32; QK];
        for (i, v) in x.iter_mut().enumerate() {
            *v = (i as f32 - 100.0) * 0.01;
        }
        x[7] = -3.0; // the largest magnitude, negative
        let q = Q8Rows::quantize(&x, 1, Kind::Q6K);
        // ggml's rule: the value of largest magnitude becomes -127, the scale carries the sign.
        assert_eq!(q.value(0, 7), -127);
        assert!((q.d[0] * -127.0 + 3.0).abs() < 1e-6);
        let run0: i32 = (0..16).map(|i| q.value(0, i) as i32).sum();
        assert_eq!(q.bsums[0] as i32, run0);
        assert_eq!(q.bsums32[0], q.bsums[0] + q.bsums[1]);
        let zeros = Q8Rows::quantize(&[0f32; QK], 1, Kind::Q4K);
        assert_eq!(zeros.d[0], 0.0);
        assert!(zeros.qs.iter().all(|&v| v == 0));
    }

    #[test]
    fn q4k_scale_unpack_reads_the_high_bits() {
        let mut b = [0u8; Q4K_BYTES];
        b[4] = 0b1100_0001; // scale 0 = 1, top bits feed scale 4's high part
        b[8] = 0b0100_0010; // min 0 = 2, top bits feed min 4's high part
        b[12] = 0x53; // scale 4 low = 3, min 4 low = 5
        let (sc, mn) = q4k_scales_mins(&b);
        assert_eq!(sc[0], 1);
        assert_eq!(mn[0], 2);
        assert_eq!(sc[4], 3 | (3 << 4));
        assert_eq!(mn[4], 5 | (1 << 4));
    }
}
