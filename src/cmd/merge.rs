//! `paramx merge`: one table, one JSONL and one error list from the records of all array tasks.
//!
//! Reads `OUT/papers/` (every task's records) and the tasks' manifests (`OUT/shards/*/` and, for
//! an unsplit run, `OUT/manifest.json`), checks that every input is present exactly once, writes
//! `OUT/table.csv`, `OUT/results.jsonl`, `OUT/errors.jsonl`, `OUT/merge.json` (the report) and
//! `OUT/manifest.json` (kind "merge"), and lists failed and missing papers.
//! Exit codes: 0 all inputs done; 1 some failed or missing (the table holds the rest); 2 fatal.

use crate::run::job::JobConfig;
use crate::schema::Schema;
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run's output folder (holding `papers/` and `shards/`); merged files are written here.
    /// Default: the job file's `io.out_dir`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Job file: gives the default output folder and schema.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// PDF files or folders that must all be present. Default: the inputs listed in the tasks'
    /// manifests (then a task that never ran is reported as a missing task).
    #[arg(long = "expect-inputs", num_args = 1..)]
    pub expect_inputs: Vec<PathBuf>,
    /// Parameter schema for the table (default: the job's, else the built-in one). Must be the
    /// one the tasks ran with (checked against their manifests).
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// Which job's records to merge, when the folder holds records of several (e.g. after a
    /// change of limits). Default: the only job hash found in the manifests (or records).
    #[arg(long)]
    pub job_hash: Option<String>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let started = std::time::SystemTime::now();
    let job = args.config.as_deref().map(JobConfig::load).transpose()?;
    let out = match (&args.out, &job) {
        (Some(o), _) => o.clone(),
        (None, Some(j)) => j.io.out_dir.clone(),
        (None, None) => bail!("name the run's output folder with --out (or give --config)"),
    };
    if !out.is_dir() {
        bail!("output folder {} does not exist", out.display());
    }
    let schema = match (&args.schema, &job) {
        (Some(p), _) => Schema::load(p)?,
        (None, Some(j)) => Schema::load(&j.io.schema)?,
        (None, None) => Schema::load_default()?,
    };
    let (report, paths) = crate::run::merge::merge(
        &out,
        &schema,
        args.job_hash.as_deref(),
        &args.expect_inputs,
        started,
    )?;
    for l in report.lines() {
        println!("{l}");
    }
    println!(
        "paramx merge: wrote {}, {}, {}",
        paths.table.display(),
        paths.results.display(),
        paths.errors.display()
    );
    Ok(if report.has_problems() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
