//! Presenting a scored result: a terminal table, JSON, and a self-contained HTML page with an
//! inline SVG bar chart of per-field F1 (no scripts, no external files: it opens anywhere).
//!
//! Every presentation carries the honesty checks next to the score: the constant baseline
//! scored by the same scorer, and the gold table scored against itself (strict).

use super::{Counts, Outcome, Scorer, Summary, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED};
use serde::Serialize;
use std::fmt::Write as _;

/// One scorer's outcome with its summary.
#[derive(Debug, Clone, Serialize)]
pub struct Scored {
    pub summary: Summary,
    pub outcome: Outcome,
}

impl Scored {
    pub fn new(outcome: Outcome) -> Scored {
        Scored {
            summary: outcome.summary(),
            outcome,
        }
    }
}

/// Everything `paramx eval` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scorer: Scorer,
    pub gold: String,
    pub pred: String,
    pub schema: String,
    pub bootstrap: BootstrapInfo,
    pub result: Scored,
    /// The constant answer, scored by the same scorer.
    pub constant_baseline: Scored,
    /// Gold scored against itself with the strict scorer (must be 1.000).
    pub gold_vs_itself_strict: Scored,
    /// Gold against itself with the chosen scorer, when that is not the strict one.
    pub gold_vs_itself: Option<Scored>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BootstrapInfo {
    pub resamples: usize,
    pub seed: u64,
}

impl Default for BootstrapInfo {
    fn default() -> Self {
        BootstrapInfo {
            resamples: BOOTSTRAP_RESAMPLES,
            seed: BOOTSTRAP_SEED,
        }
    }
}

fn prf(c: &Counts) -> String {
    format!(
        "P {:.3}  R {:.3}  F1 {:.3}",
        c.precision(),
        c.recall(),
        c.f1()
    )
}

impl Report {
    /// The terminal table.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let r = &self.result;
        let sm = &r.summary;
        let o = &r.outcome;
        let _ = writeln!(s, "paramx eval  (scorer: {})", self.scorer);
        let _ = writeln!(
            s,
            "gold: {}  ({} rows with an empty study_id skipped)",
            self.gold, o.skipped_gold_rows
        );
        let _ = writeln!(
            s,
            "pred: {}  ({} predicted papers matched no gold paper, {} duplicate-PDF rows dropped)",
            self.pred, o.unmatched_predicted_papers, o.duplicate_pdf_rows
        );
        let _ = writeln!(s, "schema: {}", self.schema);
        let _ = writeln!(s);
        let c = &sm.micro;
        let _ = writeln!(
            s,
            "micro (headline)   {}   TP {} FP {} FN {} wrong {}",
            prf(c),
            c.tp,
            c.fp,
            c.fn_,
            c.wrong
        );
        let _ = writeln!(s, "macro F1           {:.3}", sm.macro_f1);
        let _ = writeln!(
            s,
            "bootstrap 95% CI   [{:.3}, {:.3}]  ({} resamples over papers, seed {:#x})",
            sm.ci95.0, sm.ci95.1, self.bootstrap.resamples, self.bootstrap.seed
        );
        let _ = writeln!(
            s,
            "reads the paper    {}   ({})",
            prf(&sm.reads_paper),
            sm.reads_paper_fields.join(", ")
        );
        if self.scorer == Scorer::Strict {
            let _ = writeln!(
                s,
                "free text          {}   (not in the headline)",
                prf(&sm.free_text)
            );
        }
        let _ = writeln!(
            s,
            "unscored predictions (gold empty or no gold row): {}",
            o.unscored_predictions
        );
        let _ = writeln!(s);
        let b = &self.constant_baseline.summary;
        let _ = writeln!(s, "honesty checks");
        let _ = writeln!(
            s,
            "  constant baseline  {}  95% CI [{:.3}, {:.3}]   reads-the-paper F1 {:.3}   (distance above it: {:+.3})",
            prf(&b.micro),
            b.ci95.0,
            b.ci95.1,
            b.reads_paper_f1,
            sm.f1 - b.f1
        );
        let g = &self.gold_vs_itself_strict.summary;
        let _ = writeln!(
            s,
            "  gold vs itself     F1 {:.3} (strict){}",
            g.f1,
            if g.f1 == 1.0 {
                ""
            } else {
                "  <-- MUST be 1.000"
            }
        );
        if let Some(gl) = &self.gold_vs_itself {
            let _ = writeln!(
                s,
                "  gold vs itself     F1 {:.3} ({})",
                gl.summary.f1, self.scorer
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<24} {:>6} {:>6} {:>6} {:>5} {:>5} {:>5} {:>5}  baseline F1",
            "field", "P", "R", "F1", "TP", "FP", "FN", "wrong"
        );
        for f in &o.fields {
            let c = &f.counts;
            let base = self
                .constant_baseline
                .outcome
                .fields
                .iter()
                .find(|b| b.name == f.name)
                .map(|b| b.counts.f1());
            let tag = match (f.free_text, f.reads_paper) {
                (true, _) => " (free text)",
                (_, true) => " *",
                _ => "",
            };
            if !c.has_gold() && c.fp == 0 {
                let _ = writeln!(
                    s,
                    "{:<24} {:>6} {:>6} {:>6}  (no gold values){}",
                    f.name, "-", "-", "-", tag
                );
                continue;
            }
            let _ = writeln!(
                s,
                "{:<24} {:>6.3} {:>6.3} {:>6.3} {:>5} {:>5} {:>5} {:>5}  {}{}",
                f.name,
                c.precision(),
                c.recall(),
                c.f1(),
                c.tp,
                c.fp,
                c.fn_,
                c.wrong,
                base.map(|b| format!("{b:.3}"))
                    .unwrap_or_else(|| "-".into()),
                tag
            );
        }
        let _ = writeln!(s, "(* = reads-the-paper field)");
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<18} {:>6} {:>6} {:>6} {:>4} {:>4} {:>4}  matched",
            "paper", "P", "R", "F1", "TP", "FP", "FN"
        );
        for p in &o.papers {
            let c = &p.counts;
            if !c.has_gold() && c.fp == 0 {
                let _ = writeln!(
                    s,
                    "{:<18} {:>6} {:>6} {:>6}  (no scored gold cells)",
                    p.id, "-", "-", "-"
                );
                continue;
            }
            let _ = writeln!(
                s,
                "{:<18} {:>6.3} {:>6.3} {:>6.3} {:>4} {:>4} {:>4}  {}",
                p.id,
                c.precision(),
                c.recall(),
                c.f1(),
                c.tp,
                c.fp + c.wrong,
                c.fn_,
                match (&p.matched, &p.matched_by) {
                    (Some(m), Some(by)) => format!("{m} (by {by})"),
                    _ => "- (no prediction)".into(),
                }
            );
        }
        s
    }

    /// Every scored cell that was not a TP: `study_id  field  gold  |  predicted`.
    pub fn misses_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} scored cells missed or wrong:",
            self.result.outcome.misses.len()
        );
        for m in &self.result.outcome.misses {
            let pred = if m.pred.is_empty() {
                "(nothing predicted)"
            } else {
                m.pred.as_str()
            };
            let _ = writeln!(
                s,
                "  {:<18} {:<24} gold: {}  |  pred: {}",
                m.study_id, m.field, m.gold, pred
            );
        }
        s
    }

    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// A self-contained HTML page.
    pub fn to_html(&self) -> String {
        let sm = &self.result.summary;
        let b = &self.constant_baseline.summary;
        let g = &self.gold_vs_itself_strict.summary;
        let mut h = String::new();
        let _ = writeln!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>paramx eval ({})</title>\n<style>\
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1000px;color:#222}}\
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
td:first-child,th:first-child{{text-align:left}}.big{{font-size:1.4em}}.warn{{color:#b00}}\
</style></head><body>\n<h1>paramx eval &mdash; {} scorer</h1>",
            self.scorer, self.scorer
        );
        let _ = writeln!(
            h,
            "<p>gold: <code>{}</code> ({} rows with empty study_id skipped)<br>predictions: <code>{}</code><br>schema: <code>{}</code></p>",
            esc(&self.gold),
            self.result.outcome.skipped_gold_rows,
            esc(&self.pred),
            esc(&self.schema)
        );
        let _ = writeln!(
            h,
            "<p class=\"big\">micro F1 <b>{:.3}</b> (P {:.3}, R {:.3}), 95% bootstrap interval [{:.3}, {:.3}]; macro F1 {:.3}</p>",
            sm.f1, sm.precision, sm.recall, sm.ci95.0, sm.ci95.1, sm.macro_f1
        );
        let _ = writeln!(
            h,
            "<table><tr><th>check</th><th>P</th><th>R</th><th>F1</th></tr>\
<tr><td>this result</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>\
<tr><td>constant baseline (same answer for every paper)</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>\
<tr><td>gold vs itself (strict)</td><td>{:.3}</td><td>{:.3}</td><td{}>{:.3}</td></tr>\
<tr><td>reads-the-paper fields ({})</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>\
<tr><td>free text (not in headline)</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr></table>",
            sm.precision,
            sm.recall,
            sm.f1,
            b.precision,
            b.recall,
            b.f1,
            g.precision,
            g.recall,
            if g.f1 == 1.0 { "" } else { " class=\"warn\"" },
            g.f1,
            esc(&sm.reads_paper_fields.join(", ")),
            sm.reads_paper.precision(),
            sm.reads_paper.recall(),
            sm.reads_paper_f1,
            sm.free_text.precision(),
            sm.free_text.recall(),
            sm.free_text_f1,
        );
        let _ = writeln!(
            h,
            "<p>{} unscored predictions (gold empty or no gold row); {} predicted papers matched no gold paper.</p>",
            self.result.outcome.unscored_predictions, self.result.outcome.unmatched_predicted_papers
        );
        h.push_str("<h2>F1 per field</h2>\n");
        h.push_str(&self.svg_chart());
        h.push_str("<h2>Per field</h2>\n<table><tr><th>field</th><th>P</th><th>R</th><th>F1</th><th>TP</th><th>FP</th><th>FN</th><th>wrong</th><th>baseline F1</th></tr>\n");
        for f in &self.result.outcome.fields {
            let c = &f.counts;
            let base = self
                .baseline_f1(&f.name)
                .map(|x| format!("{x:.3}"))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                h,
                "<tr><td>{}{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&f.name),
                if f.free_text { " (free text)" } else if f.reads_paper { " *" } else { "" },
                c.precision(),
                c.recall(),
                c.f1(),
                c.tp,
                c.fp,
                c.fn_,
                c.wrong,
                base
            );
        }
        h.push_str("</table><p>* reads-the-paper field</p>\n<h2>Per paper</h2>\n<table><tr><th>paper</th><th>P</th><th>R</th><th>F1</th><th>TP</th><th>FP+wrong</th><th>FN</th><th>matched with</th></tr>\n");
        for p in &self.result.outcome.papers {
            let c = &p.counts;
            let m = match (&p.matched, &p.matched_by) {
                (Some(m), Some(by)) => format!("{} (by {})", esc(m), esc(by)),
                _ => "&mdash;".into(),
            };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
                esc(&p.id),
                c.precision(),
                c.recall(),
                c.f1(),
                c.tp,
                c.fp + c.wrong,
                c.fn_,
                m
            );
        }
        h.push_str("</table>\n<h2>Cells missed or wrong</h2>\n<table><tr><th>row</th><th>field</th><th>gold (as read)</th><th>prediction (as read)</th></tr>\n");
        for m in &self.result.outcome.misses {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td><td style=\"text-align:left\">{}</td></tr>",
                esc(&m.study_id),
                esc(&m.field),
                esc(&m.gold),
                if m.pred.is_empty() { "<i>nothing predicted</i>".to_string() } else { esc(&m.pred) }
            );
        }
        h.push_str("</table>\n</body></html>\n");
        h
    }

    fn baseline_f1(&self, field: &str) -> Option<f64> {
        self.constant_baseline
            .outcome
            .fields
            .iter()
            .find(|b| b.name == field)
            .map(|b| b.counts.f1())
    }

    /// Horizontal bars: this result's F1 per field (blue) with the constant baseline's F1 (grey)
    /// underneath, fields without gold values left out.
    pub fn svg_chart(&self) -> String {
        let fields: Vec<_> = self
            .result
            .outcome
            .fields
            .iter()
            .filter(|f| f.counts.has_gold())
            .collect();
        let (label_w, bar_w, row_h, top) = (190.0, 500.0, 26.0, 24.0);
        let height = top + row_h * fields.len() as f64 + 30.0;
        let width = label_w + bar_w + 70.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"F1 per field\" font-family=\"sans-serif\" font-size=\"12\">\n"
        );
        let _ = write!(
            s,
            "<rect x=\"{label_w}\" y=\"4\" width=\"12\" height=\"10\" fill=\"#3b6fb6\"/><text x=\"{}\" y=\"13\">F1</text>\
<rect x=\"{}\" y=\"4\" width=\"12\" height=\"10\" fill=\"#bbb\"/><text x=\"{}\" y=\"13\">constant baseline F1</text>",
            label_w + 16.0,
            label_w + 50.0,
            label_w + 66.0
        );
        for tick in 0..=4 {
            let x = label_w + bar_w * tick as f64 / 4.0;
            let _ = writeln!(
                s,
                "<line x1=\"{x}\" y1=\"{top}\" x2=\"{x}\" y2=\"{}\" stroke=\"#ddd\"/><text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{:.2}</text>",
                height - 24.0,
                height - 10.0,
                tick as f64 / 4.0
            );
        }
        for (i, f) in fields.iter().enumerate() {
            let y = top + row_h * i as f64;
            let f1 = f.counts.f1();
            let base = self.baseline_f1(&f.name).unwrap_or(0.0);
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
<rect x=\"{label_w}\" y=\"{}\" width=\"{:.1}\" height=\"12\" fill=\"#3b6fb6\"><title>{}: F1 {:.3}</title></rect>\
<rect x=\"{label_w}\" y=\"{}\" width=\"{:.1}\" height=\"6\" fill=\"#bbb\"><title>baseline {:.3}</title></rect>\
<text x=\"{}\" y=\"{}\">{:.3}</text>",
                label_w - 6.0,
                y + 13.0,
                esc(&f.name),
                y + 2.0,
                bar_w * f1,
                esc(&f.name),
                f1,
                y + 15.0,
                bar_w * base,
                base,
                label_w + bar_w * f1.max(base) + 4.0,
                y + 13.0,
                f1
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FieldScore, PaperScore};

    fn outcome(tp: u64) -> Outcome {
        Outcome {
            scorer: Scorer::Strict,
            fields: vec![FieldScore {
                name: "n_<total>".into(),
                counts: Counts {
                    tp,
                    fp: 1,
                    fn_: 1,
                    wrong: 0,
                },
                free_text: false,
                reads_paper: true,
            }],
            papers: vec![PaperScore {
                id: "A2019".into(),
                matched: Some("a.pdf".into()),
                matched_by: Some("doi".into()),
                counts: Counts {
                    tp,
                    fp: 1,
                    fn_: 1,
                    wrong: 0,
                },
                free_text: Counts::default(),
            }],
            unscored_predictions: 0,
            skipped_gold_rows: 2,
            duplicate_pdf_rows: 0,
            unmatched_predicted_papers: 0,
            misses: vec![crate::CellMiss {
                study_id: "A2019".into(),
                field: "n_<total>".into(),
                gold: "8".into(),
                pred: "180".into(),
            }],
        }
    }

    fn report() -> Report {
        Report {
            scorer: Scorer::Strict,
            gold: "g.csv".into(),
            pred: "p.csv".into(),
            schema: "s.toml".into(),
            bootstrap: BootstrapInfo::default(),
            result: Scored::new(outcome(3)),
            constant_baseline: Scored::new(outcome(1)),
            gold_vs_itself_strict: Scored::new(Outcome {
                fields: vec![FieldScore {
                    name: "n_<total>".into(),
                    counts: Counts {
                        tp: 5,
                        ..Counts::default()
                    },
                    free_text: false,
                    reads_paper: true,
                }],
                ..outcome(5)
            }),
            gold_vs_itself: None,
        }
    }

    #[test]
    fn text_shows_score_baseline_self_check_and_interval() {
        let t = report().to_text();
        assert!(
            t.contains("micro (headline)   P 0.750  R 0.750  F1 0.750"),
            "{t}"
        );
        assert!(
            t.contains("constant baseline  P 0.500  R 0.500  F1 0.500"),
            "{t}"
        );
        assert!(t.contains("gold vs itself     F1 1.000 (strict)"), "{t}");
        assert!(t.contains("bootstrap 95% CI"), "{t}");
        assert!(t.contains("reads the paper"), "{t}");
        assert!(t.contains("2 rows with an empty study_id skipped"), "{t}");
    }

    #[test]
    fn html_is_self_contained_with_an_escaped_svg_chart() {
        let h = report().to_html();
        assert!(h.starts_with("<!DOCTYPE html>"));
        assert!(h.contains("<svg") && h.contains("</svg>"));
        assert!(h.contains("n_&lt;total&gt;"));
        assert!(!h.contains("n_<total>"));
        assert!(!h.contains("<script") && !h.contains("src=") && !h.contains("href="));
        assert!(
            h.contains("<td>8</td>") || h.contains(">8</td><td style=\"text-align:left\">180<"),
            "{h}"
        );
        let t = report().misses_text();
        assert!(t.contains("gold: 8  |  pred: 180"), "{t}");
    }

    #[test]
    fn json_round_trips_through_serde_json() {
        let j = report().to_json().unwrap();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["result"]["summary"]["micro"]["tp"], 3);
        assert_eq!(v["result"]["summary"]["micro"]["fn"], 1);
        assert_eq!(v["scorer"], "strict");
    }
}
