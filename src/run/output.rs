//! The run's outputs, derived from its per-paper records: `table.csv` (the gold's column layout
//! plus the pipeline's columns, one row per experiment), `results.jsonl` (one line per paper:
//! values, evidence, offsets, token counts, timings), `errors.jsonl` (one line per failed paper).
//!
//! Rows are ordered by source file name, then experiment number, so that the same records give
//! the same bytes whatever order the papers finished in.

use crate::run::record::{Outcome, PaperRecord};
use crate::run::store::write_atomic;
use crate::schema::{Role, Schema};
use crate::table::Table;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Where the derived files of a run go.
pub struct OutputPaths {
    pub table: PathBuf,
    pub results: PathBuf,
    pub errors: PathBuf,
    /// Per-field evidence support of the table's values (`run::evidence::EvidenceReport`).
    pub evidence: PathBuf,
}

impl OutputPaths {
    pub fn in_dir(dir: &Path) -> Self {
        OutputPaths {
            table: dir.join("table.csv"),
            results: dir.join("results.jsonl"),
            errors: dir.join("errors.jsonl"),
            evidence: dir.join("evidence.json"),
        }
    }
}

fn doi_url(doi: &str) -> String {
    if doi.starts_with("http") {
        doi.to_string()
    } else {
        format!("https://doi.org/{doi}")
    }
}

/// The prediction table of `records` (errors contribute no rows).
pub fn table_of(schema: &Schema, records: &[&PaperRecord], path: &Path) -> Result<Table> {
    let mut table = Table::for_predictions(path, schema);
    let headers: Vec<String> = table.headers().to_vec();
    for rec in records {
        let Outcome::Ok(result) = &rec.outcome else {
            continue;
        };
        for exp in &result.experiments {
            let cells = headers
                .iter()
                .map(|h| {
                    if let Some(v) = exp.values.get(h) {
                        return v.value.clone();
                    }
                    match h.as_str() {
                        "title" | "title_detected" => rec.title.clone().unwrap_or_default(),
                        "authors" => rec.authors.join(", "),
                        "year" => rec.year.map(|y| y.to_string()).unwrap_or_default(),
                        "study_id" => rec
                            .study_id(exp.experiment, result.experiments.len())
                            .unwrap_or_default(),
                        "doi_or_url" => rec.doi.as_deref().map(doi_url).unwrap_or_default(),
                        "doi" => rec.doi.clone().unwrap_or_default(),
                        "source_file" => rec.source_file.clone(),
                        "sha256" => rec.key.sha256.clone(),
                        "experiment" => exp.experiment.to_string(),
                        _ => String::new(),
                    }
                })
                .collect();
            table.push(cells)?;
        }
    }
    Ok(table)
}

/// Orders records for output: by file name, then sha256 (two copies of one name).
pub fn sorted(records: &[PaperRecord]) -> Vec<&PaperRecord> {
    let mut v: Vec<&PaperRecord> = records.iter().collect();
    v.sort_by(|a, b| {
        (a.source_file.as_str(), a.key.sha256.as_str())
            .cmp(&(b.source_file.as_str(), b.key.sha256.as_str()))
    });
    v
}

/// Writes table, results and errors for `records` (atomically, each file whole or not at all).
pub fn write_outputs(schema: &Schema, records: &[PaperRecord], paths: &OutputPaths) -> Result<()> {
    let recs = sorted(records);
    let table = table_of(schema, &recs, &paths.table)?;
    let mut csv = Vec::new();
    table.write_to(&mut csv)?;
    write_atomic(&paths.table, &csv)?;

    let mut results = Vec::new();
    let mut errors = Vec::new();
    for rec in &recs {
        let line = serde_json::to_string(rec).context("serialising a paper record")?;
        results.extend_from_slice(line.as_bytes());
        results.push(b'\n');
        if let Outcome::Error { stage, message } = &rec.outcome {
            let e = serde_json::json!({
                "source_file": rec.source_file,
                "sha256": rec.key.sha256,
                "stage": stage,
                "error": message,
            });
            errors.extend_from_slice(e.to_string().as_bytes());
            errors.push(b'\n');
        }
    }
    write_atomic(&paths.results, &results)?;
    write_atomic(&paths.errors, &errors)?;
    let evidence = crate::run::evidence::EvidenceReport::of(schema, &recs);
    let json = serde_json::to_vec_pretty(&evidence).context("serialising the evidence report")?;
    write_atomic(&paths.evidence, &json)?;
    Ok(())
}

/// Identity columns the run fills from the PDF rather than from the model.
pub fn identity_columns(schema: &Schema) -> Vec<&str> {
    schema
        .fields()
        .iter()
        .filter(|f| f.role == Role::Identity)
        .map(|f| f.name.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::answer::{AnswerCompleteness, GroundedExperiment, GroundedValue};
    use crate::run::locate::Span;
    use crate::run::record::{PaperResult, Stage};
    use crate::run::store::RecordKey;
    use std::collections::BTreeMap;

    fn rec(file: &str, sha: &str, exps: &[(u32, &str)]) -> PaperRecord {
        let experiments = exps
            .iter()
            .map(|&(n, total)| {
                let mut values = BTreeMap::new();
                values.insert(
                    "n_total".to_string(),
                    GroundedValue {
                        raw: total.into(),
                        value: total.into(),
                        quote: "q".into(),
                        span: Span { start: 0, end: 1 },
                        page: Some(1),
                        inherited: false,
                        sole_offer: false,
                    },
                );
                GroundedExperiment {
                    experiment: n,
                    label: None,
                    values,
                }
            })
            .collect();
        PaperRecord {
            key: RecordKey {
                sha256: sha.into(),
                job_hash: "j".into(),
            },
            source_file: file.into(),
            doi: Some("10.1/x".into()),
            title: Some("A title".into()),
            authors: vec![],
            year: None,
            pages: 3,
            outcome: Outcome::Ok(PaperResult {
                experiments,
                dropped: vec![],
                completeness: AnswerCompleteness::Complete,
                finish: "constraint".into(),
                prompt_tokens: 10,
                generated_tokens: 5,
                prefix_tokens: 0,
                prompt_pieces: vec![],
                raw_answer: "{}".into(),
                questions: vec![],
            }),
            timing: None,
        }
    }

    #[test]
    fn outputs_are_sorted_and_readable_by_eval() -> Result<()> {
        let schema = Schema::load_default()?;
        let d = tempfile::tempdir()?;
        let paths = OutputPaths::in_dir(d.path());
        let mut bad = rec("a_broken.pdf", "ff", &[]);
        bad.outcome = Outcome::Error {
            stage: Stage::Text,
            message: "not a PDF".into(),
        };
        let records = vec![
            rec("b.pdf", "bb", &[(2, "12"), (1, "10")]),
            bad,
            rec("a.pdf", "aa", &[(1, "8")]),
        ];
        write_outputs(&schema, &records, &paths)?;
        let t = Table::read(&paths.table)?;
        let files: Vec<&str> = t.rows().iter().map(|r| t.get(r, "source_file")).collect();
        assert_eq!(files, ["a.pdf", "b.pdf", "b.pdf"]);
        let n: Vec<&str> = t.rows().iter().map(|r| t.get(r, "n_total")).collect();
        assert_eq!(
            n,
            ["8", "12", "10"],
            "experiment order kept as recorded (sorted at grounding)"
        );
        assert_eq!(t.get(&t.rows()[0], "doi_or_url"), "https://doi.org/10.1/x");
        let errors = std::fs::read_to_string(&paths.errors)?;
        assert_eq!(errors.lines().count(), 1);
        assert!(errors.contains("a_broken.pdf") && errors.contains("not a PDF"));
        assert_eq!(std::fs::read_to_string(&paths.results)?.lines().count(), 3);
        // same records in another order: same bytes
        let before = std::fs::read(&paths.table)?;
        let mut rev = records.clone();
        rev.reverse();
        write_outputs(&schema, &rev, &paths)?;
        assert_eq!(before, std::fs::read(&paths.table)?);
        Ok(())
    }
}
