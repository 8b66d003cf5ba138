//! `paramx eval`: score a prediction table against a gold table.
//!
//! Prints the terminal report (with the constant baseline, the gold-vs-itself check and the
//! bootstrap interval) and optionally writes JSON and a self-contained HTML page.
//! Exit code 0 when scored; 1 when the gold-vs-itself check is not 1.000 (the scorer or the
//! schema is broken, so the number cannot be trusted); 2 on unreadable input.

use crate::eval::Scorer;
use crate::schema::Schema;
use crate::table::Table;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Gold CSV (one row per experiment, `study_id` like `Butcher2018EXP3`).
    #[arg(long)]
    pub gold: PathBuf,
    /// Predicted table written by `paramx run` (or any CSV with the gold columns).
    #[arg(long)]
    pub pred: PathBuf,
    /// `strict` (the headline) or `legacy` (the reference validator's rules, for comparison).
    #[arg(long, value_enum, default_value_t = Scorer::Strict)]
    pub scorer: Scorer,
    /// Schema file (default: configs/schema.toml of this repository).
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// Also list every scored cell that was missed or wrong (gold and prediction as read).
    #[arg(long)]
    pub mismatches: bool,
    /// Also write the full report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write a self-contained HTML report (with a per-field F1 bar chart) here.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

fn write(path: &Path, text: &str, what: &str) -> Result<()> {
    std::fs::write(path, text)
        .with_context(|| format!("cannot write the {what} report to {}", path.display()))
}

pub fn run(args: Args) -> Result<ExitCode> {
    let schema = match &args.schema {
        Some(p) => Schema::load(p)?,
        None => Schema::load_default()?,
    };
    let gold = Table::read(&args.gold).context("cannot read the gold table")?;
    let pred = Table::read(&args.pred).context("cannot read the prediction table")?;
    let report = crate::eval::evaluate(args.scorer, &schema, &gold, &pred)?;
    // A closed or full stdout ends the command with an error, never a panic.
    let mut out = std::io::stdout().lock();
    out.write_all(report.to_text().as_bytes())
        .and_then(|()| {
            if args.mismatches {
                out.write_all(format!("\n{}", report.misses_text()).as_bytes())
            } else {
                Ok(())
            }
        })
        .and_then(|()| out.flush())
        .context("cannot write the report to standard output")?;
    if let Some(p) = &args.json {
        write(p, &report.to_json()?, "JSON")?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &args.html {
        write(p, &report.to_html(), "HTML")?;
        eprintln!("wrote {}", p.display());
    }
    if report.gold_vs_itself_strict.summary.f1 < 1.0 {
        eprintln!("paramx: error: gold scored against itself is not 1.000: the scorer or schema is broken");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
