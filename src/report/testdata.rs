//! Records and paper texts that exercise every part of the review page: experiments with
//! shared and own quotes, an inherited value, a dropped value, a failed paper, two papers with
//! one surname and year, a value without a page, and text written to break the page (markup,
//! a script end tag, quotes). Built as JSON so that the unit tests and `tests/it/report_browser.rs`
//! share it: `R` is `PaperRecord`, `D` `Document`.

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

pub const HOSTILE: &str =
    "</script><img src=x onerror=\"window.pwned=1\"><b id=\"pwned\">&amp;</b>";

/// The text of the two-experiment paper: (sha256, text).
pub fn paper_text() -> String {
    format!(
        "Adaptation of reaching\nA. Smith, B. Jones\n\nMethods. Twenty-four right-handed participants (N = 24) took part. They reached to 8 targets with the arm.\n\nExperiment 1. A 45° visuomotor rotation was introduced abruptly. Feedback was continuous.\n\nExperiment 2. A 30° rotation was introduced gradually. A note: {HOSTILE} ends here.\n"
    )
}

fn value(text: &str, quote: &str, value: &str, page: Option<usize>, inherited: bool) -> Value {
    let start = text.find(quote).expect("quote in text");
    json!({
        "raw": value, "value": value, "quote": quote,
        "span": {"start": start, "end": start + quote.len()},
        "page": page, "inherited": inherited
    })
}

#[allow(clippy::too_many_arguments)]
fn ok(
    file: &str,
    sha: &str,
    authors: &[&str],
    year: u32,
    title: &str,
    doi: Option<&str>,
    experiments: Vec<Value>,
    dropped: Vec<Value>,
) -> Value {
    json!({
        "key": {"sha256": sha, "job_hash": "job1"},
        "source_file": file, "doi": doi, "title": title, "authors": authors, "year": year,
        "pages": 3,
        "outcome": {"status": "ok", "experiments": experiments, "dropped": dropped,
            "completeness": "complete", "finish": "constraint", "prompt_tokens": 100,
            "generated_tokens": 20, "prompt_pieces": []},
        "timing": null
    })
}

/// Three records: `smith.pdf` (two experiments), `broken.pdf` (failed), `smith-b.pdf` (one
/// experiment; same surname and year as the first).
pub fn records<R: DeserializeOwned>() -> Vec<R> {
    let t = paper_text();
    let n = "Twenty-four right-handed participants (N = 24) took part.";
    let r45 = "A 45° visuomotor rotation was introduced abruptly.";
    let r30 = "A 30° rotation was introduced gradually.";
    let hostile_q = format!("A note: {HOSTILE} ends here.");
    let smith = ok(
        "smith.pdf",
        "aa11",
        &["Smith", "Jones"],
        2020,
        &format!("Adaptation <i>of</i> reaching {HOSTILE}"),
        Some("10.1000/xyz"),
        vec![
            json!({"experiment": 1, "label": null, "values": {
                "n_total": value(&t, n, "24", Some(1), true),
                "perturbation_magnitude": value(&t, r45, "45°", Some(2), false),
                "perturbation_schedule": value(&t, r45, "abrupt", Some(2), false),
            }}),
            json!({"experiment": 2, "label": null, "values": {
                "n_total": value(&t, n, "24", Some(1), true),
                "perturbation_magnitude": value(&t, r30, "30°", Some(3), false),
                "perturbation_schedule": value(&t, r30, "gradual", Some(3), false),
                "population_type": value(&t, &hostile_q, HOSTILE, Some(3), false),
            }}),
        ],
        vec![
            json!({"experiment": 2, "field": "effector", "value": "leg", "quote": r30,
            "reason": "unsupported", "detail": "the quote does not name `leg`"}),
        ],
    );
    let broken = json!({
        "key": {"sha256": "bb22", "job_hash": "job1"},
        "source_file": "broken.pdf", "doi": null, "title": null, "pages": 0,
        "outcome": {"status": "error", "stage": "text", "message": format!("not a PDF {HOSTILE}")},
        "timing": null
    });
    let t2 = "Participants: 12 adults took part.";
    let smith_b = ok(
        "smith-b.pdf",
        "cc33",
        &["Smith"],
        2020,
        "Another study",
        None,
        vec![json!({"experiment": 1, "label": null, "values": {
            "n_total": {"raw": "12", "value": "12", "quote": t2,
                "span": {"start": 14, "end": 16}, "page": null, "inherited": false},
        }})],
        vec![],
    );
    [smith, broken, smith_b]
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("a record"))
        .collect()
}

/// The text-cache document of `smith.pdf` (so that its quotes show in their paragraphs).
pub fn document<D: DeserializeOwned>() -> D {
    let t = paper_text();
    serde_json::from_value(json!({
        "path": "smith.pdf", "sha256": "aa11",
        "pages": [{"number": 1, "start": 0, "end": t.len()}],
        "text": t, "sections": [], "doi": "10.1000/xyz", "title": "Adaptation of reaching",
        "authors": ["Smith", "Jones"], "year": 2020, "page_errors": []
    }))
    .expect("a document")
}

/// A gold table for these records, in the gold's layout: Smith2020EXP1 with n_total 24 (TP)
/// and perturbation_magnitude 40° (FP); Smith2020EXP3, which no experiment has (FN); and
/// Jones1999, a paper the run never saw.
pub fn gold_csv() -> String {
    "study_id,title,authors,year,doi_or_url,n_total,perturbation_magnitude,perturbation_schedule\n\
     Smith2020EXP1,Adaptation of reaching,Smith,2020,10.1000/xyz,24,40°,abrupt\n\
     Smith2020EXP2,Adaptation of reaching,Smith,2020,10.1000/xyz,24,30°,\n\
     Smith2020EXP3,Adaptation of reaching,Smith,2020,10.1000/xyz,30,,\n\
     Jones1999,Something else,Jones,1999,,10,,\n"
        .to_string()
}
