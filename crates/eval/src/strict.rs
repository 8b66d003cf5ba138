//! The strict scorer (the headline number): papers and experiments aligned by [`align`], each
//! scored gold cell compared by [`compare::equal`] under its schema type.
//!
//! Per scored cell (gold non-empty): prediction empty -> FN; equal -> TP; different -> FP + FN.
//! Predictions where the gold is empty, or with no gold row at all, are counted as unscored.

use super::{align, compare, CellMiss, Counts, FieldScore, Outcome, PaperScore, Scorer};
use crate::schema::{Schema, Value};
use crate::table::Table;
use anyhow::Result;

/// Score `pred` against `gold`.
pub fn score(schema: &Schema, gold: &Table, pred: &Table) -> Result<Outcome> {
    Ok(score_cells(schema, gold, pred)?.0)
}

/// One scored gold cell and the prediction rows it was compared with: what a review page needs
/// to mark each predicted cell TP, FP or FN with the gold value beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct CellVerdict {
    /// The gold row's study_id.
    pub study_id: String,
    pub field: String,
    /// Both sides as the schema reads them.
    pub gold: String,
    pub pred: String,
    pub verdict: Verdict,
    /// Lines of the prediction table the gold row was compared with: one, several when a
    /// single-row gold met the paper's merged experiments, none when no experiment paired.
    pub pred_lines: Vec<u64>,
    /// A line of the predicted paper aligned with the gold paper (`None`: none aligned).
    pub paper_line: Option<u64>,
}

/// [`score`], plus the verdict of every scored gold cell (the same walk: one set of rules).
pub fn score_cells(
    schema: &Schema,
    gold: &Table,
    pred: &Table,
) -> Result<(Outcome, Vec<CellVerdict>)> {
    let mut verdicts = Vec::new();
    let gold_set = align::load_gold(schema, gold)?;
    let pred_set = align::load_pred(schema, pred)?;
    let alignment = align::align_papers(&gold_set.papers, &pred_set.papers);
    let fields = schema.fields();
    let mut field_counts = vec![Counts::default(); fields.len()];
    let mut papers = Vec::with_capacity(gold_set.papers.len());
    let mut unscored = 0u64;
    let mut misses = Vec::new();
    let mut pred_used = vec![false; pred_set.papers.len()];

    for (gp, aligned) in gold_set.papers.iter().zip(&alignment) {
        let mut paper = PaperScore {
            id: gp.id.clone(),
            matched: aligned.map(|(p, _)| pred_set.papers[p].name.clone()),
            matched_by: aligned.map(|(_, by)| by.as_str().to_string()),
            counts: Counts::default(),
            free_text: Counts::default(),
        };
        let paper_line = aligned.and_then(|(p, _)| pred_set.papers[p].exps.first().map(|e| e.line));
        let (paired, pair_rows) = match aligned {
            Some((p, _)) => {
                pred_used[*p] = true;
                let pp = &pred_set.papers[*p];
                let (pairs, used) = align::pair_experiments(schema, gp, pp);
                for (exp, used) in pp.exps.iter().zip(used) {
                    if !used {
                        unscored += count_predicted(schema, &exp.cells);
                    }
                }
                let rows = align::pair_experiment_rows(gp, pp).0;
                (pairs, rows)
            }
            None => (vec![None; gp.rows.len()], vec![None; gp.rows.len()]),
        };
        for ((row, pred_cells), rows) in gp.rows.iter().zip(paired).zip(pair_rows) {
            let pred_lines: Vec<u64> = match (aligned, rows) {
                (Some((p, _)), Some(idx)) => idx
                    .iter()
                    .map(|&e| pred_set.papers[*p].exps[e].line)
                    .collect(),
                _ => Vec::new(),
            };
            for (fi, field) in fields.iter().enumerate() {
                if !field.scored {
                    continue;
                }
                let gold_v = &row.cells[fi];
                let pred_v = pred_cells.as_ref().map(|c| &c[fi]).unwrap_or(&Value::Empty);
                if gold_v.is_empty() {
                    unscored += u64::from(!pred_v.is_empty());
                    continue;
                }
                let verdict = compare_cell(field, gold_v, pred_v);
                if verdict != Verdict::Equal {
                    misses.push(CellMiss {
                        study_id: row.study_id.clone(),
                        field: field.name.clone(),
                        gold: gold_v.render(field),
                        pred: pred_v.render(field),
                    });
                }
                verdicts.push(CellVerdict {
                    study_id: row.study_id.clone(),
                    field: field.name.clone(),
                    gold: gold_v.render(field),
                    pred: pred_v.render(field),
                    verdict,
                    pred_lines: pred_lines.clone(),
                    paper_line,
                });
                let c = cell_counts(verdict);
                field_counts[fi].add(&c);
                if field.is_free_text() {
                    paper.free_text.add(&c);
                } else {
                    paper.counts.add(&c);
                }
            }
        }
        papers.push(paper);
    }
    for (pp, used) in pred_set.papers.iter().zip(&pred_used) {
        if !used {
            unscored += pp
                .exps
                .iter()
                .map(|e| count_predicted(schema, &e.cells))
                .sum::<u64>();
        }
    }
    let outcome = Outcome {
        scorer: Scorer::Strict,
        fields: fields
            .iter()
            .zip(field_counts)
            .filter(|(f, _)| f.scored)
            .map(|(f, counts)| FieldScore {
                name: f.name.clone(),
                counts,
                free_text: f.is_free_text(),
                reads_paper: f.reads_paper,
            })
            .collect(),
        papers,
        unscored_predictions: unscored,
        skipped_gold_rows: gold_set.skipped_rows,
        duplicate_pdf_rows: pred_set.duplicate_rows,
        unmatched_predicted_papers: pred_used.iter().filter(|u| !**u).count(),
        misses,
    };
    Ok((outcome, verdicts))
}

/// The verdict on one scored cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Missing,
    Equal,
    Different,
}

pub fn compare_cell(field: &crate::schema::Field, gold: &Value, pred: &Value) -> Verdict {
    if pred.is_empty() {
        Verdict::Missing
    } else if compare::equal(field, gold, pred) {
        Verdict::Equal
    } else {
        Verdict::Different
    }
}

fn cell_counts(v: Verdict) -> Counts {
    match v {
        Verdict::Missing => Counts {
            fn_: 1,
            ..Counts::default()
        },
        Verdict::Equal => Counts {
            tp: 1,
            ..Counts::default()
        },
        Verdict::Different => Counts {
            fp: 1,
            fn_: 1,
            ..Counts::default()
        },
    }
}

fn count_predicted(schema: &Schema, cells: &[Value]) -> u64 {
    schema
        .fields()
        .iter()
        .zip(cells)
        .filter(|(f, v)| f.scored && !v.is_empty())
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::load(Schema::default_path()).unwrap()
    }

    fn table(csv: &str) -> Table {
        Table::from_bytes("t.csv", csv.as_bytes()).unwrap()
    }

    #[test]
    fn mismatch_is_fp_and_fn_missing_is_fn_and_extra_is_unscored() {
        let s = schema();
        let gold = table("study_id,title,n_total,effector,feedback_type,handedness\nSmith2020,A study of reaching,24,arm,continous,\n");
        let pred = table("study_id,title,n_total,effector,feedback_type,handedness\nSmith2020,A study of reaching,25,hand,,right\n");
        let o = score(&s, &gold, &pred).unwrap();
        let sm = o.summary();
        // effector TP (hand = arm), n_total FP+FN, feedback_type FN, handedness unscored.
        assert_eq!(
            sm.micro,
            Counts {
                tp: 1,
                fp: 1,
                fn_: 2,
                wrong: 0
            }
        );
        assert_eq!(o.unscored_predictions, 1);
        assert_eq!(o.papers[0].matched_by.as_deref(), Some("title"));
        let misses: Vec<(&str, &str, &str)> = o
            .misses
            .iter()
            .map(|m| (m.field.as_str(), m.gold.as_str(), m.pred.as_str()))
            .collect();
        assert_eq!(
            misses,
            [("n_total", "24", "25"), ("feedback_type", "continuous", "")]
        );
    }

    #[test]
    fn experiments_align_by_number_not_position() {
        let s = schema();
        let gold = table("study_id,title,n_total\nLee2019EXP1,T,10\nLee2019EXP2,T,20\n");
        let pred = table("source_file,study_id,authors,year,experiment,n_total\nlee.pdf,,Lee,2019,2,20\nlee.pdf,,Lee,2019,1,10\n");
        let o = score(&s, &gold, &pred).unwrap();
        assert_eq!(o.summary().micro.tp, 2);
        assert_eq!(o.papers[0].matched_by.as_deref(), Some("author+year"));
    }

    #[test]
    fn single_row_gold_is_compared_with_the_merged_paper() {
        let s = schema();
        let gold =
            table("study_id,title,n_total,feedback_type\nPoh2019,T,48,\"endpoint, continous\"\n");
        let pred = table("source_file,authors,year,experiment,n_total,feedback_type\np.pdf,Poh,2019,1,20,endpoint\np.pdf,Poh,2019,2,28,continuous\n");
        let o = score(&s, &gold, &pred).unwrap();
        assert_eq!(o.summary().micro.tp, 2);
    }

    #[test]
    fn file_name_alone_never_aligns_and_unmatched_gold_misses_everything() {
        let s = schema();
        let gold = table("study_id,title,n_total,effector\nLee2019,Motor learning,10,arm\n");
        let pred = table("source_file,n_total,effector\nLee2019.pdf,10,arm\n");
        let o = score(&s, &gold, &pred).unwrap();
        assert_eq!(
            o.summary().micro,
            Counts {
                tp: 0,
                fp: 0,
                fn_: 2,
                wrong: 0
            }
        );
        assert_eq!(o.unscored_predictions, 2);
        assert_eq!(o.unmatched_predicted_papers, 1);
    }

    /// Found by the symmetry property: merging one experiment must not collapse `0, 0`.
    #[test]
    fn single_row_gold_against_itself_keeps_multisets() {
        let s = schema();
        let gold = table("study_id,title,age_mean\nLee2019,T,\"0, 0\"\n");
        assert_eq!(score(&s, &gold, &gold).unwrap().summary().f1, 1.0);
    }

    #[test]
    fn duplicate_pdfs_count_once() {
        let s = schema();
        let gold = table("study_id,title,n_total\nLee2019,T,10\n");
        let pred = table("source_file,sha256,authors,year,n_total\na.pdf,ab12,Lee,2019,10\nb.pdf,AB12,Lee,2019,10\n");
        let o = score(&s, &gold, &pred).unwrap();
        assert_eq!(o.duplicate_pdf_rows, 1);
        assert_eq!(o.summary().micro.tp, 1);
        assert_eq!(o.unscored_predictions, 0);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        const COLS: [&str; 6] = [
            "n_total",
            "feedback_type",
            "perturbation_magnitude",
            "number_of_locations",
            "age_mean",
            "environment",
        ];

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                "[1-9][0-9]{0,2}",
                "[0-9]{1,3}(, [0-9]{1,3}){0,3}",
                "[0-9]{1,3} ?(ms|s|°)",
                "[1-9] targets",
                "(continous|endpoint|tablet|mouse|clamped|arm)(, (continuous|mouse|hand))?",
            ]
        }

        fn csv_table(cells: &[String]) -> Table {
            let mut text = format!("study_id,title,{}\n", COLS.join(","));
            text.push_str("Lee2019,A title,");
            let quoted: Vec<String> = cells.iter().map(|c| format!("\"{c}\"")).collect();
            text.push_str(&quoted.join(","));
            text.push('\n');
            Table::from_bytes("p.csv", text.as_bytes()).unwrap()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// With every cell filled on both sides, swapping gold and prediction swaps FP and
            /// FN, so micro-F1 is symmetric; all scores stay within [0, 1].
            #[test]
            fn full_tables_score_symmetrically_within_unit(
                a in proptest::collection::vec(value(), 6),
                b in proptest::collection::vec(value(), 6),
            ) {
                let s = schema();
                let (ta, tb) = (csv_table(&a), csv_table(&b));
                let ab = score(&s, &ta, &tb).unwrap().summary();
                let ba = score(&s, &tb, &ta).unwrap().summary();
                for x in [ab.precision, ab.recall, ab.f1, ab.macro_f1, ab.ci95.0, ab.ci95.1] {
                    prop_assert!((0.0..=1.0).contains(&x));
                }
                prop_assert!((ab.f1 - ba.f1).abs() < 1e-12, "{} vs {}", ab.f1, ba.f1);
                prop_assert_eq!(ab.micro.tp, ba.micro.tp);
                prop_assert_eq!(score(&s, &ta, &ta).unwrap().summary().f1, 1.0);
            }
        }
    }
}
