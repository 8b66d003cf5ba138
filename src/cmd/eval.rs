//! `paramx eval`: score a prediction table against a gold table.
//!
//! Prints the terminal report (with the constant baseline, the gold-vs-itself check and the
//! bootstrap interval) and optionally writes JSON and a self-contained HTML page.
//! Exit code 0 when scored; 1 when the gold-vs-itself check is not 1.000 (the scorer or the
//! schema is broken, so the number cannot be trusted); 2 on unreadable input.

use crate::eval::report::{BootstrapInfo, Report, Scored};
use crate::eval::{baseline, legacy, strict, Scorer};
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

/// Score with the chosen scorer.
pub fn score(
    scorer: Scorer,
    schema: &Schema,
    gold: &Table,
    pred: &Table,
) -> Result<crate::eval::Outcome> {
    match scorer {
        Scorer::Strict => strict::score(schema, gold, pred),
        Scorer::Legacy => legacy::score(schema, gold, pred),
    }
}

/// Build the full report (result, constant baseline, gold vs itself).
pub fn build_report(scorer: Scorer, schema: &Schema, gold: &Table, pred: &Table) -> Result<Report> {
    let result = score(scorer, schema, gold, pred)?;
    let constant = baseline::constant_table(schema, gold)?;
    let base = score(scorer, schema, gold, &constant)?;
    let self_strict = strict::score(schema, gold, gold)?;
    let self_chosen = match scorer {
        Scorer::Strict => None,
        other => Some(Scored::new(score(other, schema, gold, gold)?)),
    };
    Ok(Report {
        scorer,
        gold: gold.path.display().to_string(),
        pred: pred.path.display().to_string(),
        schema: schema.path.display().to_string(),
        bootstrap: BootstrapInfo::default(),
        result: Scored::new(result),
        constant_baseline: Scored::new(base),
        gold_vs_itself_strict: Scored::new(self_strict),
        gold_vs_itself: self_chosen,
    })
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
    crate::eval::check_gold(&gold)?;
    let pred = Table::read(&args.pred).context("cannot read the prediction table")?;
    // A table with none of the schema's parameter columns is a wrong file, not a score of 0.
    if !schema
        .scored_fields()
        .any(|f| pred.column(&f.name).is_some())
    {
        anyhow::bail!(
            "{}: none of the schema's parameter columns (n_total, effector, ...) is in its header; \
             is this a prediction table?",
            pred.path.display()
        );
    }
    let report = build_report(args.scorer, &schema, &gold, &pred)?;
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
