//! `paramx bench-prefix`: questions on a shared paper prefix against separate prompts (and,
//! with `--copies`, against one batch holding a copy of the prefix per row), in one process
//! (see `bench::prefix`). Two models:
//! - a real GGUF model on the CPU, with a paper's text as the workload (the default);
//! - `--random rank0-72b-tp2`: rank 0 of Qwen2.5-72B under TP=2 from random bf16 weights on a
//!   GPU (as `bench-gpu` builds it), on pseudo-random token ids, with peak device memory
//!   beside `paramx plan`'s figure for the same shared-prefix job.
//!
//! Prints a table and writes JSON.

use crate::bench::prefix::{self, Outcome, Shape};
use crate::model::load::random::RandomSource;
use crate::model::shapes;
use crate::model::tokenizer::Tokenizer;
use crate::model::{ModelOptions, Qwen2};
use crate::plan::{JobLimits, PlanRequest};
use anyhow::{Context, Result};
use candle_core::{DType, Device};
use std::path::PathBuf;
use std::process::ExitCode;

/// Random-weight models the benchmark can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Random {
    /// Rank 0 of Qwen2.5-72B-Instruct under TP=2 (bf16, on a GPU).
    #[value(name = "rank0-72b-tp2")]
    Rank0Qwen72bTp2,
    /// A 2-layer toy of the same structure (f32 on the CPU: checks the plumbing).
    Tiny,
}

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Model (a name known to fetch-model, or a GGUF path).
    #[arg(long, default_value = "qwen2.5-coder-1.5b")]
    pub model: String,
    #[arg(long, default_value = "models")]
    pub dir: PathBuf,
    /// The PDF whose text makes the prefix and the questions.
    #[arg(long, default_value = "data/sample")]
    pub pdf: PathBuf,
    #[arg(long, default_value_t = 3500)]
    pub prefix_tokens: usize,
    #[arg(long, default_value_t = 16)]
    pub questions: usize,
    #[arg(long, default_value_t = 60)]
    pub question_tokens: usize,
    #[arg(long, default_value_t = 40)]
    pub answer_tokens: usize,
    #[arg(long, default_value_t = 512)]
    pub prefill_chunk: usize,
    /// Questions run together as one batch on the shared prefix.
    #[arg(long, default_value_t = 16)]
    pub rows: usize,
    /// CPU threads (sets RAYON_NUM_THREADS before any tensor work).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// The machine, as the table names it.
    #[arg(long, default_value = "this machine")]
    pub machine: String,
    #[arg(long, default_value = "target/bench-prefix.json")]
    pub json: PathBuf,
    /// Random weights at these shapes instead of `--model` (token ids instead of a paper).
    #[arg(long, value_enum)]
    pub random: Option<Random>,
    /// CUDA device ordinal for `--random rank0-72b-tp2`.
    #[arg(long, default_value_t = 0)]
    pub gpu: usize,
    /// Also run all questions as one batch of whole prompts (the prefix's K/V once per row).
    #[arg(long)]
    pub copies: bool,
}

pub fn run(args: Options) -> Result<ExitCode> {
    std::env::set_var("RAYON_NUM_THREADS", args.threads.max(1).to_string());
    let shape = Shape {
        prefix_tokens: args.prefix_tokens,
        questions: args.questions,
        question_tokens: args.question_tokens,
        answer_tokens: args.answer_tokens,
        prefill_chunk: args.prefill_chunk,
        rows: args.rows,
    };
    let (out, machine, plan) = match args.random {
        None => real(&args, shape)?,
        Some(r) => random(&args, r, shape)?,
    };
    print!("{}", out.to_text(&machine));
    if let Some(p) = &plan {
        println!(
            "plan for this shared-prefix job: {} (without NCCL buffers, which one rank alone \
does not allocate); measured/planned {}",
            crate::plan::gib(p.0),
            out.shared
                .peak_bytes
                .map_or("n/a".into(), |m| format!("{:.3}", m as f64 / p.0 as f64))
        );
    }
    let json = serde_json::json!({
        "machine": machine,
        "result": out,
        "planned_shared_bytes": plan.as_ref().map(|p| p.0),
        "planned_shared": plan.map(|p| p.1),
    });
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    crate::run::store::write_atomic(&args.json, &serde_json::to_vec_pretty(&json)?)?;
    eprintln!("paramx: wrote {}", args.json.display());
    Ok(ExitCode::SUCCESS)
}

/// One measurement: the outcome, the machine's description, and on a GPU the plan's peak
/// figure with its JSON.
type Measured = (Outcome, String, Option<(u64, serde_json::Value)>);

/// A real GGUF model on the CPU, a paper's text as the workload.
fn real(args: &Options, shape: Shape) -> Result<Measured> {
    let pdfs = crate::run::discover(std::slice::from_ref(&args.pdf))?;
    let pdf = pdfs.first().context("no PDF")?;
    let doc = crate::pdf::extract_file(pdf, &Default::default())
        .with_context(|| format!("cannot read {}", pdf.display()))?;
    let path = crate::fetch::resolve_model(&args.model, &args.dir)?;
    let loaded = crate::model::load(&path, &ModelOptions::cpu())?;
    let text_tokens = loaded.tokenizer.encode(&doc.text)?;
    let (p, q) = prefix::workload(&text_tokens, &shape)?;
    let out = prefix::run(
        &loaded.generator(),
        &Device::Cpu,
        &p,
        &q,
        shape,
        args.copies,
    )?;
    let machine = format!(
        "{}, {} thread(s), {}",
        args.machine,
        args.threads,
        path.display()
    );
    Ok((out, machine, None))
}

/// Random weights at a model's shapes; on a GPU, the plan's figure for the same job beside.
fn random(args: &Options, which: Random, shape: Shape) -> Result<Measured> {
    let (model_shape, cfg, dev, dtype) = match which {
        Random::Rank0Qwen72bTp2 => {
            let (m, r) = shapes::qwen25_72b(2)?;
            let cfg = shapes::rank_config(&m, &r);
            let dev = Device::new_cuda(args.gpu)
                .with_context(|| format!("cannot open CUDA device {}", args.gpu))?;
            (Some(m), cfg, dev, DType::BF16)
        }
        Random::Tiny => (None, shapes::tiny(), Device::Cpu, DType::F32),
    };
    let longest = shape.prefix_tokens + shape.question_tokens + shape.answer_tokens + 8;
    let opts = ModelOptions {
        device: dev.clone(),
        dtype,
        // As `bench-gpu` and the run on a GPU: 512 query rows per attention block.
        attention_block: 512,
        max_positions: Some(longest),
        prefill_dense_min_tokens: None,
        ..ModelOptions::cpu()
    };
    let model = Qwen2::load(&cfg, &RandomSource::new(&cfg), &opts)?;
    let tokenizer = Tokenizer::placeholder(cfg.vocab_size)?;
    let gen = crate::generate::Generator::new(&model, &tokenizer);
    let (p, q) = prefix::random_workload(cfg.vocab_size, &shape, 11)?;
    // Warm-up outside the timed ways (kernel loading, cuBLAS heuristics).
    {
        let warm = Shape {
            prefix_tokens: shape.prefill_chunk.min(shape.prefix_tokens),
            questions: 2.min(shape.questions),
            answer_tokens: 2,
            ..shape.clone()
        };
        let (wp, wq) = prefix::random_workload(cfg.vocab_size, &warm, 5)?;
        prefix::run(&gen, &dev, &wp, &wq, warm, false)?;
    }
    let rows = shape.rows as u64;
    let out = prefix::run(&gen, &dev, &p, &q, shape.clone(), args.copies)?;
    let machine = match &dev {
        Device::Cpu => format!("{}, cpu, tiny random model", args.machine),
        _ => format!(
            "{}, GPU {}, rank 0 of Qwen2.5-72B TP=2, random bf16",
            args.machine, args.gpu
        ),
    };
    let plan = match (model_shape, &dev) {
        (Some(m), Device::Cuda(_)) => {
            let gpu = crate::plan::GpuMemory::query(args.gpu)?;
            let job = JobLimits {
                max_input_tokens: shape.prefix_tokens as u64,
                max_new_tokens: shape.answer_tokens as u64,
                batch: rows,
                prefill_chunk: shape.prefill_chunk as u64,
                query_block: opts.attention_block as u64,
                activation_headroom: None,
                dtype: crate::plan::DType::Bf16,
                question_tokens: Some(shape.question_tokens as u64),
            };
            let plan = PlanRequest::new(m, gpu, 2, job)?.plan();
            let b = &plan.budget;
            Some((b.total - b.nccl_buffers, serde_json::to_value(b)?))
        }
        _ => None,
    };
    Ok((out, machine, plan))
}
