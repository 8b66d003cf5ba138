//! Launching the fused kernels of `kernels.cu` on candle's CUDA storages.
//!
//! The PTX is built by `build.rs` (nvcc) and loaded once per device through candle's module
//! cache, so the kernels run on the same stream as every other candle op: no extra
//! synchronisation, and graph capture would see them like any other launch.

use super::{Heads, ScoreRows};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::DeviceId;
use candle_core::cuda_backend::{CudaDType, WrapErr};
use candle_core::{CudaDevice, CudaStorage, Layout, Result};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/paramx_kernels.ptx"));
const MODULE: &str = "paramx_fused";
const THREADS: u32 = 256;
/// Must match `SOFTMAX_THREADS` in `kernels.cu` (its `__launch_bounds__`).
const SOFTMAX_THREADS: u32 = 256;

/// Grid for a grid-stride loop over `n` elements.
fn grid(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(THREADS as usize).clamp(1, 1 << 16) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn view<'a, T>(s: &'a CudaSlice<T>, l: &Layout, what: &str) -> Result<CudaView<'a, T>> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(s.slice(a..b)),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

/// Runs `$body` with `$t` the Rust type of `$dtype` (bf16 or f32, the two types the kernels
/// are instantiated for) and `$name` the kernel `$base` for it (`$base` + `_bf16` / `_f32`);
/// the GPU counterpart of `with_float!` in `mod.rs`.
macro_rules! with_gpu_float {
    ($dtype:expr, $base:literal, $t:ident, $name:ident => $body:expr) => {
        match $dtype {
            candle_core::DType::BF16 => {
                type $t = half::bf16;
                const $name: &str = concat!($base, "_bf16");
                $body
            }
            candle_core::DType::F32 => {
                type $t = f32;
                const $name: &str = concat!($base, "_f32");
                $body
            }
            d => candle_core::bail!("{}: only bf16 and f32 have GPU kernels, got {d:?}", $base),
        }
    };
}

fn same<'a, T: CudaDType>(s: &'a CudaStorage, what: &str) -> Result<&'a CudaSlice<T>> {
    s.as_cuda_slice::<T>()
        .map_err(|e| candle_core::Error::Msg(format!("{what}: dtype differs from the input: {e}")))
}

pub(super) fn silu_mul(
    s: &CudaStorage,
    l: &Layout,
    rows: usize,
    half_w: usize,
) -> Result<CudaStorage> {
    let dev = &s.device;
    let n = rows * half_w;
    let (r, w) = (rows as i64, half_w as i64);
    with_gpu_float!(s.dtype(), "silu_mul", T, NAME => {
        let x = view(same::<T>(s, "silu_mul input")?, l, "silu_mul input")?;
        // SAFETY: every element is written by the kernel below.
        let out = unsafe { dev.alloc::<T>(n)? };
        let f = dev.get_or_load_custom_func(NAME, MODULE, PTX)?;
        let mut b = f.builder();
        b.arg(&x).arg(&out).arg(&r).arg(&w);
        // SAFETY: argument types and order match `silu_mul_*` in kernels.cu.
        unsafe { b.launch(grid(n)) }.w()?;
        Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
    })
}

/// Must match `NORM_THREADS` in `kernels.cu` (its `__launch_bounds__`).
const NORM_THREADS: u32 = 512;

#[allow(clippy::too_many_arguments)]
pub(super) fn add_rms_norm(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
    rows: usize,
    h: usize,
    eps: f32,
) -> Result<CudaStorage> {
    let dev = &s1.device;
    let (r, hh) = (rows as i64, h as i64);
    let cfg = LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (NORM_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    with_gpu_float!(s1.dtype(), "add_rms_norm", T, NAME => {
        let x = view(same::<T>(s1, "add_rms_norm x")?, l1, "add_rms_norm x")?;
        let y = view(same::<T>(s2, "add_rms_norm y")?, l2, "add_rms_norm y")?;
        let w = view(
            same::<T>(s3, "add_rms_norm weight")?,
            l3,
            "add_rms_norm weight",
        )?;
        // SAFETY: the kernel writes every element of both halves.
        let out = unsafe { dev.alloc::<T>(2 * rows * h)? };
        let f = dev.get_or_load_custom_func(NAME, MODULE, PTX)?;
        let mut b = f.builder();
        b.arg(&x)
            .arg(&y)
            .arg(&w)
            .arg(&out)
            .arg(&r)
            .arg(&hh)
            .arg(&eps);
        // SAFETY: argument types and order match `add_rms_norm_*` in kernels.cu.
        unsafe { b.launch(cfg) }.w()?;
        Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
    })
}

#[allow(clippy::too_many_arguments)]
pub(super) fn rope_q(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
    h: Heads,
    batch: usize,
    t: usize,
) -> Result<CudaStorage> {
    let dev = &s1.device;
    let n = batch * h.heads * t * h.head_dim;
    let dims = [batch, t, h.heads, h.kv_heads, h.head_dim].map(|d| d as i64);
    with_gpu_float!(s1.dtype(), "rope_q", T, NAME => {
        let qkv = view(same::<T>(s1, "rope_q qkv")?, l1, "rope_q qkv")?;
        let bias = view(same::<T>(s2, "rope_q bias")?, l2, "rope_q bias")?;
        let cs = view(same::<T>(s3, "rope_q cos/sin")?, l3, "rope_q cos/sin")?;
        // SAFETY: the kernel writes every (sequence, head, token, dim) element.
        let q = unsafe { dev.alloc::<T>(n)? };
        let f = dev.get_or_load_custom_func(NAME, MODULE, PTX)?;
        let mut b = f.builder();
        b.arg(&qkv).arg(&bias).arg(&cs).arg(&q);
        for d in &dims {
            b.arg(d);
        }
        // SAFETY: argument types and order match `rope_q_*` in kernels.cu.
        unsafe { b.launch(grid(n / 2)) }.w()?;
        Ok(CudaStorage::wrap_cuda_slice(q, dev.clone()))
    })
}

#[allow(clippy::too_many_arguments)]
pub(super) fn kv_append(
    cache: &mut CudaStorage,
    lc: &Layout,
    s_qkv: &CudaStorage,
    l_qkv: &Layout,
    s_bias: &CudaStorage,
    l_bias: &Layout,
    s_cs: &CudaStorage,
    l_cs: &Layout,
    h: Heads,
    batch: usize,
    t: usize,
    slot0: usize,
) -> Result<()> {
    let dev = cache.device.clone();
    let cap = lc.dims()[3];
    let Some((c0, c1)) = lc.contiguous_offsets() else {
        candle_core::bail!("kv_append: the cache must be contiguous")
    };
    let dims = [batch, t, h.heads, h.kv_heads, h.head_dim, cap, slot0].map(|d| d as i64);
    let n = batch * t * h.kv_heads * h.head_dim / 2;
    with_gpu_float!(cache.dtype(), "kv_append", T, NAME => {
        let qkv = view(same::<T>(s_qkv, "kv_append qkv")?, l_qkv, "kv_append qkv")?;
        let bias = view(
            same::<T>(s_bias, "kv_append bias")?,
            l_bias,
            "kv_append bias",
        )?;
        let cs = view(
            same::<T>(s_cs, "kv_append cos/sin")?,
            l_cs,
            "kv_append cos/sin",
        )?;
        let mut c = cache.as_cuda_slice_mut::<T>()?.slice_mut(c0..c1);
        let f = dev.get_or_load_custom_func(NAME, MODULE, PTX)?;
        let mut b = f.builder();
        b.arg(&mut c).arg(&qkv).arg(&bias).arg(&cs);
        for d in &dims {
            b.arg(d);
        }
        // SAFETY: argument types and order match `kv_append_*` in kernels.cu; the caller
        // checked that slots slot0..slot0 + t lie inside the cache.
        unsafe { b.launch(grid(n)) }.w()?;
        Ok(())
    })
}

pub(super) fn masked_softmax(
    scores: &mut CudaStorage,
    ls: &Layout,
    pad: &CudaStorage,
    lp: &Layout,
    r: ScoreRows,
) -> Result<()> {
    let dev = scores.device.clone();
    let keys = *ls.dims().last().unwrap_or(&0);
    let rows = ls.shape().elem_count() / keys.max(1);
    if rows == 0 || keys == 0 {
        return Ok(());
    }
    let Some((s0, s1)) = ls.contiguous_offsets() else {
        candle_core::bail!("masked_softmax: the scores must be contiguous")
    };
    let pad = view(
        same::<u32>(pad, "masked_softmax pad")?,
        lp,
        "masked_softmax pad",
    )?;
    let cfg = LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (SOFTMAX_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    let args = [r.rows_per_seq, r.queries, keys, r.q_slot0].map(|d| d as i64);
    with_gpu_float!(scores.dtype(), "masked_softmax", T, NAME => {
        let mut s = scores.as_cuda_slice_mut::<T>()?.slice_mut(s0..s1);
        let f = dev.get_or_load_custom_func(NAME, MODULE, PTX)?;
        let mut b = f.builder();
        b.arg(&mut s).arg(&pad);
        for a in &args {
            b.arg(a);
        }
        b.arg(&r.scale);
        // SAFETY: argument types and order match `masked_softmax_*` in kernels.cu; one
        // block per row of `keys` contiguous elements.
        unsafe { b.launch(cfg) }.w()?;
        Ok(())
    })
}

/// Must match `DEC_THREADS`, `DEC_KEYS` in `kernels.cu`.
const DEC_THREADS: u32 = 128;
const DEC_KEYS: usize = 64;
/// The combining block reads the splits one batch after another: past this many, the GEMM path
/// (with its softmax over whole rows) is the faster one (`DECODE_MAX_KEYS / DEC_KEYS`).
const DEC_MAX_SPLITS: usize = super::DECODE_MAX_KEYS / DEC_KEYS;
/// Query rows one decode-attention launch may have (the grid's y dimension).
const DEC_MAX_ROWS: usize = 65_535;

/// Per-row completion counters of the decode attention, one array per candle device (so per
/// stream: launches that share it never overlap). Zeroed once; each launch leaves every
/// counter at zero again (the row's last block resets it), so no launch needs a memset.
fn decode_counters(dev: &CudaDevice) -> Result<CudaSlice<u32>> {
    static COUNTERS: OnceLock<Mutex<HashMap<DeviceId, CudaSlice<u32>>>> = OnceLock::new();
    let mut map = COUNTERS
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| candle_core::Error::Msg("decode counters: lock poisoned".into()))?;
    if let Some(c) = map.get(&dev.id()) {
        return Ok(c.clone());
    }
    let c = dev.alloc_zeros::<u32>(DEC_MAX_ROWS)?;
    map.insert(dev.id(), c.clone());
    Ok(c)
}

/// The storages of [`super::attention_decode`], each with its layout.
pub(super) struct DecodeArgs<'a> {
    pub qkv: (&'a CudaStorage, &'a Layout),
    pub cs: (&'a CudaStorage, &'a Layout),
    pub cache: (&'a CudaStorage, &'a Layout),
    pub bias: (&'a CudaStorage, &'a Layout),
    pub pad: (&'a CudaStorage, &'a Layout),
    /// The shared prefix's cache `(2, 1, kv_heads, capacity, head_dim)` and its length, for
    /// [`super::attention_cascade_decode`].
    pub prefix: Option<(&'a CudaStorage, &'a Layout, usize)>,
}

/// Must match `CAS_THREADS`, `CAS_ROWS`, `CAS_KEYS` in `kernels.cu`.
const CAS_THREADS: u32 = 256;
const CAS_ROWS: usize = 128;
const CAS_KEYS: usize = 64;
/// Blocks the prefix kernel aims for: two per SM of an H100 (132 SMs), so that every SM has
/// work in the last wave too; more splits only add partials for the combine to read.
const CAS_TARGET_BLOCKS: usize = 264;

/// Geometry of the cascade's prefix launch: `(row tiles, tiles per split, splits)` for `rows`
/// query rows per KV head over `plen` prefix keys.
fn cascade_splits(rows_per_kv: usize, kv_heads: usize, plen: usize) -> (usize, usize, usize) {
    let rtiles = rows_per_kv.div_ceil(CAS_ROWS).max(1);
    let tiles = plen.div_ceil(CAS_KEYS);
    let per_split = (tiles * kv_heads * rtiles)
        .div_ceil(CAS_TARGET_BLOCKS)
        .max(1);
    (rtiles, per_split, tiles.div_ceil(per_split))
}

pub(super) fn attention_decode(
    a: DecodeArgs<'_>,
    h: Heads,
    batch: usize,
    t: usize,
    q_slot0: usize,
) -> Result<CudaStorage> {
    let dev = a.qkv.0.device.clone();
    let hd = h.head_dim;
    let rows = batch * h.heads * t;
    let cap = a.cache.1.dims()[3];
    let splits = (q_slot0 + t).div_ceil(DEC_KEYS).max(1);
    if !super::decode_head_dim(hd) || rows > DEC_MAX_ROWS || splits > DEC_MAX_SPLITS {
        candle_core::bail!(
            "attention_decode: head_dim {hd} (a power of two, 16 to 128), {rows} query rows (max {DEC_MAX_ROWS}) or {splits} key splits (max {DEC_MAX_SPLITS}) not supported"
        )
    }
    // The kernel loads 16-byte vectors from rows of head_dim elements: the views must start
    // on a 16-byte boundary (candle's allocations do; a view at an odd offset would not).
    let elem = a.qkv.0.dtype().size_in_bytes();
    let mut starts = vec![
        ("qkv", a.qkv.1),
        ("cos/sin", a.cs.1),
        ("cache", a.cache.1),
        ("bias", a.bias.1),
    ];
    if let Some((_, l, _)) = a.prefix {
        starts.push(("prefix cache", l));
    }
    for (what, l) in starts {
        if (l.start_offset() * elem) % 16 != 0 {
            candle_core::bail!("attention_decode: {what} starts off a 16-byte boundary")
        }
    }
    // SAFETY: every block writes its whole partial before the row's last block reads them.
    let part = unsafe { dev.alloc::<f32>(rows * splits * (hd + 2))? };
    let done = decode_counters(&dev)?;
    let pad = view(
        same::<u32>(a.pad.0, "attention_decode pad")?,
        a.pad.1,
        "attention_decode pad",
    )?;
    let scale = 1.0 / (hd as f32).sqrt();
    // The shared prefix first: its partials, which the decode kernel's combine folds in (same
    // stream: they are complete before it starts).
    let (ppart, psplits) = match a.prefix {
        Some((ps, pl, plen)) if plen > 0 => cascade_prefix(&a, (ps, pl, plen), h, batch, t, scale)?,
        _ => (None, 0),
    };
    let dims = [batch, t, h.heads, h.kv_heads, cap, q_slot0, splits, psplits].map(|d| d as i64);
    let cfg = LaunchConfig {
        grid_dim: (splits as u32, rows as u32, 1),
        block_dim: (DEC_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    with_gpu_float!(a.qkv.0.dtype(), "attn_decode", T, NAME => {
        let qkv = view(same::<T>(a.qkv.0, "attention_decode qkv")?, a.qkv.1, "qkv")?;
        let cs = view(
            same::<T>(a.cs.0, "attention_decode cos/sin")?,
            a.cs.1,
            "cos/sin",
        )?;
        let cache = view(
            same::<T>(a.cache.0, "attention_decode cache")?,
            a.cache.1,
            "cache",
        )?;
        let bias = view(
            same::<T>(a.bias.0, "attention_decode bias")?,
            a.bias.1,
            "bias",
        )?;
        // SAFETY: the last block of each row writes its whole output row.
        let out = unsafe { dev.alloc::<T>(rows * hd)? };
        // One kernel per head dimension (`INSTANTIATE_DECODE` in kernels.cu).
        let f = dev.get_or_load_custom_func(&format!("{NAME}_{hd}"), MODULE, PTX)?;
        let mut b = f.builder();
        b.arg(&qkv)
            .arg(&bias)
            .arg(&cs)
            .arg(&cache)
            .arg(&pad)
            .arg(&part);
        // Without a prefix the kernel never reads `ppart` (psplits = 0): any pointer will do.
        match &ppart {
            Some(pp) => b.arg(pp),
            None => b.arg(&part),
        };
        b.arg(&out).arg(&done);
        for d in &dims {
            b.arg(d);
        }
        b.arg(&scale);
        // SAFETY: argument types and order match `attn_decode_*_*` in kernels.cu; `done`
        // holds DEC_MAX_ROWS >= rows zeroed counters; `ppart` holds rows x psplits partials.
        unsafe { b.launch(cfg) }.w()?;
        Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
    })
}

/// Launches `cascade_prefix_bf16_<hd>` (the shared prefix's half of cascade decode attention)
/// and returns its partials `(rows, psplits, hd + 2)` with `psplits`.
fn cascade_prefix(
    a: &DecodeArgs<'_>,
    prefix: (&CudaStorage, &Layout, usize),
    h: Heads,
    batch: usize,
    t: usize,
    scale: f32,
) -> Result<(Option<CudaSlice<f32>>, usize)> {
    let (ps, pl, plen) = prefix;
    let dev = a.qkv.0.device.clone();
    let hd = h.head_dim;
    let pdims = pl.dims();
    if pdims.len() != 5
        || pdims[0] != 2
        || pdims[1] != 1
        || pdims[2] != h.kv_heads
        || pdims[4] != hd
        || plen > pdims[3]
    {
        candle_core::bail!(
            "attention_cascade_decode: prefix cache {pdims:?} does not hold {plen} keys of {h:?}"
        )
    }
    if a.qkv.0.dtype() != candle_core::DType::BF16 || ps.dtype() != candle_core::DType::BF16 {
        candle_core::bail!(
            "attention_cascade_decode: the GPU kernel is bf16 only (tensor-core operands), got {:?}",
            a.qkv.0.dtype()
        )
    }
    let rows = batch * h.heads * t;
    let (rtiles, per_split, psplits) =
        cascade_splits(batch * t * (h.heads / h.kv_heads), h.kv_heads, plen);
    if rtiles > u16::MAX as usize || psplits > DEC_MAX_SPLITS {
        candle_core::bail!(
            "attention_cascade_decode: {rtiles} row tiles or {psplits} prefix splits not supported"
        )
    }
    // SAFETY: each (row, split) partial is written by the block of that split and row tile.
    let ppart = unsafe { dev.alloc::<f32>(rows * psplits * (hd + 2))? };
    let dims = [
        batch, t, h.heads, h.kv_heads, pdims[3], plen, per_split, psplits,
    ]
    .map(|d| d as i64);
    let cfg = LaunchConfig {
        grid_dim: (psplits as u32, h.kv_heads as u32, rtiles as u32),
        block_dim: (CAS_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    type T = half::bf16;
    let qkv = view(same::<T>(a.qkv.0, "cascade qkv")?, a.qkv.1, "qkv")?;
    let bias = view(same::<T>(a.bias.0, "cascade bias")?, a.bias.1, "bias")?;
    let cs = view(same::<T>(a.cs.0, "cascade cos/sin")?, a.cs.1, "cos/sin")?;
    let pc = view(same::<T>(ps, "cascade prefix cache")?, pl, "prefix cache")?;
    let f = dev.get_or_load_custom_func(&format!("cascade_prefix_bf16_{hd}"), MODULE, PTX)?;
    let mut b = f.builder();
    b.arg(&qkv).arg(&bias).arg(&cs).arg(&pc).arg(&ppart);
    for d in &dims {
        b.arg(d);
    }
    b.arg(&scale);
    // SAFETY: argument types and order match `cascade_prefix_bf16_*` in kernels.cu; the
    // prefix cache holds `plen` <= capacity keys (checked above).
    unsafe { b.launch(cfg) }.w()?;
    Ok((Some(ppart), psplits))
}
