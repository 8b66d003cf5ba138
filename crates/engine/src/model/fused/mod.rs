//! Fused operations of the Qwen2 layer: one kernel where the plain candle path launches several.
//!
//! Why: a decode step of a 72B rank is ~80 x 25 small operations around 7 matrix-vector
//! products; at a few microseconds of launch and memory traffic each they cost about as much as
//! reading the weights (`benches/NOTES.md`). Each op here replaces a chain of candle ops with
//! one pass over memory, and has two implementations with the same contract: a CUDA kernel
//! (`kernels.cu`, compiled to PTX by `build.rs`) and a CPU loop. `tests/kernels.rs` checks both
//! against the plain candle path on fresh random inputs (in CI on the CPU, on a GPU with the
//! `cuda` build); `Kernels::Plain` keeps the plain path in the model for side-by-side runs.
//!
//! | op | replaces |
//! |---|---|
//! | [`add_rms_norm`] | residual add, RMSNorm (2) |
//! | [`silu_mul`] | narrow gate/up, silu, mul (3 launches) |
//! | [`rope_q`] | narrow q, bias add, head transpose + copy, RoPE (4) |
//! | [`kv_append`] | narrow k/v, bias adds, transposes + copies, RoPE on k, two `slice_set` (8) |
//! | [`masked_softmax_`] | f32 cast, scale, mask build (6) + add, softmax, bf16 cast (~11) |
//! | [`attention_decode`] | (decode steps) rope_q, the two score GEMMs and the softmax (4) |
//! | [`attention_cascade_decode`] | (decode steps on a shared prefix) rope_q and `attention_shared`'s ~37 ops |
//!
//! Contracts shared by all: inputs contiguous, one dtype (f32 or bf16; f16 on the CPU too), f32
//! arithmetic, each output element rounded to the dtype once.

#[cfg(feature = "cuda")]
mod cuda;
mod matmul_cpu;
mod softmax_cpu;
mod vec_cpu;

pub use matmul_cpu::matmul;

use candle_core::{
    backend::BackendStorage, CpuStorage, CustomOp1, CustomOp3, DType, InplaceOp1, InplaceOp2,
    InplaceOp3, Layout, Result, Shape, Tensor, WithDType,
};

/// Which implementation of the layer's glue the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
pub enum Kernels {
    /// The fused ops of this module (the default on every device).
    #[default]
    Fused,
    /// Plain candle operations: the reference the fused ops are checked against.
    Plain,
}

/// Head geometry of a packed `q | k | v` projection on this rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl Heads {
    /// Width of one token's packed projection: `(heads + 2 kv_heads) x head_dim`.
    pub fn width(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }

    fn check(&self, qkv: &Layout, what: &str) -> Result<(usize, usize)> {
        let (b, t, w) = qkv.shape().dims3()?;
        if w != self.width() || !self.head_dim.is_multiple_of(2) || self.kv_heads == 0 {
            candle_core::bail!(
                "{what}: packed projection of width {w} does not match {self:?} (width {})",
                self.width()
            )
        }
        Ok((b, t))
    }
}

/// The residual sum `x + y` and its RMSNorm `(x + y) / rms(x + y) * w`, in one pass. Both
/// come back as views of one `(2, ..x's shape)` tensor (one allocation, one launch); the norm is
/// taken of the sum as rounded to the dtype, as the plain path computes it.
pub fn add_rms_norm(x: &Tensor, y: &Tensor, w: &Tensor, eps: f32) -> Result<(Tensor, Tensor)> {
    let out = x.apply_op3_no_bwd(y, w, &AddRmsNorm { eps })?;
    Ok((out.get(0)?, out.get(1)?))
}

/// `silu(gu[..., :f]) * gu[..., f:]` for the packed `gate | up` projection `(..., 2f)`.
pub fn silu_mul(gate_up: &Tensor) -> Result<Tensor> {
    gate_up.apply_op1_no_bwd(&SiluMul)
}

/// The rotated query heads `(b, heads, t, head_dim)` of a packed projection `qkv` `(b, t, width)`
/// plus `bias` `(width)`; `cs` `(b, t, head_dim)` holds each token's `[cos | sin]`.
pub fn rope_q(qkv: &Tensor, bias: &Tensor, cs: &Tensor, heads: Heads) -> Result<Tensor> {
    qkv.apply_op3_no_bwd(bias, cs, &RopeQ { heads })
}

/// Writes the keys (biased, rotated) and values (biased) of `qkv` into `cache`
/// `(2, b, kv_heads, capacity, head_dim)` at slots `slot0..slot0 + t`, in place.
pub fn kv_append(
    cache: &Tensor,
    qkv: &Tensor,
    bias: &Tensor,
    cs: &Tensor,
    heads: Heads,
    slot0: usize,
) -> Result<()> {
    let (_, b, kv, cap, hd) = cache.dims5()?;
    let (qb, t, _) = qkv.dims3()?;
    if b != qb || kv != heads.kv_heads || hd != heads.head_dim || slot0 + t > cap {
        candle_core::bail!(
            "kv_append: cache {:?} cannot take {t} tokens of {qb} rows at slot {slot0} ({heads:?})",
            cache.shape()
        )
    }
    cache.inplace_op3(
        qkv,
        cs,
        &KvAppend {
            heads,
            slot0,
            bias: bias.clone(),
        },
    )
}

/// Queries per sequence up to which the model runs [`attention_decode`] (decode steps, short
/// chunks); longer chunks use [`masked_softmax_`] between two GEMMs, which run on tensor cores.
pub const DECODE_MAX_QUERIES: usize = 16;
/// Longest cache [`attention_decode`] takes (1024 splits of 64 keys, which one block of each
/// query row combines one batch after another); longer ones take the GEMM path.
pub const DECODE_MAX_KEYS: usize = 65_536;

/// Head dimensions [`attention_decode`]'s GPU kernel takes: a power of two from 16 to 128
/// (Qwen2.5 uses 64 and 128). A key row is read as 16-byte vectors by a power-of-two group of
/// lanes, and the query slice of a lane must not straddle the rotation's half.
pub fn decode_head_dim(head_dim: usize) -> bool {
    head_dim.is_power_of_two() && (16..=128).contains(&head_dim)
}

/// Whether a pass of `t` queries per sequence ending at `keys` cache slots runs through
/// [`attention_decode`] (else the GEMM path with [`masked_softmax_`]).
pub fn decode_fits(t: usize, head_dim: usize, keys: usize) -> bool {
    t <= DECODE_MAX_QUERIES && decode_head_dim(head_dim) && keys <= DECODE_MAX_KEYS
}

/// Attention of a few queries per sequence straight from the packed projection `qkv`
/// `(b, t, width)` (+ `bias`, rotated by `cs`, as [`rope_q`]) over the cache `(2, b, kv_heads,
/// capacity, head_dim)`, whose slots up to `q_slot0 + t` must already hold the keys and values
/// (see [`kv_append`]). Query `ti` of sequence `bi` sees slots `pad[bi] ..= q_slot0 + ti`.
/// Returns `(b, t, heads x head_dim)`, the layout o_proj reads. On the GPU: one kernel (keys
/// split over blocks, the last block of each query row combines), no score tensor at all.
pub fn attention_decode(
    qkv: &Tensor,
    bias: &Tensor,
    cs: &Tensor,
    cache: &Tensor,
    pad: &Tensor,
    heads: Heads,
    q_slot0: usize,
) -> Result<Tensor> {
    decode_op(
        qkv,
        bias,
        cs,
        cache,
        pad,
        heads,
        q_slot0,
        None,
        "attention_decode",
    )
}

/// The checks and the op behind [`attention_decode`] and [`attention_cascade_decode`]: the
/// cache, pad and head geometry must hold the `t` queries of every row at `q_slot0`.
#[allow(clippy::too_many_arguments)]
fn decode_op(
    qkv: &Tensor,
    bias: &Tensor,
    cs: &Tensor,
    cache: &Tensor,
    pad: &Tensor,
    heads: Heads,
    q_slot0: usize,
    prefix: Option<(Tensor, usize)>,
    name: &str,
) -> Result<Tensor> {
    let (_, b, kv, cap, hd) = cache.dims5()?;
    let (qb, t, _) = qkv.dims3()?;
    if b != qb || kv != heads.kv_heads || hd != heads.head_dim || q_slot0 + t > cap {
        candle_core::bail!(
            "{name}: cache {:?} does not hold {t} queries of {qb} rows at slot {q_slot0} ({heads:?})",
            cache.shape()
        )
    }
    if pad.dims() != [b] || pad.dtype() != DType::U32 || !heads.heads.is_multiple_of(heads.kv_heads)
    {
        candle_core::bail!(
            "{name}: pad {:?} {:?} / {heads:?}",
            pad.shape(),
            pad.dtype()
        )
    }
    qkv.apply_op3_no_bwd(
        cs,
        cache,
        &AttnDecode {
            heads,
            q_slot0,
            bias: bias.clone(),
            pad: pad.clone(),
            prefix,
        },
    )
}

/// [`attention_decode`] for rows that continue one shared prefix (cascade attention, the
/// contract of `attention::attention_shared`): query `ti` of sequence `bi` sees the first
/// `prefix_len` slots of `prefix` `(2, 1, kv_heads, capacity, head_dim)` (K then V, stored once
/// for all rows) and its own slots `pad[bi] ..= q_slot0 + ti` of `cache`. Returns
/// `(b, t, heads x head_dim)`.
///
/// Why: `attention_shared` is ~37 candle ops per layer, so a decode step on a shared prefix
/// waited on the host (2.3x a batch-1 step on an H100). On the GPU (bf16) this is two launches:
/// a tensor-core kernel that reads each prefix K/V tile once per KV head and scores it against
/// all rows' queries of that head, and the decode kernel over the rows' own keys, whose combine
/// joins both parts through their softmax statistics. On the CPU it is one loop (a reference for
/// the tests; the model keeps `attention_shared` there, see [`cascade_fits`]).
#[allow(clippy::too_many_arguments)]
pub fn attention_cascade_decode(
    qkv: &Tensor,
    bias: &Tensor,
    cs: &Tensor,
    cache: &Tensor,
    pad: &Tensor,
    prefix: &Tensor,
    prefix_len: usize,
    heads: Heads,
    q_slot0: usize,
) -> Result<Tensor> {
    let (two, pb, pkv, pcap, phd) = prefix.dims5()?;
    if two != 2
        || pb != 1
        || pkv != heads.kv_heads
        || phd != heads.head_dim
        || prefix_len > pcap
        || prefix.dtype() != qkv.dtype()
    {
        candle_core::bail!(
            "attention_cascade_decode: prefix cache {:?} {:?} does not hold {prefix_len} keys of {heads:?}",
            prefix.shape(),
            prefix.dtype()
        )
    }
    decode_op(
        qkv,
        bias,
        cs,
        cache,
        pad,
        heads,
        q_slot0,
        Some((prefix.clone(), prefix_len)),
        "attention_cascade_decode",
    )
}

/// Whether the model runs a pass of `t` queries per row over a shared prefix through
/// [`attention_cascade_decode`]: on a CUDA device, in bf16 (the tensor-core kernel's operand
/// type), where [`decode_fits`] holds, and unless `PARAMX_NO_FUSED_CASCADE` is set (to measure
/// the candle-op `attention_shared` beside it in the same build). Elsewhere (the CPU, f32,
/// prefill chunks) the model keeps `attention_shared`.
pub fn cascade_fits(qkv: &Tensor, t: usize, head_dim: usize, keys: usize) -> bool {
    static DISABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let disabled = *DISABLED.get_or_init(|| {
        std::env::var_os("PARAMX_NO_FUSED_CASCADE").is_some_and(|v| !v.is_empty() && v != "0")
    });
    !disabled
        && qkv.device().is_cuda()
        && qkv.dtype() == DType::BF16
        && decode_fits(t, head_dim, keys)
}

/// Where a block of attention scores sits, for [`masked_softmax_`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreRows {
    /// Query rows per sequence in the scores (`kv_heads x group x n`).
    pub rows_per_seq: usize,
    /// Queries of the block (`n`): row `r` is query `r % n`.
    pub queries: usize,
    /// Cache slot of the block's first query.
    pub q_slot0: usize,
    /// Multiplies every score before the softmax (`1 / sqrt(head_dim)`).
    pub scale: f32,
}

/// In place: each row of `scores` `(b, kv_heads, group x n, keys)` becomes the softmax of
/// `scale x scores` over its visible keys (`pad[b] <= key <= query slot`) and 0 elsewhere; a row
/// without a visible key becomes all zeros. `pad` is `(b)` u32 on the scores' device.
pub fn masked_softmax_(scores: &Tensor, pad: &Tensor, rows: ScoreRows) -> Result<()> {
    let dims = scores.dims();
    let b = pad.dim(0)?;
    if dims.len() != 4
        || dims[0] != b
        || dims[1] * dims[2] != rows.rows_per_seq
        || rows.queries == 0
        || !rows.rows_per_seq.is_multiple_of(rows.queries)
        || pad.dtype() != DType::U32
    {
        candle_core::bail!(
            "masked_softmax: scores {:?}, pad {:?} {:?} and {rows:?} do not fit together",
            scores.shape(),
            pad.shape(),
            pad.dtype()
        )
    }
    scores.inplace_op2(pad, &MaskedSoftmax { rows })
}

/// One part of a cascade attention (the shared prefix's keys, or a row's own keys) on the CPU,
/// in place: each row of `scores` (f32, contiguous, keys last) becomes `exp(scale x s - m)`
/// over its visible keys and 0 elsewhere, where `m` is the row's largest scaled score; returns
/// `(m, l)` (`l` the row's sum of those exponentials), each of the scores' shape with a last
/// dimension of 1. With `mask` the visible keys follow padding and causality as in
/// [`masked_softmax_`] (`pad` per sequence; the rows' own `scale` is not read, `scale` is: the
/// prefix part has no rows geometry); without it every key is visible. A row without a
/// visible key gets `m = -1e30`, `l = 0` and zeros, so it adds nothing when the parts are joined.
///
/// Why: the same statistics as candle's `affine`, `max`, `sub`, `exp` and `sum` plus an additive
/// mask, in one pass and one buffer instead of six passes and four score-sized allocations (the
/// suffixes' prefill on a shared prefix spent most of its time in those on the CPU). The CUDA
/// path keeps the candle ops ([`crate::model::attention`]).
pub fn softmax_part_(
    scores: &Tensor,
    scale: f32,
    mask: Option<(&[usize], ScoreRows)>,
) -> Result<(Tensor, Tensor)> {
    let dims = scores.dims();
    let Some((&keys, lead)) = dims.split_last() else {
        candle_core::bail!("softmax_part: scores have no dimensions")
    };
    if !scores.device().is_cpu() || scores.dtype() != DType::F32 || keys == 0 {
        candle_core::bail!(
            "softmax_part: f32 scores on the CPU with keys expected, got {:?} {:?} on {:?}",
            scores.shape(),
            scores.dtype(),
            scores.device()
        )
    }
    let rows: usize = lead.iter().product();
    let mask = match mask {
        Some((pad, r)) => {
            if r.queries == 0 || r.rows_per_seq == 0 || rows != pad.len() * r.rows_per_seq {
                candle_core::bail!(
                    "softmax_part: scores {:?}, {} pad entries and {r:?} do not fit together",
                    scores.shape(),
                    pad.len()
                )
            }
            Some((pad.iter().map(|&p| p as u32).collect(), r))
        }
        None => None,
    };
    let op = SoftmaxPart {
        scale,
        mask,
        stats: std::sync::Mutex::new(Vec::new()),
    };
    scores.inplace_op1(&op)?;
    let stats = op
        .stats
        .into_inner()
        .map_err(|_| candle_core::Error::Msg("softmax_part: a worker panicked".into()))?;
    let mut shape = lead.to_vec();
    shape.push(2);
    let stats = Tensor::from_vec(stats, shape, scores.device())?;
    let last = lead.len();
    Ok((
        stats.narrow(last, 0, 1)?.contiguous()?,
        stats.narrow(last, 1, 1)?.contiguous()?,
    ))
}

// ---------------------------------------------------------------------------------------------
// The ops. CPU bodies are generic over the element type; CUDA bodies live in `cuda.rs`.

struct SiluMul;
struct AddRmsNorm {
    eps: f32,
}
struct RopeQ {
    heads: Heads,
}
struct KvAppend {
    heads: Heads,
    slot0: usize,
    /// Read through the op (candle's in-place ops take two sources besides the destination).
    bias: Tensor,
}
struct MaskedSoftmax {
    rows: ScoreRows,
}
struct SoftmaxPart {
    scale: f32,
    /// Padding per sequence and the rows' geometry; `None`: every key visible.
    mask: Option<(Vec<u32>, ScoreRows)>,
    /// Written by the CPU body: `(m, l)` per row (an in-place op returns nothing else).
    stats: std::sync::Mutex<Vec<f32>>,
}
struct AttnDecode {
    heads: Heads,
    q_slot0: usize,
    /// Read through the op (custom ops take three tensors).
    bias: Tensor,
    pad: Tensor,
    /// A shared prefix's cache and length ([`attention_cascade_decode`]), or `None`.
    prefix: Option<(Tensor, usize)>,
}

fn contiguous<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

/// Mutable access to a CPU storage of element type `T` (candle has no `as_slice_mut`).
trait CpuElem: WithDType {
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
    /// The same slice as f32 where the element type is f32 (for the vectorized f32 loops).
    fn slice_f32(x: &mut [Self]) -> Option<&mut [f32]>;
    /// [`CpuElem::slice_f32`], read-only.
    fn as_f32(x: &[Self]) -> Option<&[f32]>;
}
macro_rules! cpu_elem {
    ($t:ty, $v:ident, $as_f32:expr, $as_f32_ref:expr) => {
        impl CpuElem for $t {
            fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]> {
                match s {
                    CpuStorage::$v(v) => Some(v.as_mut_slice()),
                    _ => None,
                }
            }
            fn slice_f32(x: &mut [Self]) -> Option<&mut [f32]> {
                $as_f32(x)
            }
            fn as_f32(x: &[Self]) -> Option<&[f32]> {
                $as_f32_ref(x)
            }
        }
    };
}
cpu_elem!(f32, F32, Some, Some);
cpu_elem!(half::bf16, BF16, |_| None, |_| None);
cpu_elem!(half::f16, F16, |_| None, |_| None);

fn contiguous_mut<'a, T: CpuElem>(
    s: &'a mut CpuStorage,
    l: &Layout,
    what: &str,
) -> Result<&'a mut [T]> {
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("{what} must be contiguous")
    };
    match T::slice_mut(s) {
        Some(v) => Ok(&mut v[a..b]),
        None => candle_core::bail!("{what}: storage is not {:?}", T::DTYPE),
    }
}

/// Runs `$body` with `$t` bound to the element type of `$dtype` (f32, bf16, f16).
macro_rules! with_float {
    ($dtype:expr, $what:expr, $t:ident => $body:expr) => {
        match $dtype {
            DType::F32 => {
                type $t = f32;
                $body
            }
            DType::BF16 => {
                type $t = half::bf16;
                $body
            }
            DType::F16 => {
                type $t = half::f16;
                $body
            }
            d => candle_core::bail!("{}: unsupported dtype {d:?}", $what),
        }
    };
}

/// Work (element operations, roughly) below which a CPU op stays on the calling thread: waking
/// the pool's workers costs more than a small op (measured on the tiny model: an add + RMSNorm of
/// one 64-wide row took 3.5 us through rayon, candle's two sequential ops 0.4 us).
const PARALLEL_MIN_WORK: usize = 1 << 16;

/// A pointer the pool's workers share; each touches only its own part (a chunk of
/// `for_chunks`, a band of `matmul_cpu`'s output).
struct SharedMut<T>(*mut T);
// Not derived: a derive would ask `T: Copy`; the pointer is copyable whatever it points to.
impl<T> Clone for SharedMut<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedMut<T> {}
// SAFETY: every user hands each part to exactly one worker, parts are disjoint, and the call
// that owns the buffer waits for all workers.
unsafe impl<T: Send> Send for SharedMut<T> {}
unsafe impl<T: Send> Sync for SharedMut<T> {}

/// Runs `f(index, chunk)` over the `chunk`-sized pieces of `data`: on candle's barrier pool when
/// `work` is at least [`PARALLEL_MIN_WORK`], else on this thread. The barrier pool, not rayon's:
/// the quantized projections and the attention products run there, and two pools on the same
/// cores spin against each other (see `matmul_cpu`).
fn for_chunks<T: Send>(
    data: &mut [T],
    chunk: usize,
    work: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    let chunk = chunk.max(1);
    if work < PARALLEL_MIN_WORK {
        data.chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
        return;
    }
    let len = data.len();
    let ptr = SharedMut(data.as_mut_ptr());
    candle_core::utils::barrier_pool().execute_chunked(len.div_ceil(chunk), |range| {
        let ptr = ptr;
        for i in range {
            let start = i * chunk;
            // SAFETY: chunk `i` is `start .. min(start + chunk, len)` of `data`, which this call
            // borrows mutably until every worker is done; no other index covers it.
            let c =
                unsafe { std::slice::from_raw_parts_mut(ptr.0.add(start), chunk.min(len - start)) };
            f(i, c);
        }
    });
}

/// Key (or value) row `j` of a cascade: the prefix's rows `0..plen` of `pre`, then the row's
/// own from slot `lo` of `own` (`hd` values each).
fn key_row<'a, T>(
    pre: &'a [T],
    own: &'a [T],
    plen: usize,
    lo: usize,
    hd: usize,
    j: usize,
) -> &'a [T] {
    if j < plen {
        &pre[j * hd..][..hd]
    } else {
        &own[(lo + j - plen) * hd..][..hd]
    }
}

/// `row` as f32: the row itself where the element type is f32, else converted into `scratch`.
fn row_f32<'a, T: CpuElem>(row: &'a [T], scratch: &'a mut [f32]) -> &'a [f32] {
    match T::as_f32(row) {
        Some(x) => x,
        None => {
            scratch.iter_mut().zip(row).for_each(|(s, &v)| *s = f(v));
            scratch
        }
    }
}

/// `x + bias` (one head) rotated by the token's `[cos | sin]` in the NeoX halves layout, in f32:
/// the CPU side of the RoPE in `rope_q`, `kv_append` and `attention_decode`.
fn rotate_into<T: WithDType>(x: &[T], bias: &[T], cs: &[T], out: &mut [f32]) {
    let half = x.len() / 2;
    for i in 0..half {
        let (x1, x2) = (f(x[i]) + f(bias[i]), f(x[i + half]) + f(bias[i + half]));
        let (co, si) = (f(cs[i]), f(cs[half + i]));
        out[i] = x1 * co - x2 * si;
        out[i + half] = x2 * co + x1 * si;
    }
}

#[inline]
fn f<T: WithDType>(x: T) -> f32 {
    x.to_f64() as f32
}
#[inline]
fn t<T: WithDType>(x: f32) -> T {
    T::from_f64(x as f64)
}

impl CustomOp1 for SiluMul {
    fn name(&self) -> &'static str {
        "silu_mul"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (shape, rows, half_w) = silu_mul_shape(l)?;
        with_float!(s.dtype(), "silu_mul", T => {
            let gu = contiguous::<T>(s, l, "silu_mul input")?;
            let mut out = vec![T::from_f64(0.0); rows * half_w];
            for_chunks(&mut out, half_w, rows * half_w, |r, o| {
                let x = &gu[r * 2 * half_w..][..2 * half_w];
                for c in 0..half_w {
                    let (g, u) = (f(x[c]), f(x[half_w + c]));
                    o[c] = t(g / (1.0 + (-g).exp()) * u);
                }
            });
            Ok((T::to_cpu_storage_owned(out), shape))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (shape, rows, half_w) = silu_mul_shape(l)?;
        Ok((cuda::silu_mul(s, l, rows, half_w)?, shape))
    }
}

impl CustomOp3 for AddRmsNorm {
    fn name(&self) -> &'static str {
        "add_rms_norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (shape, rows, h) = add_norm_shape(l1, l2, l3)?;
        let eps = self.eps;
        with_float!(s1.dtype(), "add_rms_norm", T => {
            let x = contiguous::<T>(s1, l1, "add_rms_norm x")?;
            let y = contiguous::<T>(s2, l2, "add_rms_norm y")?;
            let w = contiguous::<T>(s3, l3, "add_rms_norm weight")?;
            let mut out = vec![T::from_f64(0.0); 2 * rows * h];
            let (sums, normed) = out.split_at_mut(rows * h);
            for_chunks(sums, h, rows * h, |r, s| {
                for i in 0..h {
                    s[i] = t(f(x[r * h + i]) + f(y[r * h + i]));
                }
            });
            let sums = &*sums;
            for_chunks(normed, h, rows * h, |r, n| {
                let s = &sums[r * h..][..h];
                let ss: f32 = s.iter().map(|&v| f(v) * f(v)).sum();
                let inv = 1.0 / (ss / h as f32 + eps).sqrt();
                for i in 0..h {
                    n[i] = t(f(s[i]) * inv * f(w[i]));
                }
            });
            Ok((T::to_cpu_storage_owned(out), shape))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (shape, rows, h) = add_norm_shape(l1, l2, l3)?;
        Ok((
            cuda::add_rms_norm(s1, l1, s2, l2, s3, l3, rows, h, self.eps)?,
            shape,
        ))
    }
}

/// Output shape `(2, ..x)`, rows and width of [`add_rms_norm`].
fn add_norm_shape(x: &Layout, y: &Layout, w: &Layout) -> Result<(Shape, usize, usize)> {
    let h = *x.dims().last().unwrap_or(&0);
    if x.dims() != y.dims() || w.dims() != [h] || h == 0 {
        candle_core::bail!(
            "add_rms_norm: x {:?}, y {:?} and weight {:?} do not fit together",
            x.dims(),
            y.dims(),
            w.dims()
        )
    }
    let mut out = vec![2];
    out.extend_from_slice(x.dims());
    Ok((Shape::from(out), x.shape().elem_count() / h, h))
}

/// Output shape, rows and output width of [`silu_mul`] for an input layout.
fn silu_mul_shape(l: &Layout) -> Result<(Shape, usize, usize)> {
    let dims = l.dims();
    let Some((&w, lead)) = dims.split_last() else {
        candle_core::bail!("silu_mul: scalar input")
    };
    if w % 2 != 0 {
        candle_core::bail!("silu_mul: last dimension {w} is not even (gate | up)")
    }
    let mut out = lead.to_vec();
    out.push(w / 2);
    Ok((Shape::from(out), lead.iter().product(), w / 2))
}

impl CustomOp3 for RopeQ {
    fn name(&self) -> &'static str {
        "rope_q"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let h = self.heads;
        let (b, tt) = h.check(l1, "rope_q")?;
        check_bias_cs(h, l2, l3, b, tt, "rope_q")?;
        let (hd, w) = (h.head_dim, h.width());
        with_float!(s1.dtype(), "rope_q", T => {
            let qkv = contiguous::<T>(s1, l1, "rope_q qkv")?;
            let bias = contiguous::<T>(s2, l2, "rope_q bias")?;
            let cs = contiguous::<T>(s3, l3, "rope_q cos/sin")?;
            let mut q = vec![T::from_f64(0.0); b * h.heads * tt * hd];
            // One chunk per (sequence, head): tt x hd outputs.
            for_chunks(&mut q, tt * hd, b * h.heads * tt * hd, |bh, out| {
                let (bi, head) = (bh / h.heads, bh % h.heads);
                let mut r = vec![0f32; hd];
                for ti in 0..tt {
                    let row = bi * tt + ti;
                    let x = &qkv[row * w + head * hd..][..hd];
                    rotate_into(x, &bias[head * hd..][..hd], &cs[row * hd..][..hd], &mut r);
                    for (o, &v) in out[ti * hd..][..hd].iter_mut().zip(&r) {
                        *o = t(v);
                    }
                }
            });
            Ok((T::to_cpu_storage_owned(q), Shape::from((b, h.heads, tt, hd))))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let h = self.heads;
        let (b, tt) = h.check(l1, "rope_q")?;
        check_bias_cs(h, l2, l3, b, tt, "rope_q")?;
        let q = cuda::rope_q(s1, l1, s2, l2, s3, l3, h, b, tt)?;
        Ok((q, Shape::from((b, h.heads, tt, h.head_dim))))
    }
}

fn check_bias_cs(
    h: Heads,
    bias: &Layout,
    cs: &Layout,
    b: usize,
    t: usize,
    what: &str,
) -> Result<()> {
    if bias.dims() != [h.width()] || cs.dims() != [b, t, h.head_dim] {
        candle_core::bail!(
            "{what}: bias {:?} / cos-sin {:?} do not fit a ({b}, {t}) batch of {h:?}",
            bias.dims(),
            cs.dims()
        )
    }
    Ok(())
}

impl InplaceOp3 for KvAppend {
    fn name(&self) -> &'static str {
        "kv_append"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let h = self.heads;
        let (b, tt) = h.check(l2, "kv_append")?;
        let (bias_s, bias_l) = self.bias.storage_and_layout();
        check_bias_cs(h, bias_l, l3, b, tt, "kv_append")?;
        let candle_core::Storage::Cpu(bias_s) = &*bias_s else {
            candle_core::bail!("kv_append: the bias is not on the CPU")
        };
        let cap = l1.dims()[3];
        let (hd, w) = (h.head_dim, h.width());
        let (kvh, slot0) = (h.kv_heads, self.slot0);
        with_float!(s1.dtype(), "kv_append", T => {
            let qkv = contiguous::<T>(s2, l2, "kv_append qkv")?;
            let cs = contiguous::<T>(s3, l3, "kv_append cos/sin")?;
            let bias = contiguous::<T>(bias_s, bias_l, "kv_append bias")?;
            let cache = contiguous_mut::<T>(s1, l1, "kv_append cache")?;
            // K and V halves, each (b, kv_heads, cap, hd): one chunk per (part, sequence, head).
            for_chunks(cache, cap * hd, 2 * b * kvh * tt * hd, |idx, plane| {
                let (part, bi, head) = (idx / (b * kvh), (idx / kvh) % b, idx % kvh);
                let col = (h.heads + part * kvh + head) * hd;
                let mut r = vec![0f32; hd];
                for ti in 0..tt {
                    let row = bi * tt + ti;
                    let x = &qkv[row * w + col..][..hd];
                    let bb = &bias[col..][..hd];
                    let o = &mut plane[(slot0 + ti) * hd..][..hd];
                    if part == 0 {
                        rotate_into(x, bb, &cs[row * hd..][..hd], &mut r);
                        for (oi, &v) in o.iter_mut().zip(&r) {
                            *oi = t(v);
                        }
                    } else {
                        for i in 0..hd {
                            o[i] = t(f(x[i]) + f(bb[i]));
                        }
                    }
                }
            });
            Ok(())
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &mut candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<()> {
        let h = self.heads;
        let (b, tt) = h.check(l2, "kv_append")?;
        let (bias_s, bias_l) = self.bias.storage_and_layout();
        check_bias_cs(h, bias_l, l3, b, tt, "kv_append")?;
        let candle_core::Storage::Cuda(bias_s) = &*bias_s else {
            candle_core::bail!("kv_append: the bias is not on the GPU")
        };
        cuda::kv_append(s1, l1, s2, l2, bias_s, bias_l, s3, l3, h, b, tt, self.slot0)
    }
}

impl InplaceOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked_softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let r = self.rows;
        let keys = *l1.dims().last().unwrap_or(&0);
        let pad = contiguous::<u32>(s2, l2, "masked_softmax pad")?.to_vec();
        with_float!(s1.dtype(), "masked_softmax", T => {
            let s = contiguous_mut::<T>(s1, l1, "masked_softmax scores")?;
            let work = s.len();
            for_chunks(s, keys, work, |row, x| {
                let (lo, hi) = visible(&pad, r, row, keys);
                let (lo, hi) = (lo.min(keys), hi.min(keys));
                // One exp per visible key, kept in place and scaled after; f32 rows through
                // the vectorized loops, half-precision rows widened one value at a time.
                let l = match T::slice_f32(x) {
                    Some(x) => {
                        let m = softmax_cpu::max_scaled(&x[lo..hi], r.scale);
                        softmax_cpu::exp_shifted_sum(&mut x[lo..hi], r.scale, m)
                    }
                    None => {
                        let mut m = f32::NEG_INFINITY;
                        for &v in &x[lo..hi] {
                            m = m.max(f(v) * r.scale);
                        }
                        let mut l = 0f32;
                        for v in &mut x[lo..hi] {
                            let e = softmax_cpu::exp(f(*v) * r.scale - m);
                            l += e;
                            *v = t(e);
                        }
                        l
                    }
                };
                let inv = if l > 0.0 { 1.0 / l } else { 0.0 };
                for (k, v) in x.iter_mut().enumerate() {
                    *v = t(if k >= lo && k < hi { f(*v) * inv } else { 0.0 });
                }
            });
            Ok(())
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &mut candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<()> {
        cuda::masked_softmax(s1, l1, s2, l2, self.rows)
    }
}

impl InplaceOp1 for SoftmaxPart {
    fn name(&self) -> &'static str {
        "softmax_part"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout) -> Result<()> {
        let keys = *l1.dims().last().unwrap_or(&1);
        let x = contiguous_mut::<f32>(s1, l1, "softmax_part scores")?;
        let mut stats = vec![0f32; x.len() / keys.max(1) * 2];
        let row = |i: usize, x: &mut [f32], st: &mut [f32]| {
            let (lo, hi) = match &self.mask {
                // A row's padding can reach past a block's last key (a short row's padding
                // queries): then nothing is visible.
                Some((pad, r)) => {
                    let (lo, hi) = visible(pad, *r, i, keys);
                    (lo.min(keys), hi.min(keys))
                }
                None => (0, keys),
            };
            let m = softmax_cpu::max_scaled(&x[lo..hi], self.scale);
            let l = softmax_cpu::exp_shifted_sum(&mut x[lo..hi], self.scale, m);
            x[..lo].fill(0.0);
            x[hi..].fill(0.0);
            st[0] = if lo < hi { m } else { -1.0e30 };
            st[1] = l;
        };
        let st = SharedMut(stats.as_mut_ptr());
        for_chunks(x, keys, x.len(), |i, x| {
            let st = st;
            // SAFETY: row `i` owns `stats[2 i .. 2 i + 2]` as it owns its chunk of `x`, and
            // `stats` outlives the call.
            let st = unsafe { std::slice::from_raw_parts_mut(st.0.add(2 * i), 2) };
            row(i, x, st);
        });
        *self
            .stats
            .lock()
            .map_err(|_| candle_core::Error::Msg("softmax_part: a worker panicked".into()))? =
            stats;
        Ok(())
    }
}

impl CustomOp3 for AttnDecode {
    fn name(&self) -> &'static str {
        "attention_decode"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let h = self.heads;
        let (b, tt) = h.check(l1, "attention_decode")?;
        let (bias_s, bias_l) = self.bias.storage_and_layout();
        check_bias_cs(h, bias_l, l2, b, tt, "attention_decode")?;
        let (pad_s, pad_l) = self.pad.storage_and_layout();
        let (candle_core::Storage::Cpu(bias_s), candle_core::Storage::Cpu(pad_s)) =
            (&*bias_s, &*pad_s)
        else {
            candle_core::bail!("attention_decode: bias and pad must be on the CPU")
        };
        let pad = contiguous::<u32>(pad_s, pad_l, "attention_decode pad")?;
        // The shared prefix (if any): its storage guard, layout and length.
        let prefix = self.prefix.as_ref().map(|(p, n)| {
            let (s, l) = p.storage_and_layout();
            (s, l.clone(), *n)
        });
        let (hd, w, cap) = (h.head_dim, h.width(), l3.dims()[3]);
        let group = h.heads / h.kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let q_slot0 = self.q_slot0;
        with_float!(s1.dtype(), "attention_decode", T => {
            let qkv = contiguous::<T>(s1, l1, "attention_decode qkv")?;
            let cs = contiguous::<T>(s2, l2, "attention_decode cos/sin")?;
            let cache = contiguous::<T>(s3, l3, "attention_decode cache")?;
            let bias = contiguous::<T>(bias_s, bias_l, "attention_decode bias")?;
            // Prefix K and V planes of each KV head: `(2, 1, kv_heads, pcap, hd)`.
            let (pre, pcap, plen): (&[T], usize, usize) = match &prefix {
                Some((s, l, n)) => {
                    let candle_core::Storage::Cpu(s) = &**s else {
                        candle_core::bail!("attention_cascade_decode: the prefix is not on the CPU")
                    };
                    (contiguous::<T>(s, l, "attention_cascade_decode prefix")?, l.dims()[3], *n)
                }
                None => (&[], 0, 0),
            };
            let mut out = vec![T::from_f64(0.0); b * tt * h.heads * hd];
            // Output chunk (bi, ti, kv head): the `group` query heads that share the KV head
            // are contiguous in `out` and read each key and value row once, together.
            let work = b * tt * h.heads * (plen + q_slot0 + tt) * hd * 2;
            for_chunks(&mut out, group * hd, work, |idx, o| {
                let (kvh, ti, bi) = (idx % h.kv_heads, (idx / h.kv_heads) % tt, idx / (h.kv_heads * tt));
                let tok = bi * tt + ti;
                let plane = |part: usize| &cache[((part * b + bi) * h.kv_heads + kvh) * cap * hd..][..cap * hd];
                let (kp, vp) = (plane(0), plane(1));
                let lo = pad.get(bi).copied().unwrap_or(0) as usize;
                let hi = (q_slot0 + ti + 1).min(cap);
                let own = hi.saturating_sub(lo);
                if own == 0 && plen == 0 {
                    return; // a padding query: zeros
                }
                // Keys: the prefix's (every row sees them whole), then the row's own.
                let pplane = |part: usize| &pre[(part * h.kv_heads + kvh) * pcap * hd..][..plen * hd];
                let (pk, pv) = if plen > 0 { (pplane(0), pplane(1)) } else { (&[][..], &[][..]) };
                let keys = plen + own;
                // The group's rotated, scaled queries, one after another.
                let mut q = vec![0f32; group * hd];
                for (g, qg) in q.chunks_exact_mut(hd).enumerate() {
                    let head = kvh * group + g;
                    let (x, bb, c) = (&qkv[tok * w + head * hd..][..hd], &bias[head * hd..][..hd], &cs[tok * hd..][..hd]);
                    rotate_into(x, bb, c, qg);
                    qg.iter_mut().for_each(|v| *v *= scale);
                }
                // Rows as f32: in place for an f32 cache, else through one row of scratch.
                let mut scratch = vec![0f32; hd];
                let mut scores = vec![0f32; group * keys];
                for j in 0..keys {
                    let r = key_row(pk, kp, plen, lo, hd, j);
                    let kr = row_f32(r, &mut scratch);
                    for (g, qg) in q.chunks_exact(hd).enumerate() {
                        scores[g * keys + j] = vec_cpu::dot(qg, kr);
                    }
                }
                let mut inv = vec![0f32; group];
                for (g, sg) in scores.chunks_exact_mut(keys).enumerate() {
                    let m = softmax_cpu::max_scaled(sg, 1.0);
                    inv[g] = 1.0 / softmax_cpu::exp_shifted_sum(sg, 1.0, m);
                }
                let mut acc = vec![0f32; group * hd];
                for j in 0..keys {
                    let r = key_row(pv, vp, plen, lo, hd, j);
                    let vr = row_f32(r, &mut scratch);
                    for (g, ag) in acc.chunks_exact_mut(hd).enumerate() {
                        vec_cpu::axpy(ag, scores[g * keys + j], vr);
                    }
                }
                for (g, (og, ag)) in o.chunks_exact_mut(hd).zip(acc.chunks_exact(hd)).enumerate() {
                    for (oi, &a) in og.iter_mut().zip(ag) {
                        *oi = t(a * inv[g]);
                    }
                }
            });
            Ok((T::to_cpu_storage_owned(out), Shape::from((b, tt, h.heads * hd))))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let h = self.heads;
        let (b, tt) = h.check(l1, "attention_decode")?;
        let (bias_s, bias_l) = self.bias.storage_and_layout();
        check_bias_cs(h, bias_l, l2, b, tt, "attention_decode")?;
        let (pad_s, pad_l) = self.pad.storage_and_layout();
        let (candle_core::Storage::Cuda(bias_s), candle_core::Storage::Cuda(pad_s)) =
            (&*bias_s, &*pad_s)
        else {
            candle_core::bail!("attention_decode: bias and pad must be on the GPU")
        };
        let prefix = self
            .prefix
            .as_ref()
            .map(|(p, n)| (p.storage_and_layout(), *n));
        let prefix = match &prefix {
            Some(((s, l), n)) => match &**s {
                candle_core::Storage::Cuda(s) => Some((s, *l, *n)),
                _ => candle_core::bail!("attention_cascade_decode: the prefix is not on the GPU"),
            },
            None => None,
        };
        let out = cuda::attention_decode(
            cuda::DecodeArgs {
                qkv: (s1, l1),
                cs: (s2, l2),
                cache: (s3, l3),
                bias: (bias_s, bias_l),
                pad: (pad_s, pad_l),
                prefix,
            },
            h,
            b,
            tt,
            self.q_slot0,
        )?;
        Ok((out, Shape::from((b, tt, h.heads * h.head_dim))))
    }
}

/// Visible keys `[lo, hi)` of score row `row` (see [`masked_softmax_`]).
fn visible(pad: &[u32], r: ScoreRows, row: usize, keys: usize) -> (usize, usize) {
    let (bi, qi) = (row / r.rows_per_seq, row % r.queries);
    let lo = pad.get(bi).copied().unwrap_or(0) as usize;
    let hi = (r.q_slot0 + qi + 1).min(keys);
    (lo, hi.max(lo))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn visible_keys_follow_padding_and_causality() {
        let r = ScoreRows {
            rows_per_seq: 4,
            queries: 2,
            q_slot0: 3,
            scale: 1.0,
        };
        // seq 0 (pad 0): rows 0..4 are queries 0,1,0,1 (two heads) at slots 3, 4.
        assert_eq!(visible(&[0, 4], r, 0, 5), (0, 4));
        assert_eq!(visible(&[0, 4], r, 1, 5), (0, 5));
        // seq 1 (pad 4): slot 3 sees nothing (a padding query), slot 4 sees key 4.
        assert_eq!(visible(&[0, 4], r, 4, 5), (4, 4));
        assert_eq!(visible(&[0, 4], r, 5, 5), (4, 5));
    }

    #[test]
    fn silu_mul_by_hand() -> Result<()> {
        let x = Tensor::new(&[[0f32, 1.0, 2.0, -3.0]], &Device::Cpu)?;
        let y = silu_mul(&x)?.to_vec2::<f32>()?;
        assert_eq!(y[0][0], 0.0);
        let want = 1.0 / (1.0 + (-1f32).exp()) * -3.0;
        assert!((y[0][1] - want).abs() < 1e-6, "{} vs {want}", y[0][1]);
        assert!(silu_mul(&Tensor::zeros(3, DType::F32, &Device::Cpu)?).is_err());
        Ok(())
    }
}
