//! `paramx report OUT`: renders the review page (`OUT/report.html`) again from a run's
//! records, every array task's included: after `paramx merge`, with a gold added, or with the
//! PDFs moved (`--input`).

use crate::report::{self, links::Sources};
use crate::run::manifest::Manifest;
use crate::schema::Schema;
use crate::table::Table;
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run's output folder (the one holding `papers/`).
    pub dir: PathBuf,
    /// Gold CSV: mark every cell TP/FP/FN and chart F1 per field against the constant baseline.
    #[arg(long)]
    pub gold: Option<PathBuf>,
    /// Where to write the page (default: DIR/report.html). PDF links are relative to it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Schema file (default: configs/schema.toml of this repository).
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// PDF files or folders to link to, besides those the run listed in `sources.json`.
    #[arg(long = "input")]
    pub inputs: Vec<PathBuf>,
    /// The job whose records to show, when the folder holds several (see `manifest.json`).
    #[arg(long)]
    pub job_hash: Option<String>,
}

/// The job hashes of the run's manifests (`DIR/manifest.json`, `DIR/shards/*/manifest.json`).
fn manifest_job_hashes(dir: &Path) -> Result<BTreeSet<String>> {
    let files =
        crate::run::layout::OutDir::new(dir).in_every_task(crate::run::manifest::FILE_NAME)?;
    let mut hashes = BTreeSet::new();
    for f in files.iter().filter(|f| f.is_file()) {
        let m = Manifest::read(f).with_context(|| format!("cannot read {}", f.display()))?;
        hashes.insert(m.hashes.job_hash);
    }
    Ok(hashes)
}

/// The job to show: `--job-hash`, else the one the manifests name, else the one the records
/// have (a run still going has no manifest yet).
fn choose_job(args: &Args) -> Result<String> {
    if let Some(h) = &args.job_hash {
        return Ok(h.clone());
    }
    let from_manifests = manifest_job_hashes(&args.dir)?;
    let candidates: BTreeSet<String> = if from_manifests.is_empty() {
        crate::run::store::RecordStore::new(&args.dir)
            .load_all::<crate::run::record::PaperRecord>()
            .with_context(|| format!("cannot read the records of {}", args.dir.display()))?
            .into_iter()
            .map(|(_, r)| r.key.job_hash)
            .collect()
    } else {
        from_manifests
    };
    match candidates.len() {
        0 => bail!(
            "{}: no records (is this the output folder of `paramx run`?)",
            args.dir.display()
        ),
        1 => Ok(candidates.into_iter().next().unwrap_or_default()),
        _ => bail!(
            "{}: records of {} jobs; choose one with --job-hash: {}",
            args.dir.display(),
            candidates.len(),
            candidates.into_iter().collect::<Vec<_>>().join(", ")
        ),
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    if !crate::run::layout::OutDir::new(&args.dir).papers().is_dir() {
        bail!(
            "{}: no papers/ folder: not the output folder of `paramx run`",
            args.dir.display()
        );
    }
    let schema = match &args.schema {
        Some(p) => Schema::load(p)?,
        None => Schema::load_default()?,
    };
    let gold = match &args.gold {
        Some(g) => {
            let t = Table::read(g)
                .with_context(|| format!("--gold {}: cannot read the gold table", g.display()))?;
            crate::eval::check_gold(&t).with_context(|| format!("--gold {}", g.display()))?;
            Some(t)
        }
        None => None,
    };
    let job_hash = choose_job(&args)?;
    let records = report::job_records(&args.dir, &job_hash)?;
    let mut sources = Sources::read_run(&args.dir)?;
    if !args.inputs.is_empty() {
        sources.extend(Sources::of_inputs(&crate::run::discover(&args.inputs)?));
    }
    let page = args
        .out
        .clone()
        .unwrap_or_else(|| args.dir.join(report::FILE_NAME));
    let bytes = report::write(
        &page,
        &args.dir,
        &schema,
        &records,
        &job_hash,
        gold.as_ref(),
        &sources,
    )?;
    eprintln!(
        "paramx: wrote {} ({} paper(s), {:.1} KiB) in {:.2} s",
        page.display(),
        records.len(),
        bytes as f64 / 1024.0,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
