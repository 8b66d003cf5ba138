//! Runs a job (`paramx run`): decides how this process takes part, prepares what every rank
//! needs, and runs the pipeline ([`crate::run::run_observed`]) in one process, in rank threads,
//! or in rank processes over NCCL; the leader then writes the outputs.
//!
//! Exit codes: 0 every paper done; 1 some papers failed (their error records are in
//! `errors.jsonl`, the rest of the table is complete); 2 the job could not run at all;
//! 75 (EX_TEMPFAIL) stopped early by SIGUSR1/SIGTERM with partial results on disk: run it
//! again (or let SLURM requeue it) and finished papers are skipped.

use crate::model::ModelOptions;
use crate::run::hashes;
use crate::run::job::{DeviceKind, JobConfig};
use crate::run::layout::OutDir;
use crate::run::output::{write_outputs, OutputPaths};
use crate::run::record::PaperRecord;
use crate::run::store::RecordStore;
use crate::run::Role;
use crate::schema::Schema;
use crate::tp::launch::{RankEnv, ENV_RANK, ENV_WORLD_SIZE};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit status asking the caller (the sbatch template) to requeue the job.
pub const EXIT_REQUEUE: u8 = 75;

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
        None => crate::plan::GpuMemory::query(0)?,
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

/// How long a rank waits in one collective before the job is declared broken. The longest
/// honest wait is the followers' at the start, while rank 0 extracts the text of its papers
/// (about a second per thousand pages per core; a bad page is cut off by the extractor's own
/// time limit); after that the ranks move in step.
const COLLECTIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// How this process takes part in the job (from `hardware.tp`, the device and `PARAMX_RANK`).
#[derive(Debug, PartialEq, Eq)]
pub enum Launch {
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
    /// The one place that reads `tp`, the device and the rank variables together (`paramx run`
    /// and `paramx bench-gpu` both ask it).
    pub fn decide(tp: usize, device: DeviceKind, rank: Option<RankEnv>) -> Result<Self> {
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

/// `paramx run`: every decision of a run is taken here, in this order: the job file and the
/// flags' `overrides`, how this process takes part ([`Launch`]), the inputs and this task's
/// share of them, the model (fetched if need be), the memory plan, the prompt budget; then the
/// run itself, in one process, in rank threads, or in rank processes.
pub fn run_job(
    job_file: &Path,
    shard_flag: Option<&str>,
    overrides: impl FnOnce(&mut JobConfig) -> Result<()>,
) -> Result<ExitCode> {
    // First of all: a USR1 that arrives while the model loads must not kill the process.
    crate::run::install_stop_handlers();
    let started = std::time::SystemTime::now();
    let mut job = JobConfig::load(job_file)?;
    overrides(&mut job).with_context(|| format!("job {}", job_file.display()))?;
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
    let shard = crate::run::shard::resolve(shard_flag, |k| std::env::var(k).ok())?;
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
        .with_context(|| format!("job {}", job_file.display()))?;
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
    let hashed = hashes::model_hash(&prep.model_path, &OutDir::new(&prep.job.io.out_dir));
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
fn rank_process(prep: &Prepared, env: &RankEnv) -> Result<ExitCode> {
    let (comm, device) = nccl_rank(env)?;
    let mut opts = ModelOptions::cpu();
    opts.device = device;
    opts.dtype = candle_core::DType::BF16;
    opts.comm = comm;
    opts.stop = Some(crate::run::STOP_REQUESTED.clone());
    // Only the leader hashes (a cache hit: the launcher hashed the files before starting us).
    let mhash = if env.rank == 0 {
        Some(hashes::model_hash(
            &prep.model_path,
            &OutDir::new(&prep.job.io.out_dir),
        )?)
    } else {
        None
    };
    let role = Role::of_rank(env.rank, mhash.as_deref())?;
    run_rank(prep, &opts, role)
}

/// A rank's communicator in its NCCL group, and the rank's device.
pub type RankComm = (
    std::sync::Arc<dyn crate::tp::Communicator>,
    candle_core::Device,
);

/// This rank process's NCCL communicator (joined through the rendezvous of `env`, waiting at
/// most [`COLLECTIVE_TIMEOUT`] in a collective) and its device.
#[cfg(feature = "nccl")]
pub fn nccl_rank(env: &RankEnv) -> Result<RankComm> {
    let comm = crate::tp::nccl::NcclComm::from_rank_env(env, COLLECTIVE_TIMEOUT)?;
    let device = comm.device().clone();
    Ok((std::sync::Arc::new(comm), device))
}

#[cfg(not(feature = "nccl"))]
pub fn nccl_rank(env: &RankEnv) -> Result<RankComm> {
    bail!(
        "started as rank {} of {}, but this paramx was built without the `nccl` feature",
        env.rank,
        env.world_size
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
    let dir = OutDir::new(&job.io.out_dir).task(shard);
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
    let out_dir = OutDir::new(&job.io.out_dir).task(shard);
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
        let report = crate::eval::build_report(crate::eval::Scorer::Strict, schema, &g, &p)?;
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
}
