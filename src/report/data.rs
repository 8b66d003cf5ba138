//! What the review page shows, built from the run's records: one view per paper, one row per
//! experiment, one cell per schema column (the gold's layout), each value with its evidence.
//!
//! The page's script only presents this data and edits a copy of the cells; every decision
//! (which value is in the table, the study id a corrected row is exported under, each cell's
//! verdict against the gold) is taken here, by the code that writes `table.csv` and scores it.

use super::context::Passage;
use super::gold::{self, GoldView};
use super::links::{self, Sources};
use crate::pdf::Document;
use crate::run::answer::DropReason;
use crate::run::output::{sorted, table_of};
use crate::run::record::{Outcome, PaperRecord, Stage};
use crate::schema::{Role, Schema};
use crate::table::Table;
use anyhow::Result;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// The gold's row id column (the scoring contract's name, as `eval::check_gold` reads it).
pub const STUDY_ID: &str = "study_id";

/// Everything the page is built from.
pub struct ReportInput<'a> {
    pub schema: &'a Schema,
    /// The job's records (any order; errors included).
    pub records: &'a [PaperRecord],
    pub job_hash: &'a str,
    /// Where the page will be written: links to the PDFs are relative to it.
    pub page_dir: &'a Path,
    /// The run's text cache, for the passage around each quote (`None`: quotes alone).
    pub text_cache: Option<&'a Path>,
    pub sources: &'a Sources,
    pub gold: Option<&'a Table>,
    /// A heading for the page (the output folder).
    pub heading: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReportData {
    pub heading: String,
    pub generated_utc: String,
    pub job_hash: String,
    /// The schema's columns, in the gold's order (what the corrected CSV holds).
    pub columns: Vec<ColumnView>,
    pub papers: Vec<PaperView>,
    pub totals: Totals,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gold: Option<GoldView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColumnView {
    pub name: String,
    pub description: String,
    /// Shown as a column of the paper tables: the scored design parameters.
    pub shown: bool,
    /// A value the reader may correct (every parameter; identity columns come from the PDF).
    pub editable: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub papers: usize,
    pub failed: usize,
    pub experiments: usize,
    pub values: usize,
    pub inherited: usize,
    pub dropped: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct PaperView {
    pub file: String,
    pub sha256: String,
    pub title: Option<String>,
    pub authors: Vec<String>,
    pub year: Option<u32>,
    pub doi: Option<String>,
    pub pages: usize,
    /// Link to the PDF, relative to the page where possible (`None`: location unknown).
    pub pdf: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorView>,
    pub rows: Vec<RowView>,
    pub dropped: Vec<DroppedView>,
    /// Quotes in their context, referenced by index from the cells (one per distinct span).
    pub passages: Vec<Passage>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorView {
    pub stage: Stage,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RowView {
    /// The experiment number (`None` for a gold row that no predicted experiment matched).
    pub experiment: Option<u32>,
    pub label: Option<String>,
    /// The study id the row is exported under (unique in the page; the gold's id for a
    /// gold-only row).
    pub study_id: String,
    /// A gold row of this paper that no predicted experiment paired with: shown with its
    /// gold values (all missed), never exported.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub gold_only: bool,
    /// One per column of [`ReportData::columns`].
    pub cells: Vec<CellView>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CellView {
    /// What `table.csv` holds.
    pub v: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ev: Option<EvidenceView>,
    /// Indices into the paper's `dropped` of values dropped for this cell.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub st: Option<gold::Status>,
    /// The gold value as the schema reads it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gold: Option<String>,
    /// The verdict is the paper's (a single-row gold against the merged experiments).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub merged: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvidenceView {
    /// As the model wrote it (before the schema's normalization).
    pub raw: String,
    pub page: Option<usize>,
    pub inherited: bool,
    /// The model left the field null; the value is the one every sentence shown for it states.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sole_offer: bool,
    /// Index into the paper's `passages`.
    pub passage: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct DroppedView {
    pub experiment: u32,
    pub field: String,
    pub value: String,
    pub quote: String,
    pub reason: DropReason,
    pub detail: Option<String>,
}

/// Builds the page's data from the records (sorted as `table.csv` is).
pub fn build(input: &ReportInput<'_>) -> Result<ReportData> {
    let schema = input.schema;
    let recs = sorted(input.records);
    let columns: Vec<ColumnView> = schema
        .fields()
        .iter()
        .map(|f| ColumnView {
            name: f.name.clone(),
            description: f.description.clone(),
            shown: f.scored,
            editable: f.role == Role::Parameter,
        })
        .collect();
    let col_index: HashMap<&str, usize> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.as_str(), i))
        .collect();
    // The prediction table exactly as `table.csv` has it: row i is line i + 2.
    let table = table_of(schema, &recs, Path::new("table.csv"))?;
    let mut table_rows = table.rows().iter();
    let ids = export_ids(&recs);
    let mut totals = Totals::default();
    let mut papers = Vec::with_capacity(recs.len());
    // (paper, row) of each prediction-table line, for the gold verdicts.
    let mut line_of: Vec<(usize, usize)> = Vec::new();
    for (pi, rec) in recs.iter().enumerate() {
        totals.papers += 1;
        let pdf = input
            .sources
            .locate(&rec.source_file, &rec.key.sha256)
            .map(|p| links::href(input.page_dir, &p));
        let mut paper = PaperView {
            file: rec.source_file.clone(),
            sha256: rec.key.sha256.clone(),
            title: rec.title.clone(),
            authors: rec.authors.clone(),
            year: rec.year,
            doi: rec.doi.clone(),
            pages: rec.pages,
            pdf,
            error: None,
            rows: Vec::new(),
            dropped: Vec::new(),
            passages: Vec::new(),
        };
        let result = match &rec.outcome {
            Outcome::Ok(r) => r,
            Outcome::Error { stage, message } => {
                totals.failed += 1;
                paper.error = Some(ErrorView {
                    stage: *stage,
                    message: message.clone(),
                });
                papers.push(paper);
                continue;
            }
        };
        let doc: Option<Document> = input
            .text_cache
            .and_then(|dir| crate::pdf::cache::load(dir, &rec.key.sha256));
        let mut passage_of: BTreeMap<(usize, usize), usize> = BTreeMap::new();
        for (ei, exp) in result.experiments.iter().enumerate() {
            let row = table_rows
                .next()
                .ok_or_else(|| anyhow::anyhow!("the table has fewer rows than experiments"))?;
            let mut cells: Vec<CellView> = row
                .cells
                .iter()
                .take(columns.len())
                .map(|v| CellView {
                    v: v.clone(),
                    ..Default::default()
                })
                .collect();
            for (field, gv) in &exp.values {
                let Some(&ci) = col_index.get(field.as_str()) else {
                    continue;
                };
                let key = (gv.span.start, gv.span.end);
                let passage = *passage_of.entry(key).or_insert_with(|| {
                    paper
                        .passages
                        .push(Passage::around(doc.as_ref(), gv.span, &gv.quote));
                    paper.passages.len() - 1
                });
                cells[ci].ev = Some(EvidenceView {
                    raw: gv.raw.clone(),
                    page: gv.page,
                    inherited: gv.inherited,
                    sole_offer: gv.sole_offer,
                    passage,
                });
                totals.values += 1;
                totals.inherited += usize::from(gv.inherited);
            }
            if let Some(&ci) = col_index.get(STUDY_ID) {
                cells[ci].v = ids[pi][ei].clone();
            }
            line_of.push((papers.len(), paper.rows.len()));
            paper.rows.push(RowView {
                experiment: Some(exp.experiment),
                label: exp.label.clone(),
                study_id: ids[pi][ei].clone(),
                gold_only: false,
                cells,
            });
            totals.experiments += 1;
        }
        for d in &result.dropped {
            let di = paper.dropped.len();
            paper.dropped.push(DroppedView {
                experiment: d.experiment,
                field: d.field.clone(),
                value: d.value.clone(),
                quote: d.quote.clone(),
                reason: d.reason,
                detail: d.detail.clone(),
            });
            totals.dropped += 1;
            let Some(&ci) = col_index.get(d.field.as_str()) else {
                continue;
            };
            let rows = paper.rows.iter_mut();
            for r in rows.filter(|r| r.experiment == Some(d.experiment)) {
                r.cells[ci].dropped.push(di);
            }
        }
        papers.push(paper);
    }
    let gold = match input.gold {
        Some(g) => Some(gold::apply(schema, g, &table, &line_of, &mut papers)?),
        None => None,
    };
    Ok(ReportData {
        heading: input.heading.clone(),
        generated_utc: crate::run::manifest::utc_rfc3339(std::time::SystemTime::now()),
        job_hash: input.job_hash.to_string(),
        columns,
        papers,
        totals,
        gold,
    })
}

/// The study id of every experiment row (per paper, per experiment), unique over the page and
/// never empty, so that the corrected table passes `eval::check_gold` and each paper stays one
/// gold paper: the record's own id (`Butcher2018EXP3`, what the gold uses); a second paper
/// with the same surname and year gets a letter after the surname (`ButcherB2018`: the year and
/// experiment suffix still parse), as the eval groups gold rows by surname and year; a paper
/// without surname or year is `Paper0001` by its place in the page.
pub fn export_ids(recs: &[&PaperRecord]) -> Vec<Vec<String>> {
    // The gold paper an id belongs to (`butcher2018`), as `eval::align::load_gold` groups rows.
    fn paper_key(id: &str) -> String {
        match crate::eval::align::split_study_id(id) {
            Some((surname, year, _)) => format!("{surname}{year}"),
            None => id.to_lowercase(),
        }
    }
    fn with_mark(id: &str, mark: &str) -> String {
        let letters = id.bytes().take_while(u8::is_ascii_alphabetic).count();
        format!("{}{mark}{}", &id[..letters], &id[letters..])
    }
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::with_capacity(recs.len());
    for (pi, rec) in recs.iter().enumerate() {
        let Outcome::Ok(result) = &rec.outcome else {
            out.push(Vec::new());
            continue;
        };
        let n = result.experiments.len();
        let ids: Vec<String> = result
            .experiments
            .iter()
            .map(|e| {
                rec.study_id(e.experiment, n).unwrap_or_else(|| {
                    let id = format!("Paper{:04}", pi + 1);
                    if n > 1 {
                        format!("{id}EXP{}", e.experiment)
                    } else {
                        id
                    }
                })
            })
            .collect();
        let Some(first) = ids.first() else {
            out.push(ids);
            continue;
        };
        // B, C, ... Z, then BB, CC, ... (letters only: a digit would run into the year); all of
        // a paper's rows move together.
        let marks = std::iter::once(String::new()).chain(
            (1usize..).flat_map(|round| ('B'..='Z').map(move |c| c.to_string().repeat(round))),
        );
        let mut chosen = ids.clone();
        for mark in marks {
            let candidate = with_mark(first, &mark);
            if !used.contains(&paper_key(&candidate)) {
                chosen = ids.iter().map(|id| with_mark(id, &mark)).collect();
                used.insert(paper_key(&candidate));
                break;
            }
        }
        out.push(chosen);
    }
    out
}
