//! The field schema, parameter tables, and scoring a predicted table against a gold one
//! (`paramx eval`).
//!
//! [`schema`] holds what each field means (from `configs/schema.toml`, never from Rust) and how
//! its values parse and compare; [`table`] reads and writes the CSV tables. The rest is scoring.
//!
//! Flow: [`crate::table::Table`] (gold, predictions) -> [`align`] (papers, then experiments) ->
//! [`compare`] (one cell, by the field's schema type) -> [`strict`] or [`legacy`] counts ->
//! [`Outcome`] -> [`summary`] (micro/macro/bootstrap) -> [`report`] (terminal, JSON, HTML).
//! The honesty checks ([`baseline`] answer, gold vs itself) run through the same scorer.

pub mod align;
pub mod baseline;
pub mod bootstrap;
pub mod compare;
pub mod legacy;
pub mod report;
pub mod schema;
pub mod strict;
pub mod table;

use anyhow::Result;
use report::{BootstrapInfo, Report, Scored};
use schema::Schema;
use table::Table;

/// `paramx eval`: checks the gold, refuses a prediction table that has none of the schema's
/// columns (a wrong file, not a score of 0), then builds the report.
pub fn evaluate(scorer: Scorer, schema: &Schema, gold: &Table, pred: &Table) -> Result<Report> {
    check_gold(gold)?;
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
    build_report(scorer, schema, gold, pred)
}

/// Score with the chosen scorer.
pub fn score(scorer: Scorer, schema: &Schema, gold: &Table, pred: &Table) -> Result<Outcome> {
    match scorer {
        Scorer::Strict => strict::score(schema, gold, pred),
        Scorer::Legacy => legacy::score(schema, gold, pred),
    }
}

/// The full report (result, constant baseline, gold vs itself): what `paramx eval` prints, the
/// run's closing score and the review page's verdicts all come from here.
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

/// Checks a gold table before it is scored: it has rows, and no `study_id` names two rows (two
/// rows for one experiment cannot both be right, and the scorer would silently use one).
pub fn check_gold(gold: &crate::table::Table) -> anyhow::Result<()> {
    if gold.rows().is_empty() {
        anyhow::bail!("{}: the gold table has no rows", gold.path.display());
    }
    let Some(col) = gold.column("study_id") else {
        return Ok(());
    };
    let mut seen: std::collections::HashMap<String, u64> = Default::default();
    for r in gold.rows() {
        let id = r.cells.get(col).map(|c| c.trim()).unwrap_or("");
        if id.is_empty() {
            continue;
        }
        if let Some(first) = seen.insert(id.to_lowercase(), r.line) {
            anyhow::bail!(
                "{}: study_id `{id}` names two rows (lines {first} and {}); each experiment needs its own id",
                gold.path.display(),
                r.line
            );
        }
    }
    Ok(())
}

use serde::Serialize;

/// Which rule set scored an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scorer {
    /// The contract's scorer: typed cell rules, alignment by DOI/title/author+year.
    Strict,
    /// The reference validator's rules (file-name ids, substring matches), for comparison only.
    Legacy,
}

impl std::fmt::Display for Scorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scorer::Strict => "strict",
            Scorer::Legacy => "legacy",
        })
    }
}

/// Cell counts. A mismatching prediction is `fp + fn` in the strict scorer and `wrong` in the
/// legacy one, so that both use P = TP/(TP+FP+wrong), R = TP/(TP+FN).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub wrong: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
        self.wrong += o.wrong;
    }

    /// P is 0 when nothing was predicted.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp + self.wrong)
    }

    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }

    /// Whether any gold value was scored here (a gold cell is a TP, an FN or a wrong/FP+FN).
    pub fn has_gold(&self) -> bool {
        self.tp + self.fn_ + self.wrong > 0
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Scores of one field.
#[derive(Debug, Clone, Serialize)]
pub struct FieldScore {
    pub name: String,
    pub counts: Counts,
    /// Free-text fields are reported on their own line, never in the headline numbers.
    pub free_text: bool,
    pub reads_paper: bool,
}

/// Scores of one gold paper (headline fields only, free text apart).
#[derive(Debug, Clone, Serialize)]
pub struct PaperScore {
    /// Gold paper id (`Butcher2018`).
    pub id: String,
    /// The prediction it was aligned with (source file or id), if any.
    pub matched: Option<String>,
    /// How it was aligned (`doi`, `title`, `author+year`, or the legacy rule).
    pub matched_by: Option<String>,
    pub counts: Counts,
    pub free_text: Counts,
}

/// Everything one scorer produced for one (gold, predictions) pair.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scorer: Scorer,
    pub fields: Vec<FieldScore>,
    pub papers: Vec<PaperScore>,
    /// Non-empty predictions in cells whose gold is empty, or in rows/papers with no gold.
    pub unscored_predictions: u64,
    /// Gold rows skipped because their study_id is empty.
    pub skipped_gold_rows: usize,
    /// Prediction rows dropped because their PDF (sha256) was already seen.
    pub duplicate_pdf_rows: usize,
    /// Predicted papers that matched no gold paper.
    pub unmatched_predicted_papers: usize,
    /// Every scored cell that was not a TP (what to look at first when a score is low).
    pub misses: Vec<CellMiss>,
}

/// One scored gold cell that the prediction missed or got wrong.
#[derive(Debug, Clone, Serialize)]
pub struct CellMiss {
    pub study_id: String,
    pub field: String,
    /// The gold cell as the schema reads it (normalized text).
    pub gold: String,
    /// The prediction as the schema reads it; empty when nothing was predicted.
    pub pred: String,
}

/// Headline numbers of an outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub micro: Counts,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Mean per-field F1 over headline fields that have gold values.
    pub macro_f1: f64,
    /// Micro over free-text fields.
    pub free_text: Counts,
    pub free_text_f1: f64,
    /// Micro over the fields marked `reads_paper` in the schema.
    pub reads_paper: Counts,
    pub reads_paper_f1: f64,
    pub reads_paper_fields: Vec<String>,
    /// Bootstrap 95% interval of micro F1 over papers.
    pub ci95: (f64, f64),
}

/// Resamples and seed of the bootstrap; fixed so that a report is reproducible.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;
pub const BOOTSTRAP_SEED: u64 = 0x5EED_2024;

impl Outcome {
    pub fn summary(&self) -> Summary {
        let mut micro = Counts::default();
        let mut free = Counts::default();
        let mut reads = Counts::default();
        let mut f1s = Vec::new();
        for f in &self.fields {
            if f.free_text {
                free.add(&f.counts);
                continue;
            }
            micro.add(&f.counts);
            if f.reads_paper {
                reads.add(&f.counts);
            }
            if f.counts.has_gold() {
                f1s.push(f.counts.f1());
            }
        }
        let macro_f1 = if f1s.is_empty() {
            0.0
        } else {
            f1s.iter().sum::<f64>() / f1s.len() as f64
        };
        let per_paper: Vec<Counts> = self
            .papers
            .iter()
            .map(|p| p.counts)
            .filter(|c| c.has_gold())
            .collect();
        let ci95 = bootstrap::micro_f1_interval(&per_paper, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED);
        Summary {
            precision: micro.precision(),
            recall: micro.recall(),
            f1: micro.f1(),
            micro,
            macro_f1,
            free_text_f1: free.f1(),
            free_text: free,
            reads_paper_f1: reads.f1(),
            reads_paper: reads,
            reads_paper_fields: self
                .fields
                .iter()
                .filter(|f| f.reads_paper)
                .map(|f| f.name.clone())
                .collect(),
            ci95,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_is_zero_when_nothing_is_predicted() {
        let c = Counts {
            tp: 0,
            fp: 0,
            fn_: 5,
            wrong: 0,
        };
        assert_eq!((c.precision(), c.recall(), c.f1()), (0.0, 0.0, 0.0));
    }

    #[test]
    fn wrong_counts_against_precision_only() {
        let c = Counts {
            tp: 2,
            fp: 1,
            fn_: 1,
            wrong: 1,
        };
        assert_eq!(c.precision(), 0.5);
        assert!((c.recall() - 2.0 / 3.0).abs() < 1e-12);
    }
}
