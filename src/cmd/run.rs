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
use crate::run::Role;
use crate::schema::Schema;
use crate::tp::launch::{RankEnv, ENV_RANK, ENV_WORLD_SIZE};
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
    /// Tensor-parallel ranks (replaces `hardware.tp`): one process per GPU over NCCL with
    /// `device = "cuda"` (a `--features nccl` build), threads of one process on the CPU.
    #[arg(long)]
    pub tp: Option<usize>,
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
    if let Some(n) = args.tp {
        job.hardware.tp = n;
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
    // A model is regular files of some size: `/dev/zero` or a FIFO would be hashed forever.
    for f in &files {
        let md = std::fs::metadata(f).with_context(|| format!("cannot stat {}", f.display()))?;
        if !md.is_file() {
            bail!("model {}: not a regular file", f.display());
        }
    }
    if !files
        .iter()
        .any(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 0))
    {
        bail!(
            "model {}: every file is empty: not a model's weights",
            path.display()
        );
    }
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
                let h = crate::fetch::sha256_file_unless(f, &crate::run::stop_requested)?;
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
        DeviceKind::Cpu => Ok(ModelOptions {
            stop: Some(crate::run::STOP_REQUESTED.clone()),
            ..ModelOptions::cpu()
        }),
        DeviceKind::Cuda => {
            #[cfg(feature = "cuda")]
            {
                let mut o = ModelOptions::cpu();
                o.stop = Some(crate::run::STOP_REQUESTED.clone());
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
        // Every paper is a shared prefix with its questions on top (`generate_shared`).
        question_tokens: Some(crate::run::question::MAX_QUESTION_TOKENS as u64),
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

/// How long a rank waits in one collective before the job is declared broken. The longest
/// honest wait is the followers' at the start, while rank 0 extracts the text of its papers
/// (about a second per thousand pages per core; a bad page is cut off by the extractor's own
/// time limit); after that the ranks move in step.
const COLLECTIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// How this process takes part in the job (from `hardware.tp`, the device and `PARAMX_RANK`).
#[derive(Debug, PartialEq, Eq)]
enum Launch {
    /// One rank: this process does everything.
    Single,
    /// `tp = N` on the CPU: N ranks as threads of this process (meant for tests).
    Threads(usize),
    /// `tp = N` on GPUs, the process the user started: plans, then starts N rank processes
    /// (this executable again, see `tp::launch`) and waits for them.
    Launcher(usize),
    /// One of those rank processes.
    Rank(RankEnv),
}

impl Launch {
    fn decide(tp: usize, device: DeviceKind, rank: Option<RankEnv>) -> Result<Self> {
        Ok(match (rank, device) {
            (Some(env), DeviceKind::Cpu) => bail!(
                "{ENV_RANK}={} is set but hardware.device = \"cpu\": CPU ranks are threads of one \
                 process; unset {ENV_RANK}",
                env.rank
            ),
            (Some(env), DeviceKind::Cuda) if env.world_size != tp => bail!(
                "{ENV_WORLD_SIZE}={} but hardware.tp = {tp}: the launcher and the rank disagree",
                env.world_size
            ),
            (Some(env), DeviceKind::Cuda) => Launch::Rank(env),
            (None, _) if tp == 1 => Launch::Single,
            (None, DeviceKind::Cpu) => Launch::Threads(tp),
            (None, DeviceKind::Cuda) if cfg!(feature = "nccl") => Launch::Launcher(tp),
            (None, DeviceKind::Cuda) => bail!(
                "hardware.tp = {tp} on \"cuda\" needs NCCL, and this paramx was built without the \
                 `nccl` feature: build it with `cargo build --release --features nccl` (see \
                 slurm/build-cuda.sh)"
            ),
        })
    }
}

/// Whether rank `rank` ending with `code` is a normal end of a multi-process job: rank 0 (the
/// leader) ends with the job's own code (0 done, 1 some papers failed, 75 stopped by signal);
/// a follower writes nothing and ends with 0, stopped or not. Anything else is a failure: the
/// launcher ends the other ranks and reports this one.
fn rank_exit_is_normal(rank: usize, code: i32) -> bool {
    if rank == 0 {
        matches!(code, 0 | 1) || code == i32::from(EXIT_REQUEUE)
    } else {
        code == 0
    }
}

/// The job's exit code from its ranks' codes (all normal, in rank order): the leader's.
fn job_exit_code(codes: &[i32]) -> Result<u8> {
    let leader = *codes.first().context("no rank ran")?;
    u8::try_from(leader).with_context(|| format!("rank 0 exited with {leader}"))
}

/// What every rank needs before the model: the job and its inputs.
struct Prepared {
    job: JobConfig,
    schema: Schema,
    pdfs: Vec<PathBuf>,
    shard: crate::run::shard::Shard,
    model_path: PathBuf,
    started: std::time::SystemTime,
}

pub fn run(args: Args) -> Result<ExitCode> {
    // First of all: a USR1 that arrives while the model loads must not kill the process.
    crate::cmd::install_stop_handlers();
    let started = std::time::SystemTime::now();
    let mut job = JobConfig::load(&args.config)?;
    apply(&args, &mut job).with_context(|| format!("job {}", args.config.display()))?;
    let launch = Launch::decide(job.hardware.tp, job.hardware.device, RankEnv::from_env()?)?;
    if let Launch::Rank(env) = &launch {
        // Before anything slow: a rank must not outlive its launcher, and must hear its stops.
        #[cfg(unix)]
        env.exit_when_orphaned();
        env.watch_for_stop(crate::run::STOP_REQUESTED.clone());
    }
    if job.hardware.threads > 0 {
        // candle's CPU kernels size their thread pool from this variable; it must be set before
        // the first tensor operation. (Its workers spin while waiting: on a shared machine,
        // fewer threads than cores is faster.)
        std::env::set_var("RAYON_NUM_THREADS", job.hardware.threads.to_string());
    }
    if let Launch::Threads(n) = launch {
        // The CPU tensor-parallel path exists for testing the sharded model, not for speed.
        eprintln!("paramx: note: tp = {n} on the CPU runs the ranks as threads (for testing)");
    }
    let user_facing = !matches!(launch, Launch::Rank(_));
    let schema = Schema::load(&job.io.schema)?;
    // The gold is read at the end; a missing or malformed one must not wait for the papers.
    if let Some(gold) = &job.io.gold {
        let g = crate::table::Table::read(gold)
            .with_context(|| format!("io.gold {}: cannot read the gold table", gold.display()))?;
        crate::eval::check_gold(&g).with_context(|| format!("io.gold {}", gold.display()))?;
    }
    let all_pdfs = crate::run::discover(&job.io.inputs)?;
    let shard = crate::run::shard::resolve(args.shard.as_deref(), |k| std::env::var(k).ok())?;
    let pdfs = shard.select(&all_pdfs);
    if shard.is_split() && user_facing {
        eprintln!(
            "paramx: task {} of {}: {} of {} PDF(s)",
            shard.index(),
            shard.count(),
            pdfs.len(),
            all_pdfs.len()
        );
    }
    let model_path = ensure_model(&job)?;
    if matches!(launch, Launch::Single | Launch::Launcher(_)) {
        check_plan(&job, &model_path)?;
    }
    if user_facing {
        // Once per job, by the process that faces the user (never by each rank).
        let tokenizer = crate::model::load_tokenizer(&model_path)?;
        crate::run::prompt::check_fits(
            &tokenizer,
            &crate::run::question::group_templates(&schema),
            job.limits.max_input_tokens,
            crate::run::SPLIT_MARGIN_TOKENS,
        )
        .with_context(|| format!("job {}", args.config.display()))?;
    }
    if user_facing {
        eprintln!(
            "paramx: {} PDF(s), model {}, max_input_tokens {}, max_new_tokens {}, batch {}, tp {}",
            pdfs.len(),
            model_path.display(),
            job.limits.max_input_tokens,
            job.limits.max_new_tokens,
            job.limits.batch,
            job.hardware.tp
        );
    }
    let prep = Prepared {
        job,
        schema,
        pdfs,
        shard,
        model_path,
        started,
    };
    match launch {
        Launch::Single => {
            let Some(mhash) = hash_unless_stopped(&prep)? else {
                return Ok(ExitCode::from(EXIT_REQUEUE));
            };
            let opts = model_options(&prep.job)?;
            run_rank(&prep, &opts, Role::Leader { model_hash: &mhash })
        }
        Launch::Threads(n) => {
            let Some(mhash) = hash_unless_stopped(&prep)? else {
                return Ok(ExitCode::from(EXIT_REQUEUE));
            };
            let codes = crate::tp::local::LocalGroup::run(n, COLLECTIVE_TIMEOUT, |rank, comm| {
                let opts = ModelOptions {
                    comm,
                    ..model_options(&prep.job)?
                };
                let role = Role::of_rank(rank, Some(&mhash))?;
                run_rank(&prep, &opts, role)
            })?;
            codes.into_iter().next().context("no rank ran")
        }
        Launch::Launcher(n) => {
            // Hash the weights here, once, while no rank waits on a collective: rank 0 then finds
            // the hash in the cache beside the outputs.
            // Asked to stop while planning or hashing: starting N ranks that each load their
            // slice only to stop at once would waste the time left.
            if hash_unless_stopped(&prep)?.is_none() {
                return Ok(ExitCode::from(EXIT_REQUEUE));
            }
            launch_ranks(n)
        }
        Launch::Rank(env) => rank_process(&prep, &env),
    }
}

/// The model's hash, or `None` (said on stderr) when a stop signal came before or while
/// hashing: a rerun continues, so the job exits 75 rather than failing.
fn hash_unless_stopped(prep: &Prepared) -> Result<Option<String>> {
    let hashed = model_hash(&prep.model_path, &prep.job.io.out_dir);
    if crate::run::stop_requested() {
        eprintln!("paramx: stopped by signal before the model was hashed; rerun to continue");
        return Ok(None);
    }
    hashed.map(Some)
}

/// The launcher's side of a multi-GPU job: one process per rank, stops passed on, the leader's
/// exit code returned (a failed rank is an error naming it, with the end of its stderr).
fn launch_ranks(n: usize) -> Result<ExitCode> {
    use crate::tp::launch::{run_ranks_with, LaunchOptions, LaunchSpec};
    let spec = LaunchSpec::current_exe(n)?;
    let opts = LaunchOptions {
        normal_exit: rank_exit_is_normal,
        stop: Some(crate::run::STOP_REQUESTED.clone()),
    };
    let codes = run_ranks_with(&spec, &opts)?;
    Ok(ExitCode::from(job_exit_code(&codes)?))
}

/// One GPU rank process: joins the NCCL group, then runs as its rank.
#[cfg(feature = "nccl")]
fn rank_process(prep: &Prepared, env: &RankEnv) -> Result<ExitCode> {
    let comm = crate::tp::nccl::NcclComm::from_rank_env(env, COLLECTIVE_TIMEOUT)?;
    let mut opts = ModelOptions::cpu();
    opts.device = comm.device().clone();
    opts.dtype = candle_core::DType::BF16;
    opts.comm = std::sync::Arc::new(comm);
    opts.stop = Some(crate::run::STOP_REQUESTED.clone());
    // Only the leader hashes (a cache hit: the launcher hashed the files before starting us).
    let mhash = if env.rank == 0 {
        Some(model_hash(&prep.model_path, &prep.job.io.out_dir)?)
    } else {
        None
    };
    let role = Role::of_rank(env.rank, mhash.as_deref())?;
    run_rank(prep, &opts, role)
}

#[cfg(not(feature = "nccl"))]
fn rank_process(_prep: &Prepared, env: &RankEnv) -> Result<ExitCode> {
    bail!(
        "started as rank {} of a multi-GPU job, but this paramx was built without the `nccl` feature",
        env.rank
    )
}

/// The review page of this run: the inputs' locations listed beside this run's (or array
/// task's) outputs for the PDF links, the gold read once.
fn review_page<'a>(
    job: &'a JobConfig,
    schema: &'a Schema,
    pdfs: &[PathBuf],
    shard: crate::run::shard::Shard,
) -> Result<crate::report::RunReport<'a>> {
    let dir = if shard.is_split() {
        job.io.out_dir.join("shards").join(shard.label())
    } else {
        job.io.out_dir.clone()
    };
    crate::report::links::Sources::of_inputs(pdfs).write(&dir)?;
    let gold = match &job.io.gold {
        Some(g) => Some(crate::table::Table::read(g).context("cannot read the gold table")?),
        None => None,
    };
    Ok(crate::report::RunReport {
        out: &job.io.out_dir,
        schema,
        gold,
    })
}

/// One rank's run: load its slice of the model, run the pipeline in step with the others, and,
/// for the leader only, write the table, JSONL, manifest and report. A follower returns success
/// (its exit code is not the job's; see [`rank_exit_is_normal`]).
fn run_rank(prep: &Prepared, opts: &ModelOptions, role: Role<'_>) -> Result<ExitCode> {
    let Prepared {
        job,
        schema,
        pdfs,
        shard,
        model_path,
        started,
    } = prep;
    let t0 = std::time::Instant::now();
    let model = match crate::model::load(model_path, opts) {
        Err(e) if e.is::<crate::model::LoadStopped>() => {
            if matches!(role, Role::Leader { .. }) {
                eprintln!("paramx: stopped by signal while loading the model; rerun to continue");
            }
            return Ok(ExitCode::from(EXIT_REQUEUE));
        }
        r => r?,
    };
    let load_secs = t0.elapsed().as_secs_f64();
    // The leader rewrites the review page after every paper (see `report`).
    let page = match role {
        Role::Leader { .. } => Some(review_page(job, schema, pdfs, *shard)?),
        Role::Follower => None,
    };
    let summary = crate::run::run_observed(job, schema, &model, role, pdfs, &mut |h| {
        if let Some(p) = &page {
            p.refresh(h);
        }
    })?;
    let Role::Leader { model_hash: mhash } = role else {
        return Ok(ExitCode::SUCCESS);
    };
    let (shard, started) = (*shard, *started);
    let inputs = crate::run::manifest::input_entries(pdfs);

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
    write_outputs(schema, &all, &paths)?;
    let manifest = crate::run::manifest::run_manifest(
        job,
        schema,
        model_path,
        mhash,
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
        "paramx: {} paper(s): {} done, {} reused, {} failed; {} experiment(s), {} value(s) kept, {} dropped (unsupported, unreadable or empty); model load {load_secs:.1} s, run {:.1} s ({:.1} papers/hour, {} prompt + {} generated tokens, {tok_s:.1} generated tok/s)",
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
    if summary.grammar_secs > 0.0 && summary.decode_secs > 0.0 {
        // What the grammar costs decode: the same steps without its masks, commits and forced
        // tokens would take decode - grammar seconds.
        eprintln!(
            "paramx: decode {:.1} s, of which the answer grammar {:.1} s: decode under the grammar at {:.3}x the unconstrained speed",
            summary.decode_secs,
            summary.grammar_secs,
            (summary.decode_secs - summary.grammar_secs) / summary.decode_secs,
        );
    }
    let recs: Vec<&PaperRecord> = all.iter().collect();
    eprint!(
        "{}",
        crate::run::evidence::EvidenceReport::of(schema, &recs).to_text()
    );
    eprintln!(
        "paramx: wrote {}, {}, {}, {}, {}",
        paths.table.display(),
        paths.results.display(),
        paths.errors.display(),
        paths.evidence.display(),
        job.io.out_dir.join(crate::report::FILE_NAME).display()
    );
    if let Some(gold) = &job.io.gold {
        let g = crate::table::Table::read(gold).context("cannot read the gold table")?;
        let p = crate::table::Table::read(&paths.table)?;
        let report = crate::cmd::eval::build_report(crate::eval::Scorer::Strict, schema, &g, &p)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rank_env(rank: usize, world_size: usize) -> RankEnv {
        RankEnv {
            rank,
            world_size,
            device_ordinal: rank,
            rendezvous: PathBuf::from("/tmp"),
        }
    }

    #[test]
    fn launch_mode_follows_tp_device_and_rank_variables() {
        use DeviceKind::{Cpu, Cuda};
        assert_eq!(Launch::decide(1, Cpu, None).unwrap(), Launch::Single);
        assert_eq!(Launch::decide(1, Cuda, None).unwrap(), Launch::Single);
        assert_eq!(Launch::decide(2, Cpu, None).unwrap(), Launch::Threads(2));
        assert_eq!(
            Launch::decide(2, Cuda, Some(rank_env(1, 2))).unwrap(),
            Launch::Rank(rank_env(1, 2))
        );
        let gpu = Launch::decide(2, Cuda, None);
        if cfg!(feature = "nccl") {
            assert_eq!(gpu.unwrap(), Launch::Launcher(2));
        } else {
            let e = gpu.unwrap_err().to_string();
            assert!(e.contains("without the `nccl` feature"), "{e}");
        }
        let e = Launch::decide(2, Cuda, Some(rank_env(0, 4)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("PARAMX_WORLD_SIZE=4 but hardware.tp = 2"), "{e}");
        let e = Launch::decide(2, Cpu, Some(rank_env(0, 2)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("PARAMX_RANK=0 is set"), "{e}");
    }

    #[test]
    fn only_the_leader_may_end_with_the_jobs_codes() {
        for code in [0, 1, 75] {
            assert!(rank_exit_is_normal(0, code), "{code}");
        }
        for code in [2, 3, 101, 137] {
            assert!(!rank_exit_is_normal(0, code), "{code}");
        }
        assert!(rank_exit_is_normal(1, 0));
        for code in [1, 2, 75] {
            assert!(!rank_exit_is_normal(1, code), "{code}");
        }
        assert_eq!(job_exit_code(&[75, 0]).unwrap(), 75);
        assert_eq!(job_exit_code(&[1, 0, 0]).unwrap(), 1);
        assert!(job_exit_code(&[]).is_err());
    }

    #[test]
    fn tp_flag_overrides_the_job() {
        let dir = tempfile::tempdir().unwrap();
        let job_path = dir.path().join("job.toml");
        std::fs::write(
            &job_path,
            "[model]\npath = \"m.gguf\"\n[hardware]\n[limits]\nmax_input_tokens = 2000\nmax_new_tokens = 10\n[io]\ninputs = [\"p\"]\nout_dir = \"out\"\nschema = \"s.toml\"\n",
        )
        .unwrap();
        let mut job = JobConfig::load(&job_path).unwrap();
        let args = <Args as clap::FromArgMatches>::from_arg_matches(
            &<Args as clap::Args>::augment_args(clap::Command::new("run"))
                .get_matches_from(["run", "--config", "job.toml", "--tp", "2"]),
        )
        .unwrap();
        apply(&args, &mut job).unwrap();
        assert_eq!(job.hardware.tp, 2);
    }
}
