//! `paramx run`: the main job, from a folder of PDFs to a parameter table.
//!
//! Exit codes: 0 every paper done; 1 some papers failed (their error records are in
//! `errors.jsonl`, the rest of the table is complete); 2 the job could not run at all;
//! 75 (EX_TEMPFAIL) stopped early by SIGUSR1/SIGTERM with partial results on disk: run it
//! again (or let SLURM requeue it) and finished papers are skipped.

use crate::model::ModelOptions;
use crate::run::job::{DeviceKind, JobConfig};
use crate::run::output::{write_outputs, OutputPaths};
use crate::run::record::PaperRecord;
use crate::run::store::RecordStore;
use crate::schema::Schema;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status asking the caller (the sbatch template) to requeue the job.
pub const EXIT_REQUEUE: u8 = 75;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Job file (TOML; see configs/). Flags below override it.
    #[arg(long)]
    pub config: PathBuf,
    /// PDF files or folders (replace the job's `io.inputs`).
    #[arg(long = "input")]
    pub inputs: Vec<PathBuf>,
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// GGUF file or HF model directory.
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long)]
    pub max_input_tokens: Option<usize>,
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    #[arg(long)]
    pub batch: Option<usize>,
    /// CPU threads for the model (0 = all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Gold CSV to score the table against when the run ends.
    #[arg(long)]
    pub gold: Option<PathBuf>,
    /// This task's share of the PDFs: `I/N` (0-based task I of N) or `auto` (from the SLURM
    /// array variables, which are also used when they are set and this flag is absent).
    /// Records go to the shared `OUT/papers/`, this share's table/JSONL/manifest to
    /// `OUT/shards/I-of-N/`; `paramx merge --out OUT` joins the shares.
    #[arg(long)]
    pub shard: Option<String>,
}

fn apply(args: &Args, job: &mut JobConfig) -> Result<()> {
    if !args.inputs.is_empty() {
        job.io.inputs = args.inputs.clone();
    }
    if let Some(o) = &args.out {
        job.io.out_dir = o.clone();
    }
    if let Some(m) = &args.model {
        job.model.path = m.clone();
        job.model.fetch = None;
    }
    if let Some(n) = args.max_input_tokens {
        job.limits.max_input_tokens = n;
    }
    if let Some(n) = args.max_new_tokens {
        job.limits.max_new_tokens = n;
    }
    if let Some(n) = args.batch {
        job.limits.batch = n;
    }
    if let Some(n) = args.threads {
        job.hardware.threads = n;
    }
    if let Some(g) = &args.gold {
        job.io.gold = Some(g.clone());
    }
    job.validate()
}

/// The model file, fetched first if the job names a known model and the file is missing.
fn ensure_model(job: &JobConfig) -> Result<PathBuf> {
    let p = &job.model.path;
    if p.exists() {
        return Ok(p.clone());
    }
    let Some(name) = &job.model.fetch else {
        bail!(
            "model {} not found (set model.fetch in the job, or run `paramx fetch-model`)",
            p.display()
        );
    };
    let known = crate::fetch::known_model(name)
        .with_context(|| format!("model.fetch = {name:?} is not a model paramx can fetch"))?;
    let dir = p.parent().unwrap_or(std::path::Path::new("."));
    eprintln!("paramx: fetching {name} into {} ...", dir.display());
    let got = crate::fetch::fetch(known, dir, None)?;
    if got != *p {
        bail!(
            "fetched {} but the job's model.path is {}: make model.path end in {}",
            got.display(),
            p.display(),
            known.file_name
        );
    }
    Ok(got)
}

/// sha256 of the model's files, cached beside the outputs by (path, size, mtime): hashing a
/// 145 GB model on every run would cost minutes.
fn model_hash(path: &std::path::Path, out_dir: &std::path::Path) -> Result<String> {
    let mut files: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    files.sort();
    let cache_path = out_dir.join("model-hashes.json");
    let mut cache: std::collections::BTreeMap<String, String> = std::fs::read(&cache_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    use sha2::{Digest, Sha256};
    let mut all = Sha256::new();
    for f in &files {
        let md = std::fs::metadata(f).with_context(|| format!("cannot stat {}", f.display()))?;
        let mtime = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        // Keyed by file name, not full path: the sbatch templates stage the model to node-local
        // scratch (`cp -p` keeps size and mtime), and the copy must not be hashed again.
        let name = f.file_name().map_or_else(
            || f.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let key = format!("{name}|{}|{}", md.len(), mtime);
        let h = match cache.get(&key) {
            Some(h) => h.clone(),
            None => {
                let h = crate::fetch::sha256_file(f)?;
                cache.insert(key, h.clone());
                h
            }
        };
        all.update(
            f.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        all.update(h);
    }
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    crate::run::store::write_atomic(
        &cache_path,
        serde_json::to_string_pretty(&cache)?.as_bytes(),
    )?;
    Ok(hex::encode(all.finalize()))
}

fn model_options(job: &JobConfig) -> Result<ModelOptions> {
    match job.hardware.device {
        DeviceKind::Cpu => Ok(ModelOptions::cpu()),
        DeviceKind::Cuda => {
            #[cfg(feature = "cuda")]
            {
                let mut o = ModelOptions::cpu();
                o.device = candle_core::Device::new_cuda(0)
                    .context("hardware.device = \"cuda\" but no CUDA GPU could be opened")?;
                o.dtype = candle_core::DType::BF16;
                Ok(o)
            }
            #[cfg(not(feature = "cuda"))]
            bail!("hardware.device = \"cuda\" but this paramx was built without the `cuda` feature")
        }
    }
}

/// The memory plan of a GPU job, checked before anything is loaded: an infeasible job is refused
/// with every term named (there is no CPU offload to fall back on). CPU jobs have no plan.
fn check_plan(job: &JobConfig, model_path: &std::path::Path) -> Result<Option<crate::plan::Plan>> {
    use crate::plan::{GpuPreset, JobLimits, ModelShape, PlanRequest};
    if job.hardware.device != DeviceKind::Cuda {
        return Ok(None);
    }
    if !model_path.is_dir() {
        bail!(
            "a GPU job needs a Hugging Face model directory (config.json + safetensors); {} is a file",
            model_path.display()
        );
    }
    let shape = ModelShape::from_config_file(&model_path.join("config.json"))?;
    let gpu = match job.hardware.gpu.as_deref() {
        Some(name) => <GpuPreset as clap::ValueEnum>::from_str(name, true)
            .map_err(|_| {
                anyhow::anyhow!(
                    "hardware.gpu = {name:?}: known presets are a100-80gb, h100-80gb, h200"
                )
            })?
            .memory(),
        None => gpu_memory_of_device()?,
    };
    let l = &job.limits;
    let limits = JobLimits {
        max_input_tokens: l.max_input_tokens as u64,
        max_new_tokens: l.max_new_tokens as u64,
        batch: l.batch as u64,
        prefill_chunk: l.prefill_chunk as u64,
        query_block: ModelOptions::cpu().attention_block as u64,
        activation_headroom: Some((l.activation_headroom_gib * (1u64 << 30) as f64) as u64),
        dtype: crate::plan::DType::Bf16,
    };
    let plan = PlanRequest::new(shape, gpu, job.hardware.tp as u64, limits)?.plan();
    if let Err(infeasible) = plan.check() {
        bail!("{}\n{infeasible}", plan.table());
    }
    eprintln!("{}", plan.table());
    Ok(Some(plan))
}

#[cfg(feature = "cuda")]
fn gpu_memory_of_device() -> Result<crate::plan::GpuMemory> {
    crate::plan::GpuMemory::query(0)
}

#[cfg(not(feature = "cuda"))]
fn gpu_memory_of_device() -> Result<crate::plan::GpuMemory> {
    bail!("set hardware.gpu (a100-80gb, h100-80gb, h200): this paramx cannot query a GPU")
}

pub fn run(args: Args) -> Result<ExitCode> {
    // First of all: a USR1 that arrives while the model loads must not kill the process.
    crate::cmd::install_stop_handlers();
    let started = std::time::SystemTime::now();
    let mut job = JobConfig::load(&args.config)?;
    apply(&args, &mut job).with_context(|| format!("job {}", args.config.display()))?;
    if job.hardware.tp > 1 {
        bail!(
            "hardware.tp = {} is not supported by `paramx run` yet: run tp = 1 (see `paramx plan`)",
            job.hardware.tp
        );
    }
    if job.hardware.threads > 0 {
        // candle's CPU kernels size their thread pool from this variable; it must be set before
        // the first tensor operation. (Its workers spin while waiting: on a shared machine,
        // fewer threads than cores is faster.)
        std::env::set_var("RAYON_NUM_THREADS", job.hardware.threads.to_string());
    }
    let schema = Schema::load(&job.io.schema)?;
    let all_pdfs = crate::run::discover(&job.io.inputs)?;
    let shard = crate::run::shard::resolve(args.shard.as_deref(), |k| std::env::var(k).ok())?;
    let pdfs = shard.select(&all_pdfs);
    if shard.is_split() {
        eprintln!(
            "paramx: task {} of {}: {} of {} PDF(s)",
            shard.index(),
            shard.count(),
            pdfs.len(),
            all_pdfs.len()
        );
    }
    let inputs = crate::run::manifest::input_entries(&pdfs);
    let model_path = ensure_model(&job)?;
    check_plan(&job, &model_path)?;
    let opts = model_options(&job)?;
    eprintln!(
        "paramx: {} PDF(s), model {}, max_input_tokens {}, max_new_tokens {}, batch {}",
        pdfs.len(),
        model_path.display(),
        job.limits.max_input_tokens,
        job.limits.max_new_tokens,
        job.limits.batch
    );
    let mhash = model_hash(&model_path, &job.io.out_dir)?;
    let t0 = std::time::Instant::now();
    let model = crate::model::load(&model_path, &opts)?;
    let load_secs = t0.elapsed().as_secs_f64();
    let summary = crate::run::run(&job, &schema, &model, &mhash, &pdfs)?;

    // Derived outputs: the records of this job for this run's inputs (a split run's share goes
    // to its own folder: the tasks share `papers/` but never write each other's tables).
    let store = RecordStore::new(&job.io.out_dir);
    let wanted: std::collections::BTreeSet<&str> =
        inputs.iter().map(|e| e.sha256.as_str()).collect();
    let all: Vec<PaperRecord> = store
        .load_all::<PaperRecord>()?
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| r.key.job_hash == summary.job_hash && wanted.contains(r.key.sha256.as_str()))
        .collect();
    let out_dir = if shard.is_split() {
        job.io.out_dir.join("shards").join(shard.label())
    } else {
        job.io.out_dir.clone()
    };
    let paths = OutputPaths::in_dir(&out_dir);
    write_outputs(&schema, &all, &paths)?;
    let manifest = crate::run::manifest::run_manifest(
        &job,
        &schema,
        &model_path,
        &mhash,
        &model.tokenizer,
        &summary,
        shard,
        inputs,
        started,
        load_secs,
    )?;
    manifest.write(&out_dir)?;

    let tok_s = if summary.model_secs > 0.0 {
        summary.counts.generated_tokens as f64 / summary.model_secs
    } else {
        0.0
    };
    eprintln!(
        "paramx: {} paper(s): {} done, {} reused, {} failed; {} experiment(s), {} value(s) kept, {} dropped (quote not in paper or empty); model load {load_secs:.1} s, run {:.1} s ({:.1} papers/hour, {} prompt + {} generated tokens, {tok_s:.1} generated tok/s)",
        summary.counts.papers,
        summary.counts.done,
        summary.counts.reused,
        summary.counts.failed,
        summary.counts.experiments,
        summary.counts.values,
        summary.counts.dropped,
        summary.wall_secs,
        if summary.wall_secs > 0.0 { summary.counts.done as f64 * 3600.0 / summary.wall_secs } else { 0.0 },
        summary.counts.prompt_tokens,
        summary.counts.generated_tokens,
    );
    eprintln!(
        "paramx: wrote {}, {}, {}",
        paths.table.display(),
        paths.results.display(),
        paths.errors.display()
    );
    if let Some(gold) = &job.io.gold {
        let g = crate::table::Table::read(gold).context("cannot read the gold table")?;
        let p = crate::table::Table::read(&paths.table)?;
        let report = crate::cmd::eval::build_report(crate::eval::Scorer::Strict, &schema, &g, &p)?;
        print!("{}", report.to_text());
    }
    if summary.counts.interrupted {
        eprintln!("paramx: stopped by signal; finished papers are saved, rerun to continue");
        return Ok(ExitCode::from(EXIT_REQUEUE));
    }
    Ok(if summary.counts.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
