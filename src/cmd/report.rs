//! `paramx report OUT`: renders the review page (`OUT/report.html`) again from a run's
//! records, every array task's included: after `paramx merge`, with a gold added, or with the
//! PDFs moved (`--input`).

use crate::report;
use crate::schema::Schema;
use crate::table::Table;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
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
    let page = args
        .out
        .clone()
        .unwrap_or_else(|| args.dir.join(report::FILE_NAME));
    let (papers, bytes) = report::rewrite(
        &args.dir,
        &page,
        &schema,
        gold.as_ref(),
        args.job_hash.as_deref(),
        &args.inputs,
    )?;
    eprintln!(
        "paramx: wrote {} ({} paper(s), {:.1} KiB) in {:.2} s",
        page.display(),
        papers,
        bytes as f64 / 1024.0,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
