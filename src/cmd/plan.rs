//! `paramx plan`: the per-GPU memory plan of a job, without touching a GPU.
//!
//! Exit code 0 when the job fits, 1 when it does not (the table and the reasons are printed),
//! 2 on bad arguments or an unreadable model config.

use crate::plan::{DType, GpuMemory, GpuPreset, JobLimits, ModelShape, PlanRequest};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model's Hugging Face config.json (e.g. configs/models/qwen2.5-72b-instruct.json).
    #[arg(long, value_name = "PATH")]
    pub model_config: PathBuf,
    /// Tensor-parallel size: number of GPUs (one rank each).
    #[arg(long, default_value_t = 1)]
    pub tp: u64,
    /// A known GPU type (usable memory as reported by the CUDA driver).
    #[arg(long, value_enum, conflicts_with = "gpu_mem_gib")]
    pub gpu: Option<GpuPreset>,
    /// Usable memory per GPU in GiB, for cards without a preset.
    #[arg(long, value_name = "GIB")]
    pub gpu_mem_gib: Option<f64>,
    /// Longest prompt in tokens.
    #[arg(long, default_value_t = JobLimits::default().max_input_tokens)]
    pub max_input_tokens: u64,
    /// Most generated tokens per sequence.
    #[arg(long, default_value_t = JobLimits::default().max_new_tokens)]
    pub max_new_tokens: u64,
    /// Sequences processed together.
    #[arg(long, default_value_t = JobLimits::default().batch)]
    pub batch: u64,
    /// Plan a shared-prefix job: `batch` questions of at most this many tokens at a time on
    /// one prefix of `--max-input-tokens` (the paper's K/V stored once). `paramx run` plans
    /// this way, with 2048.
    #[arg(long)]
    pub question_tokens: Option<u64>,
    /// Prompt tokens per prefill step.
    #[arg(long, default_value_t = JobLimits::default().prefill_chunk)]
    pub prefill_chunk: u64,
    /// Query rows per attention block.
    #[arg(long, default_value_t = JobLimits::default().query_block)]
    pub query_block: u64,
    /// GiB per GPU reserved for activations; the activation peak must fit inside it.
    #[arg(
        long,
        value_name = "GIB",
        default_value_t = 4.0,
        conflicts_with = "reserve_peak"
    )]
    pub activation_headroom_gib: f64,
    /// Reserve exactly the computed activation peak instead of a fixed headroom.
    #[arg(long)]
    pub reserve_peak: bool,
    /// Element type of weights, KV cache and activations.
    #[arg(long, value_enum, default_value_t = DType::Bf16)]
    pub dtype: DType,
    /// Print the plan as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn gpu_memory(args: &Args) -> anyhow::Result<GpuMemory> {
    if let Some(preset) = args.gpu {
        return Ok(preset.memory());
    }
    if let Some(g) = args.gpu_mem_gib {
        return GpuMemory::from_gib(g);
    }
    #[cfg(feature = "cuda")]
    {
        GpuMemory::query(0).context("no --gpu or --gpu-mem-gib given, and querying GPU 0 failed")
    }
    #[cfg(not(feature = "cuda"))]
    anyhow::bail!(
        "give the GPU size with --gpu a100-80gb|h100-80gb|h200 or --gpu-mem-gib N \
         (this binary was built without CUDA, so it cannot ask the GPU)"
    )
}

/// Builds the request the same way the run command does: from plain numbers.
pub fn request(args: &Args) -> anyhow::Result<PlanRequest> {
    let model = ModelShape::from_config_file(&args.model_config)?;
    let gpu = gpu_memory(args)?;
    let headroom = if args.reserve_peak {
        None
    } else {
        let g = args.activation_headroom_gib;
        if !g.is_finite() || g < 0.0 {
            anyhow::bail!("--activation-headroom-gib must be a non-negative number, got {g}");
        }
        Some((g * (1u64 << 30) as f64) as u64)
    };
    let job = JobLimits {
        max_input_tokens: args.max_input_tokens,
        max_new_tokens: args.max_new_tokens,
        batch: args.batch,
        prefill_chunk: args.prefill_chunk,
        query_block: args.query_block,
        activation_headroom: headroom,
        dtype: args.dtype,
        question_tokens: args.question_tokens,
    };
    PlanRequest::new(model, gpu, args.tp, job)
        .with_context(|| format!("cannot plan {}", args.model_config.display()))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let plan = request(&args)?.plan();
    let verdict = plan.check();
    if args.json {
        let doc = serde_json::json!({
            "fits": verdict.is_ok(),
            "plan": plan,
            "infeasible": verdict.as_ref().err(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", plan.table());
    }
    match verdict {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("paramx: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
