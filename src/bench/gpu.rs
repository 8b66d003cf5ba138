//! `paramx bench-gpu`: the rank-0 workload of Qwen2.5-72B TP=2 on one GPU, from random bf16
//! weights at the rank's real shapes, run through the real engine (`Qwen2::load` with a
//! [`RandomSource`], `Qwen2::forward`, `Qwen2::greedy`; the all-reduce is the identity since
//! there is no partner rank).
//!
//! Measures, in one process: the machine's copy bandwidth and bf16 matmul rate (the ceilings);
//! peak device memory of prefill + decode for several prompt lengths beside `paramx plan`'s
//! numbers for the same job; prefill tokens/s; decode ms/step at several batch sizes; bytes and
//! FLOPs per step from [`crate::bench::roofline`] and the achieved rates. Prints a table and
//! writes JSON. `--shape tiny --cpu` runs the same code on a tiny model (CI checks the plumbing).
//! With `--tp N` (the `nccl` build) the whole 72B model is split over N GPUs instead: one process
//! per GPU, joined through NCCL, every rank running the same measurements in step (the
//! all-reduces are real), rank 0 reporting its own GPU's numbers.
//! This is a benchmark: it asserts no speed.

use crate::bench::{median, peak, roofline};
use crate::model::fused::Kernels;
use crate::model::load::random::RandomSource;
use crate::model::shapes;
use crate::model::{ModelOptions, Qwen2, Qwen2Config};
use crate::plan::{GpuMemory, GpuPreset, JobLimits, ModelShape, PlanRequest};
use crate::run::driver::{nccl_rank, Launch};
use crate::run::job::DeviceKind;
use crate::tp::launch::RankEnv;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// Memory sampling interval inside timed runs (rare enough not to disturb them).
const SLOW_SAMPLING: std::time::Duration = std::time::Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// Rank 0 of Qwen2.5-72B-Instruct under TP=2 (32 heads, 4 KV heads, MLP 14784, vocab
    /// 76032, 80 layers, ~68 GiB of bf16 weights).
    #[value(name = "rank0-72b-tp2")]
    Rank0Qwen72bTp2,
    /// A 2-layer toy of the same structure (for checking the benchmark on a CPU).
    Tiny,
}

#[derive(clap::Args, Debug)]
pub struct Options {
    #[arg(long, value_enum, default_value = "rank0-72b-tp2")]
    pub shape: Shape,
    /// Run on the CPU in f32 (only sensible with `--shape tiny`).
    #[arg(long)]
    pub cpu: bool,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub gpu: usize,
    /// Prompt lengths whose peak memory is compared with the plan (each followed by
    /// `--memory-decode` decode steps).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1024usize, 8192, 30000])]
    pub memory_prompts: Vec<usize>,
    #[arg(long, default_value_t = 8)]
    pub memory_decode: usize,
    /// Prompt lengths whose prefill speed is measured (batch 1).
    #[arg(long, value_delimiter = ',', default_values_t = vec![2048usize, 16384])]
    pub prefill_prompts: Vec<usize>,
    /// Timed repetitions of each prefill (median reported).
    #[arg(long, default_value_t = 3)]
    pub prefill_repeats: usize,
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 4, 16])]
    pub decode_batches: Vec<usize>,
    /// Tokens already in each sequence's cache when decode timing starts.
    #[arg(long, default_value_t = 1024)]
    pub decode_context: usize,
    /// Timed decode steps per batch size (after 3 warm-up steps; median reported).
    #[arg(long, default_value_t = 20)]
    pub decode_steps: usize,
    /// Prompt tokens per prefill forward pass (as `paramx run` and the plan use).
    #[arg(long, default_value_t = 2048)]
    pub prefill_chunk: usize,
    /// Query rows per attention block.
    #[arg(long, default_value_t = 512)]
    pub query_block: usize,
    /// The layer glue to time: the fused kernels or the plain candle path (see
    /// `model::fused`).
    #[arg(long, value_enum, default_value = "fused")]
    pub kernels: Kernels,
    /// Also time the other kernels (decode, and prefill up to 4096 tokens) on the same weights
    /// in the same process, for side-by-side ratios.
    #[arg(long)]
    pub compare_plain: bool,
    /// Also time each op of a decode step's glue in isolation (fused and plain), at batch 1
    /// and `--decode-context` keys: where the step's time outside the GEMMs goes.
    #[arg(long)]
    pub profile_ops: bool,
    /// Split the whole model of `--shape rank0-72b-tp2` over this many GPUs (one process per
    /// GPU, NCCL; `nccl` build only). 1 runs rank 0's share alone on one GPU, no all-reduce.
    #[arg(long, default_value_t = 1)]
    pub tp: usize,
    /// Where the JSON goes (written by rank 0).
    #[arg(long, default_value = "target/bench-gpu.json")]
    pub json: PathBuf,
}

#[derive(Debug, Serialize)]
struct Ceilings {
    copy_bytes: f64,
    copy_gb_s: f64,
    matmul_n: usize,
    matmul_tflops: f64,
}

#[derive(Debug, Serialize)]
struct MemoryRow {
    prompt: usize,
    decode_steps: usize,
    measured_peak_bytes: Option<u64>,
    /// The plan's per-GPU total for this job at TP=N (rank 0) ...
    planned_total_bytes: u64,
    /// ... minus the NCCL buffers a single-process run does not allocate.
    planned_without_nccl_bytes: u64,
    planned_activation_peak_bytes: u64,
    planned_kv_bytes: u64,
    /// Measured peak over the plan's total (`--tp N`, NCCL buffers allocated) or over the plan
    /// without NCCL (rank 0's share alone).
    measured_over_planned: Option<f64>,
    prefill_secs: f64,
}

#[derive(Debug, Serialize)]
struct PrefillRow {
    kernels: Kernels,
    prompt: usize,
    secs_median: f64,
    secs_all: Vec<f64>,
    tokens_per_s: f64,
    flops: f64,
    tflops: f64,
    fraction_of_matmul_rate: f64,
    peak_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
struct DecodeRow {
    kernels: Kernels,
    batch: usize,
    context: usize,
    ms_per_step_median: f64,
    ms_all: Vec<f64>,
    /// The step's projections alone (every layer's GEMMs and the lm_head), same batch.
    projections_ms_median: f64,
    /// Host time to issue the step's forward pass (before the read-back).
    host_issue_ms_median: f64,
    tokens_per_s: f64,
    bytes_per_step: f64,
    flops_per_step: f64,
    achieved_gb_s: f64,
    fraction_of_copy_bw: f64,
    floor_ms: f64,
    achieved_tflops: f64,
    peak_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
struct OpRow {
    op: String,
    kernels: Kernels,
    /// Median over 5 batches of back-to-back calls, host clock, per call: the pace of the
    /// host issuing them when the GPU keeps up.
    us_per_call: f64,
    /// GPU time per call between CUDA events, the calls queued behind a long matmul so that the
    /// host is ahead: what the op costs the GPU inside a step (None on the CPU).
    gpu_us_per_call: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: String,
    shape: String,
    /// GPUs the model was split over (1: rank 0's share alone, no all-reduce).
    tp: usize,
    config: serde_json::Value,
    dtype: String,
    weights_bytes_resident: Option<u64>,
    load_secs: f64,
    ceilings: Ceilings,
    memory: Vec<MemoryRow>,
    prefill: Vec<PrefillRow>,
    decode: Vec<DecodeRow>,
    logits_finite: bool,
    /// Per-op times of a decode step's glue (`--profile-ops`).
    ops: Vec<OpRow>,
    /// Scenarios that failed (e.g. out of memory); the others still ran.
    errors: Vec<String>,
}

use crate::model::load::random::token_ids;

fn time_median(dev: &Device, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    dev.synchronize()?;
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps {
        let s = Instant::now();
        f()?;
        dev.synchronize()?;
        t.push(s.elapsed().as_secs_f64());
    }
    Ok(median(&t))
}

/// Device-to-device copy bandwidth (bytes read + written) and square bf16 matmul rate.
fn ceilings(dev: &Device, dtype: DType) -> Result<Ceilings> {
    let (elems, n) = if dev.is_cpu() {
        (1 << 22, 256)
    } else {
        (1 << 30, 8192)
    };
    let x = Tensor::randn(0f32, 1.0, elems, dev)?.to_dtype(dtype)?;
    let copy_bytes = 2.0 * (elems * dtype.size_in_bytes()) as f64;
    let secs = time_median(dev, 10, || {
        let _y = x.copy()?;
        Ok(())
    })?;
    drop(x);
    let a = Tensor::randn(0f32, 1.0, (n, n), dev)?.to_dtype(dtype)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), dev)?.to_dtype(dtype)?;
    let mm = time_median(dev, 10, || {
        let _c = a.matmul(&b)?;
        Ok(())
    })?;
    Ok(Ceilings {
        copy_bytes,
        copy_gb_s: copy_bytes / secs / 1e9,
        matmul_n: n,
        matmul_tflops: 2.0 * (n as f64).powi(3) / mm / 1e12,
    })
}

/// Prefills `ids` (`batch` rows of equal length) in chunks; returns the last hidden states.
fn prefill(
    model: &Qwen2,
    ids: &[Vec<u32>],
    chunk: usize,
    cache: &mut crate::model::kv_cache::KvCache,
) -> Result<Tensor> {
    let dev = model.device();
    let len = ids[0].len();
    let mut c0 = 0;
    let mut last = None;
    while c0 < len {
        let n = chunk.min(len - c0);
        let flat: Vec<u32> = ids
            .iter()
            .flat_map(|r| r[c0..c0 + n].iter().copied())
            .collect();
        let x = Tensor::from_vec(flat, (ids.len(), n), dev)?;
        let h = model.forward(&x, cache)?;
        last = Some(Qwen2::last_hidden(&h)?);
        c0 += n;
    }
    last.context("empty prompt")
}

/// What the measuring functions share.
struct Ctx<'a> {
    args: &'a Options,
    cfg: &'a Qwen2Config,
    dev: &'a Device,
    ceil: &'a Ceilings,
    sb: f64,
}

/// Prefill speed (batch 1) for each prompt length, with the model's current kernels.
fn measure_prefill(
    c: &Ctx<'_>,
    model: &Qwen2,
    prompts: &[usize],
    errors: &mut Vec<String>,
) -> Result<Vec<PrefillRow>> {
    let (args, dev) = (c.args, c.dev);
    let kernels = model.kernels();
    let mut rows = Vec::new();
    for &p in prompts {
        let ids = vec![token_ids(p, c.cfg.vocab_size, 1000 + p as u64)];
        let mut secs = Vec::new();
        let mut peak_max: Option<u64> = None;
        for _ in 0..args.prefill_repeats.max(1) {
            dev.synchronize()?;
            let run = peak::with_peak_every(dev, SLOW_SAMPLING, || {
                let mut cache = model.new_cache(vec![0], p + 1)?;
                let t = Instant::now();
                let last = prefill(model, &ids, args.prefill_chunk, &mut cache)?;
                let _ = model.greedy(&last)?;
                Ok(t.elapsed().as_secs_f64())
            });
            let (s, pk) = match run {
                Ok(r) => r,
                Err(e) => {
                    errors.push(format!("prefill {p} ({kernels:?}): {e:#}"));
                    break;
                }
            };
            secs.push(s);
            peak_max = peak_max.max(pk);
        }
        if secs.is_empty() {
            continue;
        }
        let m = median(&secs);
        let cost = roofline::prefill(c.cfg, c.sb, p, args.prefill_chunk);
        let tflops = cost.flops / m / 1e12;
        let row = PrefillRow {
            kernels,
            prompt: p,
            secs_median: m,
            secs_all: secs,
            tokens_per_s: p as f64 / m,
            flops: cost.flops,
            tflops,
            fraction_of_matmul_rate: tflops / c.ceil.matmul_tflops,
            peak_bytes: peak_max,
        };
        eprintln!("prefill {p}: {row:?}");
        rows.push(row);
    }
    Ok(rows)
}

/// Decode ms/step for each batch size after a `decode_context`-token prefill, with the model's
/// current kernels; beside it the projections alone on the same batch (the weight-read part of
/// the step, through the same GEMMs), which separates the GEMM rate from everything around it.
fn measure_decode(c: &Ctx<'_>, model: &Qwen2, errors: &mut Vec<String>) -> Result<Vec<DecodeRow>> {
    let (args, dev, cfg) = (c.args, c.dev, c.cfg);
    let kernels = model.kernels();
    let mut rows = Vec::new();
    for &bsz in &args.decode_batches {
        let ids: Vec<Vec<u32>> = (0..bsz)
            .map(|r| token_ids(args.decode_context, cfg.vocab_size, 77 + r as u64))
            .collect();
        let run = peak::with_peak_every(dev, SLOW_SAMPLING, || {
            let mut cache =
                model.new_cache(vec![0; bsz], args.decode_context + args.decode_steps + 4)?;
            let last = prefill(model, &ids, args.prefill_chunk, &mut cache)?;
            let mut next = model.greedy(&last)?;
            let (mut ms, mut enqueue) = (Vec::new(), Vec::new());
            for step in 0..args.decode_steps + 3 {
                dev.synchronize()?;
                let t = Instant::now();
                let x = Tensor::from_vec(next.clone(), (bsz, 1), dev)?;
                let h = model.forward(&x, &mut cache)?;
                // Host time to issue the step's work: close to the step time means the host
                // (launch overhead), not the GPU, sets the pace.
                let issued = t.elapsed().as_secs_f64() * 1e3;
                next = model.greedy(&Qwen2::last_hidden(&h)?)?; // reads back: synchronizes
                if step >= 3 {
                    ms.push(t.elapsed().as_secs_f64() * 1e3);
                    enqueue.push(issued);
                }
            }
            // The projections alone (no norms, attention, activations, logits).
            let x = Tensor::zeros((bsz, 1, cfg.hidden_size), model.dtype(), dev)?;
            let mut proj = Vec::new();
            for step in 0..args.decode_steps + 3 {
                dev.synchronize()?;
                let t = Instant::now();
                model.projections_only(&x)?;
                dev.synchronize()?;
                if step >= 3 {
                    proj.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
            Ok((ms, proj, enqueue))
        });
        let ((ms, proj, enqueue), pk) = match run {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("decode batch {bsz} ({kernels:?}): {e:#}"));
                eprintln!("decode b={bsz}: FAILED: {e:#}");
                continue;
            }
        };
        let med = median(&ms);
        let context = args.decode_context + 3 + args.decode_steps / 2;
        let cost = roofline::decode_step(cfg, c.sb, bsz, context);
        let gbs = cost.bytes / (med / 1e3) / 1e9;
        let row = DecodeRow {
            kernels,
            batch: bsz,
            context,
            ms_per_step_median: med,
            ms_all: ms,
            projections_ms_median: median(&proj),
            host_issue_ms_median: median(&enqueue),
            tokens_per_s: bsz as f64 / (med / 1e3),
            bytes_per_step: cost.bytes,
            flops_per_step: cost.flops,
            achieved_gb_s: gbs,
            fraction_of_copy_bw: gbs / c.ceil.copy_gb_s,
            floor_ms: cost.bytes / (c.ceil.copy_gb_s * 1e9) * 1e3,
            achieved_tflops: cost.flops / (med / 1e3) / 1e12,
            peak_bytes: pk,
        };
        eprintln!("decode b={bsz}: {row:?}");
        rows.push(row);
    }
    Ok(rows)
}

/// Times each op of a decode step's glue at batch 1 on random inputs of the rank's shapes,
/// fused and plain: `reps` back-to-back calls, synchronized once, median of 5 such batches.
fn profile_ops(c: &Ctx<'_>) -> Result<Vec<OpRow>> {
    use crate::model::attention::{attention, attention_fused, AttentionLayout};
    use crate::model::fused::{self, Heads};
    let (cfg, dev) = (c.cfg, c.dev);
    let dt = if dev.is_cpu() {
        DType::F32
    } else {
        DType::BF16
    };
    let reps = 200;
    let time = |f: &mut dyn FnMut() -> candle_core::Result<()>| -> Result<f64> {
        let mut batches = Vec::new();
        f()?;
        dev.synchronize()?;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..reps {
                f()?;
            }
            dev.synchronize()?;
            batches.push(t.elapsed().as_secs_f64() * 1e6 / reps as f64);
        }
        Ok(median(&batches))
    };
    let r = |shape: &[usize]| -> Result<Tensor> {
        Ok(Tensor::randn(0f32, 1.0, shape, dev)?.to_dtype(dt)?)
    };
    let (h, hd) = (cfg.hidden_size, cfg.head_dim);
    let geo = Heads {
        heads: cfg.num_attention_heads,
        kv_heads: cfg.num_key_value_heads,
        head_dim: hd,
    };
    let ctx_len = c.args.decode_context;
    let (x, y, w) = (r(&[1, 1, h])?, r(&[1, 1, h])?, r(&[h])?);
    let qkv = r(&[1, 1, geo.width()])?;
    let bias = r(&[geo.width()])?;
    let cs = r(&[1, 1, hd])?;
    let cache = r(&[2, 1, geo.kv_heads, ctx_len + 8, hd])?;
    let q = r(&[1, geo.heads, 1, hd])?;
    let (k, v) = (
        cache.get(0)?.narrow(2, 0, ctx_len + 1)?,
        cache.get(1)?.narrow(2, 0, ctx_len + 1)?,
    );
    let pad_v = [0usize];
    let pad = Tensor::new(&[0u32], dev)?;
    let layout = AttentionLayout {
        pad: &pad_v,
        q_slot0: ctx_len,
        block: 512,
    };
    let gu = r(&[1, 1, 2 * cfg.intermediate_size])?;
    let f = cfg.intermediate_size;
    let busy = if dev.is_cpu() {
        None
    } else {
        Some((r(&[8192, 8192])?, r(&[8192, 8192])?))
    };
    let gpu = |f: &mut dyn FnMut() -> candle_core::Result<()>| -> Result<Option<f64>> {
        gpu_us(dev, busy.as_ref(), 50, f)
    };
    let mut rows = Vec::new();
    let mut push = |op: &str, kernels: Kernels, (us, gpu_us): (f64, Option<f64>)| {
        eprintln!("op {op} ({kernels:?}): {us:.2} us host, {gpu_us:?} us GPU");
        rows.push(OpRow {
            op: op.into(),
            kernels,
            us_per_call: us,
            gpu_us_per_call: gpu_us,
        });
    };
    // Both clocks for one op.
    let both = |f: &mut dyn FnMut() -> candle_core::Result<()>| -> Result<(f64, Option<f64>)> {
        Ok((time(f)?, gpu(f)?))
    };
    let (fu, pl) = (Kernels::Fused, Kernels::Plain);
    push(
        "add + rms_norm",
        fu,
        both(&mut || fused::add_rms_norm(&x, &y, &w, 1e-6).map(drop))?,
    );
    push(
        "add + rms_norm",
        pl,
        both(&mut || candle_nn::ops::rms_norm(&(&x + &y)?, &w, 1e-6).map(drop))?,
    );
    push(
        "rope q",
        fu,
        both(&mut || fused::rope_q(&qkv, &bias, &cs, geo).map(drop))?,
    );
    push(
        "kv append",
        fu,
        both(&mut || fused::kv_append(&cache, &qkv, &bias, &cs, geo, ctx_len))?,
    );
    push(
        &format!("attention over {} keys", ctx_len + 1),
        fu,
        both(&mut || attention_fused(&q, &k, &v, layout, &pad).map(drop))?,
    );
    push(
        &format!("attention over {} keys", ctx_len + 1),
        pl,
        both(&mut || attention(&q, &k, &v, layout).map(drop))?,
    );
    push(
        &format!(
            "decode attention (rope q included) over {} keys",
            ctx_len + 1
        ),
        fu,
        both(&mut || {
            fused::attention_decode(&qkv, &bias, &cs, &cache, &pad, geo, ctx_len).map(drop)
        })?,
    );
    push(
        "silu * up",
        fu,
        both(&mut || fused::silu_mul(&gu).map(drop))?,
    );
    push(
        "silu * up",
        pl,
        both(&mut || {
            (candle_nn::ops::silu(&gu.narrow(2, 0, f)?)? * gu.narrow(2, f, f)?).map(drop)
        })?,
    );
    Ok(rows)
}

/// GPU microseconds per call of `f`, `reps` calls between two CUDA events, queued behind a
/// long matmul (`busy`) so that the host has issued them all before the GPU reaches them.
fn gpu_us(
    dev: &Device,
    busy: Option<&(Tensor, Tensor)>,
    reps: usize,
    f: &mut dyn FnMut() -> candle_core::Result<()>,
) -> Result<Option<f64>> {
    match (dev, busy) {
        #[cfg(feature = "cuda")]
        (Device::Cuda(d), Some((a, b))) => {
            use candle_core::cuda_backend::cudarc::driver::sys::CUevent_flags;
            let stream = d.cuda_stream();
            f()?;
            dev.synchronize()?;
            let _hold = a.matmul(b)?;
            let e0 = stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
            for _ in 0..reps {
                f()?;
            }
            let e1 = stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
            let ms = e0.elapsed_ms(&e1)?;
            Ok(Some(ms as f64 * 1e3 / reps as f64))
        }
        _ => {
            let _ = (busy, reps, &f);
            Ok(None)
        }
    }
}

pub fn run(args: Options) -> Result<ExitCode> {
    if args.tp == 0 {
        bail!("--tp must be at least 1");
    }
    if args.tp > 1 && (args.cpu || args.shape != Shape::Rank0Qwen72bTp2) {
        bail!(
            "--tp > 1 splits the 72B model over GPUs: it needs --shape rank0-72b-tp2 and no --cpu"
        )
    }
    // The same decision as `paramx run`'s: one process, the launcher of N rank processes, or
    // one of them (never CPU threads: refused just above).
    let device = if args.cpu {
        DeviceKind::Cpu
    } else {
        DeviceKind::Cuda
    };
    let part = Launch::decide(args.tp, device, RankEnv::from_env()?)?;
    if let Launch::Launcher(_) = part {
        // Every rank runs this same command line; a failing rank ends the run naming it.
        let spec = crate::tp::launch::LaunchSpec::current_exe(args.tp)?;
        crate::tp::launch::run_ranks(&spec)?;
        return Ok(ExitCode::SUCCESS);
    }
    // `cfg` is what one rank holds (the roofline's bytes and FLOPs per rank); `load_cfg` is what
    // `Qwen2::load` builds: the rank's share alone, or the whole model that the TP group splits.
    let (model_shape, tp, cfg, load_cfg): (ModelShape, u64, Qwen2Config, Qwen2Config) = match args
        .shape
    {
        Shape::Rank0Qwen72bTp2 => {
            // Alone: rank 0 of TP=2; split over N GPUs: each rank's share of TP=N.
            let ranks = if args.tp > 1 { args.tp as u64 } else { 2 };
            let (m, r) = shapes::qwen25_72b(ranks)?;
            let cfg = shapes::rank_config(&m, &r);
            let load_cfg = match part {
                Launch::Rank(_) => shapes::rank_config(&m, &crate::plan::RankShape::new(&m, 1)?),
                _ => cfg.clone(),
            };
            (m, ranks, cfg, load_cfg)
        }
        Shape::Tiny => {
            let cfg = shapes::tiny();
            // The tiny model is one rank of itself: its own config, as the plan counts it.
            let m = ModelShape {
                name: "tiny".into(),
                ..cfg.shape()
            };
            (m, 1, cfg.clone(), cfg)
        }
    };
    let (gpu_ordinal, leader) = match &part {
        Launch::Rank(env) => (env.device_ordinal, env.rank == 0),
        _ => (args.gpu, true),
    };
    // A rank's model lives on its communicator's device (and stream).
    let (comm, rank_dev) = match &part {
        Launch::Rank(env) => {
            let (c, d) = nccl_rank(env)?;
            (c, Some(d))
        }
        _ => (
            Arc::new(crate::tp::SingleRank) as Arc<dyn crate::tp::Communicator>,
            None,
        ),
    };
    let (dev, dtype) = if args.cpu {
        (Device::Cpu, DType::F32)
    } else {
        let d = match rank_dev {
            Some(d) => d,
            None => Device::new_cuda(args.gpu).with_context(|| {
                format!(
                    "cannot open CUDA device {} (use --cpu without a GPU)",
                    args.gpu
                )
            })?,
        };
        (d, DType::BF16)
    };
    let gpu: GpuMemory = if args.cpu {
        GpuPreset::H100_80gb.memory()
    } else {
        GpuMemory::query(gpu_ordinal)?
    };
    let machine = if args.cpu {
        "cpu".to_string()
    } else {
        gpu.name.clone()
    };
    let sb = dtype.size_in_bytes() as f64;
    eprintln!("bench-gpu: {machine}, {:?} shapes {cfg:?}", args.shape);

    let ceil = ceilings(&dev, dtype)?;
    eprintln!(
        "ceilings: copy {:.0} GB/s (read+write), bf16 matmul {}^3 {:.0} TFLOP/s",
        ceil.copy_gb_s, ceil.matmul_n, ceil.matmul_tflops
    );

    let longest = args
        .memory_prompts
        .iter()
        .chain(&args.prefill_prompts)
        .copied()
        .max()
        .unwrap_or(0)
        .max(args.decode_context)
        + args.memory_decode.max(args.decode_steps + 3)
        + 8;
    let opts = ModelOptions {
        device: dev.clone(),
        dtype,
        attention_block: args.query_block,
        max_positions: Some(longest),
        comm,
        // dense bf16 weights on the GPU: the quantized-prefill switch does not apply
        prefill_dense_min_tokens: None,
        kernels: args.kernels,
        stop: None,
    };
    let t0 = Instant::now();
    let model = Qwen2::load(&load_cfg, &RandomSource::new(&load_cfg), &opts)?;
    dev.synchronize()?;
    let load_secs = t0.elapsed().as_secs_f64();
    let resident = peak::used_now(&dev)?;
    eprintln!(
        "model built in {load_secs:.1} s; device memory in use {}",
        resident.map_or("n/a".into(), gib)
    );

    // Sanity: the random model's logits are finite (NaN would make every later number suspect).
    let logits_finite = {
        let mut cache = model.new_cache(vec![0], 8)?;
        let x = Tensor::new(token_ids(8, cfg.vocab_size, 7), &dev)?.unsqueeze(0)?;
        let h = model.forward(&x, &mut cache)?;
        let l = model.logits(&Qwen2::last_hidden(&h)?)?;
        let s = l.abs()?.sum_all()?.to_scalar::<f32>()?;
        s.is_finite() && s > 0.0
    };

    let mut errors: Vec<String> = Vec::new();
    // Warm-up (kernel loading, cuBLAS heuristics) outside every timed run.
    {
        let ids = vec![token_ids(args.prefill_chunk.min(2048), cfg.vocab_size, 5)];
        let mut cache = model.new_cache(vec![0], ids[0].len())?;
        prefill(&model, &ids, args.prefill_chunk, &mut cache)?;
        dev.synchronize()?;
    }
    let ctx = Ctx {
        args: &args,
        cfg: &cfg,
        dev: &dev,
        ceil: &ceil,
        sb,
    };
    let mut prefill_rows = measure_prefill(&ctx, &model, &args.prefill_prompts, &mut errors)?;
    let mut decode = measure_decode(&ctx, &model, &mut errors)?;
    let mut model = model;
    if args.compare_plain {
        // The same weights through the plain candle path, in the same process: the ratio of
        // the fused kernels' gain. Long prompts are skipped (minutes on the plain path).
        let other = match args.kernels {
            Kernels::Fused => Kernels::Plain,
            Kernels::Plain => Kernels::Fused,
        };
        model.set_kernels(other);
        let short: Vec<usize> = args
            .prefill_prompts
            .iter()
            .copied()
            .filter(|&p| p <= 4096)
            .collect();
        prefill_rows.extend(measure_prefill(&ctx, &model, &short, &mut errors)?);
        decode.extend(measure_decode(&ctx, &model, &mut errors)?);
        model.set_kernels(args.kernels);
    }
    let model = model;
    let ops = if args.profile_ops {
        profile_ops(&ctx)?
    } else {
        Vec::new()
    };

    // Memory beside the plan.
    let mut memory = Vec::new();
    for &p in &args.memory_prompts {
        let job = JobLimits {
            max_input_tokens: p as u64,
            max_new_tokens: args.memory_decode as u64,
            batch: 1,
            prefill_chunk: args.prefill_chunk as u64,
            query_block: args.query_block as u64,
            activation_headroom: None,
            dtype: crate::plan::DType::Bf16,
            question_tokens: None,
        };
        let plan = PlanRequest::new(model_shape.clone(), gpu.clone(), tp, job)?.plan();
        let b = &plan.budget;
        let ids = vec![token_ids(p, cfg.vocab_size, p as u64)];
        dev.synchronize()?;
        let measured = peak::with_peak(&dev, || {
            let mut cache = model.new_cache(vec![0], p + args.memory_decode)?;
            let t = Instant::now();
            let last = prefill(&model, &ids, args.prefill_chunk, &mut cache)?;
            let mut next = model.greedy(&last)?;
            let secs = t.elapsed().as_secs_f64();
            for _ in 1..args.memory_decode {
                let x = Tensor::from_vec(next.clone(), (1, 1), &dev)?;
                let h = model.forward(&x, &mut cache)?;
                next = model.greedy(&Qwen2::last_hidden(&h)?)?;
            }
            Ok((secs, next))
        });
        let ((prefill_secs, _), peak_bytes) = match measured {
            Ok(m) => m,
            Err(e) => {
                errors.push(format!("memory run, prompt {p}: {e:#}"));
                eprintln!("memory {p}: FAILED: {e:#}");
                continue;
            }
        };
        let without_nccl = b.total - b.nccl_buffers;
        // Alone, there is no NCCL communicator to hold its buffers; in a TP group there is.
        let compared = match part {
            Launch::Rank(_) => b.total,
            _ => without_nccl,
        };
        let row = MemoryRow {
            prompt: p,
            decode_steps: args.memory_decode,
            measured_peak_bytes: peak_bytes,
            planned_total_bytes: b.total,
            planned_without_nccl_bytes: without_nccl,
            planned_activation_peak_bytes: b.activation_peak,
            planned_kv_bytes: b.kv_cache,
            measured_over_planned: peak_bytes.map(|m| m as f64 / compared as f64),
            prefill_secs,
        };
        eprintln!("memory {p}: {row:?}");
        memory.push(row);
    }

    let report = Report {
        machine,
        shape: format!("{:?}", args.shape),
        tp: args.tp,
        config: serde_json::json!({
            "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads, "head_dim": cfg.head_dim,
        }),
        dtype: format!("{dtype:?}"),
        weights_bytes_resident: resident,
        load_secs,
        ceilings: ceil,
        memory,
        prefill: prefill_rows,
        decode,
        logits_finite,
        ops,
        errors,
    };
    if !leader {
        // Rank 0 reports; the others only had to run the same collectives.
        return Ok(if report.errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    print_table(&report);
    if let Some(dir) = args.json.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", args.json.display()))?;
    eprintln!("bench-gpu: JSON in {}", args.json.display());
    if !report.logits_finite {
        bail!("the random model produced non-finite logits: the numbers above are not trustworthy");
    }
    if !report.errors.is_empty() {
        for e in &report.errors {
            eprintln!("bench-gpu: failed: {e}");
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

fn print_table(r: &Report) {
    if !r.ops.is_empty() {
        println!("\n| decode glue op (batch 1) | kernels | host us per call | GPU us per call |");
        println!("|---|---|---|---|");
        for o in &r.ops {
            let g = o
                .gpu_us_per_call
                .map_or("n/a".into(), |g| format!("{g:.2}"));
            println!(
                "| {} | {:?} | {:.2} | {g} |",
                o.op, o.kernels, o.us_per_call
            );
        }
    }
    let c = &r.ceilings;
    println!(
        "\n## bench-gpu: {} ({}, {}, TP={} {})",
        r.machine,
        r.shape,
        r.dtype,
        r.tp,
        if r.tp > 1 {
            "over NCCL, rank 0's GPU"
        } else {
            "share of rank 0 alone"
        }
    );
    println!(
        "ceilings: copy {:.0} GB/s, bf16 matmul {:.0} TFLOP/s; weights resident {}",
        c.copy_gb_s,
        c.matmul_tflops,
        r.weights_bytes_resident.map_or("n/a".into(), gib)
    );
    let planned = if r.tp > 1 {
        "planned (rank 0, NCCL included)"
    } else {
        "planned (no NCCL)"
    };
    println!("\n| prompt | measured peak | {planned} | measured/planned | prefill s |");
    println!("|---|---|---|---|---|");
    for m in &r.memory {
        println!(
            "| {} | {} | {} | {} | {:.2} |",
            m.prompt,
            m.measured_peak_bytes.map_or("n/a".into(), gib),
            gib(if r.tp > 1 {
                m.planned_total_bytes
            } else {
                m.planned_without_nccl_bytes
            }),
            m.measured_over_planned
                .map_or("n/a".into(), |x| format!("{x:.3}")),
            m.prefill_secs
        );
    }
    println!("\n| kernels | prefill tokens | s (median) | tok/s | TFLOP/s | of matmul rate |");
    println!("|---|---|---|---|---|---|");
    for p in &r.prefill {
        println!(
            "| {:?} | {} | {:.3} | {:.0} | {:.0} | {:.0}% |",
            p.kernels,
            p.prompt,
            p.secs_median,
            p.tokens_per_s,
            p.tflops,
            100.0 * p.fraction_of_matmul_rate
        );
    }
    println!(
        "\n| kernels | decode batch | ms/step | projections only ms | host issue ms | tok/s | GB/step | GB/s | of candle copy | floor ms | TFLOP/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for d in &r.decode {
        println!(
            "| {:?} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {:.2} | {:.0} | {:.0}% | {:.2} | {:.1} |",
            d.kernels,
            d.batch,
            d.ms_per_step_median,
            d.projections_ms_median,
            d.host_issue_ms_median,
            d.tokens_per_s,
            d.bytes_per_step / 1e9,
            d.achieved_gb_s,
            100.0 * d.fraction_of_copy_bw,
            d.floor_ms,
            d.achieved_tflops
        );
    }
}
