//! Prefill chunks through `Q8_0` weights (the 0.5B's projections): an 8-bit GEMM on the GGUF
//! blocks in place, sixteen activation rows per AVX-512 register.
//!
//! Why: candle has no tiled kernel for `Q8_0` rows that are no multiple of 256 wide (the
//! 0.5B's 896), so those chunks ran as a dequantized `f32` GEMM, which was 60% of a 0.5B
//! prefill profile at the `f32` FMA peak. VNNI's `dpbusd` does four 8-bit products per lane
//! per instruction. The activations are quantized per 32-value block exactly as for decode
//! ([`Q8Rows`], ggml's `Q8_0` rule, as llama.cpp quantizes them for the same weights), stored
//! as offset bytes (`x + 128`, the unsigned operand) in tiles of sixteen rows, four bytes of
//! each row side by side: one register per four columns of a tile. Each weight's four signed
//! bytes are broadcast from the file's block (the signed operand), so every lane sums one
//! row's products for one weight row, and a block's sum is exact in integers: `Σ (x + 128)·w
//! − 128·Σ w`. No horizontal sums; eight weight rows share each loaded activation register.
//!
//! Numbers: unlike the dense path, the activations are rounded to 8 bits per block (relative
//! error ~1/254 per value), as in decode; the integer sums are exact and each block is scaled
//! by `d_w · d_x` in `f32` and added in block order.

use super::blocks::{Q8Rows, Q8_0_BYTES, QK32};
use super::Kind;
use half::f16;

/// Activation rows per tile: one per 32-bit lane of a 512-bit register.
pub const TILE: usize = 16;
/// Bytes of one tile's block: 32 columns of 16 rows.
const TILE_BLOCK: usize = TILE * QK32;
/// Weight rows one kernel call takes (accumulators held in registers).
pub const WEIGHT_ROWS: usize = 8;

/// A prefill chunk's activations for [`gemm`]: `m` rows of `blocks` 32-value blocks, in
/// tiles of [`TILE`] rows (rows past `m` are zeros with scale 0).
pub struct TiledRows {
    m: usize,
    blocks: usize,
    /// Per tile, per block, per group of four columns: sixteen rows' four offset bytes.
    qs: Vec<u8>,
    /// Per tile, per block: the sixteen rows' scales.
    d: Vec<f32>,
}

impl TiledRows {
    /// Quantizes `m` rows of `k` values (`x`, row-major; `k` whole blocks).
    pub fn quantize(x: &[f32], m: usize, k: usize) -> TiledRows {
        let blocks = k / QK32;
        let q = Q8Rows::quantize(x, m, Kind::Q8_0);
        let tiles = m.div_ceil(TILE);
        let mut out = TiledRows {
            m,
            blocks,
            qs: vec![128; tiles * blocks * TILE_BLOCK],
            d: vec![0.0; tiles * blocks * TILE],
        };
        for i in 0..m {
            let (t, lane) = (i / TILE, i % TILE);
            for b in 0..blocks {
                let src = &q.qs[(i * blocks + b) * QK32..(i * blocks + b + 1) * QK32];
                let tb = (t * blocks + b) * TILE_BLOCK;
                for (g, four) in src.chunks_exact(4).enumerate() {
                    let at = tb + g * TILE * 4 + lane * 4;
                    for (o, &v) in out.qs[at..at + 4].iter_mut().zip(four) {
                        *o = (v as i16 + 128) as u8;
                    }
                }
                out.d[(t * blocks + b) * TILE + lane] = q.d[i * blocks + b];
            }
        }
        out
    }

    fn tiles(&self) -> usize {
        self.m.div_ceil(TILE)
    }

    /// The quantized value of row `i`, column `c` (the scalar definition).
    fn value(&self, i: usize, c: usize) -> i32 {
        let (t, lane, b, col) = (i / TILE, i % TILE, c / QK32, c % QK32);
        let at = (t * self.blocks + b) * TILE_BLOCK + (col / 4) * TILE * 4 + lane * 4 + col % 4;
        self.qs[at] as i32 - 128
    }
}

/// One weight row's per-block scales and `128 · Σ w` (the offset taken back), from the GGUF
/// `Q8_0` blocks of `row`.
fn row_terms(row: &[u8], blocks: usize, dw: &mut [f32], offsets: &mut [i32]) {
    for b in 0..blocks {
        let blk = &row[b * Q8_0_BYTES..(b + 1) * Q8_0_BYTES];
        dw[b] = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        offsets[b] = 128 * blk[2..].iter().map(|&v| v as i8 as i32).sum::<i32>();
    }
}

/// The output pointer shared by the workers; each writes only its own weight rows' columns.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: workers write disjoint elements (their own weight rows' columns of every output
// row), and the call that owns the buffer waits for all of them.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// `out[i, r] = Σ W[r, ·] x[i, ·]` for the `n` rows of the `Q8_0` matrix `w` (GGUF bytes) and
/// the rows of `a`, on candle's pool: [`WEIGHT_ROWS`] weight rows per unit of work, each
/// over every tile. `simd`: the AVX-512 VNNI kernel (else the scalar definition, tests).
pub fn gemm(w: &[u8], n: usize, a: &TiledRows, out: &mut [f32], simd: bool) {
    let blocks = a.blocks;
    let row_bytes = blocks * Q8_0_BYTES;
    assert!(w.len() >= n * row_bytes, "q8_0 gemm: weight size");
    assert_eq!(out.len(), a.m * n, "q8_0 gemm: output size");
    let ptr = OutPtr(out.as_mut_ptr());
    let work = |range: std::ops::Range<usize>| {
        let ptr = ptr;
        let mut dw = vec![0f32; WEIGHT_ROWS * blocks];
        let mut offsets = vec![0i32; WEIGHT_ROWS * blocks];
        for unit in range {
            let r0 = unit * WEIGHT_ROWS;
            let rows = (n - r0).min(WEIGHT_ROWS);
            for j in 0..rows {
                let row = &w[(r0 + j) * row_bytes..(r0 + j + 1) * row_bytes];
                row_terms(
                    row,
                    blocks,
                    &mut dw[j * blocks..(j + 1) * blocks],
                    &mut offsets[j * blocks..(j + 1) * blocks],
                );
            }
            let rows_w = &w[r0 * row_bytes..(r0 + rows) * row_bytes];
            for t in 0..a.tiles() {
                let mut tile = [[0f32; TILE]; WEIGHT_ROWS];
                tile_dot(rows_w, rows, a, t, &dw, &offsets, simd, &mut tile);
                for (j, col) in tile[..rows].iter().enumerate() {
                    for (lane, &v) in col.iter().enumerate() {
                        let i = t * TILE + lane;
                        if i < a.m {
                            // SAFETY: `i < m`, `r0 + j < n`: inside `out`; the column is this
                            // unit's.
                            unsafe { *ptr.0.add(i * n + r0 + j) = v };
                        }
                    }
                }
            }
        }
    };
    candle_core::utils::barrier_pool().execute_chunked(n.div_ceil(WEIGHT_ROWS), work);
}

/// Weight rows `w` (`rows` of them, GGUF blocks) times tile `t` of `a`, into `out[j][lane]`.
#[allow(clippy::too_many_arguments)]
fn tile_dot(
    w: &[u8],
    rows: usize,
    a: &TiledRows,
    t: usize,
    dw: &[f32],
    offsets: &[i32],
    simd: bool,
    out: &mut [[f32; TILE]; WEIGHT_ROWS],
) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is only set where `qgemv::level()` found AVX-512 F, BW, VL and VNNI;
        // `w` holds `rows` rows of `a.blocks` blocks, `dw`/`offsets` `rows · blocks` terms,
        // and `t` is a tile of `a`.
        unsafe {
            match rows {
                WEIGHT_ROWS => tile_avx512::<WEIGHT_ROWS>(w, a, t, dw, offsets, out),
                _ => {
                    for j in 0..rows {
                        let bytes = a.blocks * Q8_0_BYTES;
                        let mut one = [[0f32; TILE]; 1];
                        tile_avx512::<1>(
                            &w[j * bytes..(j + 1) * bytes],
                            a,
                            t,
                            &dw[j * a.blocks..],
                            &offsets[j * a.blocks..],
                            &mut one,
                        );
                        out[j] = one[0];
                    }
                }
            }
        }
        return;
    }
    let _ = simd;
    let blocks = a.blocks;
    for (j, col) in out[..rows].iter_mut().enumerate() {
        for (lane, o) in col.iter_mut().enumerate() {
            let i = t * TILE + lane;
            if i >= a.m {
                continue;
            }
            let mut sum = 0f32;
            for b in 0..blocks {
                let blk = &w[(j * blocks + b) * Q8_0_BYTES..(j * blocks + b + 1) * Q8_0_BYTES];
                let dot: i32 = (0..QK32)
                    .map(|c| blk[2 + c] as i8 as i32 * a.value(i, b * QK32 + c))
                    .sum();
                sum += dot as f32 * (dw[j * blocks + b] * a.d[(t * blocks + b) * TILE + lane]);
            }
            *o = sum;
        }
    }
}

/// `W` weight rows times one tile of sixteen activation rows, AVX-512 VNNI.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VL and VNNI and FMA; `w` must hold `W` rows of
/// `a.blocks` `Q8_0` blocks, `dw` and `offsets` at least `W · a.blocks` terms (row-major),
/// and `t < a.tiles()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma")]
unsafe fn tile_avx512<const W: usize>(
    w: &[u8],
    a: &TiledRows,
    t: usize,
    dw: &[f32],
    offsets: &[i32],
    out: &mut [[f32; TILE]],
) {
    use std::arch::x86_64::*;
    let blocks = a.blocks;
    debug_assert!(w.len() >= W * blocks * Q8_0_BYTES && t < a.tiles() && out.len() >= W);
    // SAFETY (whole body): loads stay inside the `W` weight rows, tile `t`'s blocks of `a`
    // and the `W · blocks` terms, by the caller's contract.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); W];
        for b in 0..blocks {
            let xb = a.qs.as_ptr().add((t * blocks + b) * TILE_BLOCK);
            let mut sums = [_mm512_setzero_si512(); W];
            for g in 0..QK32 / 4 {
                let x = _mm512_loadu_si512(xb.add(g * TILE * 4) as *const __m512i);
                for (j, s) in sums.iter_mut().enumerate() {
                    let wp = w.as_ptr().add((j * blocks + b) * Q8_0_BYTES + 2 + 4 * g);
                    let four = std::ptr::read_unaligned(wp as *const i32);
                    *s = _mm512_dpbusd_epi32(*s, x, _mm512_set1_epi32(four));
                }
            }
            let dx = _mm512_loadu_ps(a.d.as_ptr().add((t * blocks + b) * TILE));
            for (j, (s, acc)) in sums.iter().zip(acc.iter_mut()).enumerate() {
                let exact = _mm512_sub_epi32(*s, _mm512_set1_epi32(offsets[j * blocks + b]));
                let scale = _mm512_mul_ps(dx, _mm512_set1_ps(dw[j * blocks + b]));
                *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), scale, *acc);
            }
        }
        for (o, v) in out.iter_mut().zip(acc) {
            _mm512_storeu_ps(o.as_mut_ptr(), v);
        }
    }
}
