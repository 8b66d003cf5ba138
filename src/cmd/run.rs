//! `paramx run`: the main job, from a folder of PDFs to a parameter table. This file parses the
//! flags; [`crate::run::driver::run_job`] takes every decision of the run.

use crate::run::job::JobConfig;
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

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

/// The flags given override the job file's values.
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

pub fn run(args: Args) -> Result<ExitCode> {
    crate::run::driver::run_job(&args.config, args.shard.as_deref(), |job| apply(&args, job))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::job::JobConfig;

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
