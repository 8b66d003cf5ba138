//! The gold side of the page: every predicted cell's verdict (TP, FP, FN) with the gold value,
//! gold rows and papers the run did not produce, and the per-field F1 chart with the constant
//! baseline. Everything comes from the strict scorer (`eval::strict::score_cells`,
//! `eval::build_report`) run on the table the records give: the page never matches cells
//! itself.

use super::data::{CellView, PaperView, RowView};
use crate::eval::strict::{self, Verdict};
use crate::schema::Schema;
use crate::table::Table;
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;

/// A scored cell's verdict, as the page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Equal to the gold.
    Tp,
    /// A value that differs from the gold (counted FP and FN by the strict scorer).
    Fp,
    /// Nothing predicted where the gold has a value.
    Fn,
}

impl From<Verdict> for Status {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Equal => Status::Tp,
            Verdict::Different => Status::Fp,
            Verdict::Missing => Status::Fn,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GoldView {
    pub path: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub baseline_f1: f64,
    /// Gold papers that no predicted paper aligned with (all their cells are missed).
    pub unmatched: Vec<String>,
    /// Inline SVG (escaped by `eval::report`): F1 per field with the constant baseline.
    #[serde(skip)]
    pub chart_svg: String,
}

/// Marks the cells of `papers` with the strict scorer's verdicts of `pred` (the table the
/// records give; `line_of[i]` is the (paper, row) of its line `i + 2`) against `gold`.
pub fn apply(
    schema: &Schema,
    gold: &Table,
    pred: &Table,
    line_of: &[(usize, usize)],
    papers: &mut [PaperView],
) -> Result<GoldView> {
    let (_, verdicts) = strict::score_cells(schema, gold, pred)?;
    let report = crate::eval::build_report(crate::eval::Scorer::Strict, schema, gold, pred)?;
    let col: BTreeMap<&str, usize> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.as_str(), i))
        .collect();
    let at = |line: u64| -> Option<(usize, usize)> {
        let i = usize::try_from(line.checked_sub(2)?).ok()?;
        line_of.get(i).copied()
    };
    let mut unmatched: Vec<String> = Vec::new();
    // Gold rows with no predicted experiment, per paper: study_id -> cells.
    let mut gold_only: BTreeMap<(usize, String), Vec<CellView>> = BTreeMap::new();
    for v in &verdicts {
        let Some(&ci) = col.get(v.field.as_str()) else {
            continue;
        };
        let cell_of = |c: &mut CellView, merged: bool| {
            c.st = Some(v.verdict.into());
            c.gold = Some(v.gold.clone());
            c.merged = merged;
        };
        if !v.pred_lines.is_empty() {
            let merged = v.pred_lines.len() > 1;
            for &line in &v.pred_lines {
                if let Some((p, r)) = at(line) {
                    let cell = &mut papers[p].rows[r].cells[ci];
                    // A paper-level verdict marks the experiments that gave a value (all of
                    // them when none did: the gold value was missed).
                    if merged && cell.v.is_empty() && v.verdict != Verdict::Missing {
                        continue;
                    }
                    cell_of(cell, merged);
                }
            }
        } else if let Some((p, _)) = v.paper_line.and_then(at) {
            let cells = gold_only
                .entry((p, v.study_id.clone()))
                .or_insert_with(|| vec![CellView::default(); col.len()]);
            cell_of(&mut cells[ci], false);
        } else {
            let paper = crate::eval::align::split_study_id(&v.study_id)
                .map(|(_, _, suffix)| v.study_id[..v.study_id.len() - suffix.len()].to_string())
                .unwrap_or_else(|| v.study_id.clone());
            if !unmatched.contains(&paper) {
                unmatched.push(paper);
            }
        }
    }
    for ((p, study_id), cells) in gold_only {
        papers[p].rows.push(RowView {
            experiment: None,
            label: None,
            study_id,
            gold_only: true,
            cells,
        });
    }
    let s = &report.result.summary;
    Ok(GoldView {
        path: gold.path.display().to_string(),
        precision: s.precision,
        recall: s.recall,
        f1: s.f1,
        baseline_f1: report.constant_baseline.summary.f1,
        unmatched,
        chart_svg: report.svg_chart(),
    })
}
