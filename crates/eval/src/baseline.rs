//! The constant baseline: every gold row gets the same fixed answer (the schema's `baseline`
//! per field, e.g. `arm`, `visuomotor_rotation`, `45`, `0s`), scored by the same scorer.
//!
//! The baseline is given its identity for free (title, DOI, authors, year and the experiment
//! number are copied from the gold row), so alignment is perfect and only the parameter
//! answers are constant: this is the most generous form of "answering without reading", and
//! a real extractor's score means something only by its distance above it.

use super::align::{parse_exp, split_study_id, ExpId};
use crate::schema::Schema;
use crate::table::{prediction_headers, Table};
use anyhow::Result;

/// Identity columns copied from the gold row.
const COPIED: [&str; 4] = ["title", "authors", "year", "doi_or_url"];

/// A prediction table holding the constant answer for every gold row with a study_id.
pub fn constant_table(schema: &Schema, gold: &Table) -> Result<Table> {
    let headers = prediction_headers(schema);
    let mut out = Table::new("constant-baseline.csv", headers.clone());
    for row in gold.rows() {
        let sid = gold.get(row, "study_id").trim();
        if sid.is_empty() {
            continue;
        }
        let (base, exp) = match split_study_id(sid) {
            Some((_, _, suffix)) => (&sid[..sid.len() - suffix.len()], parse_exp(&suffix)),
            None => (sid, ExpId::Whole),
        };
        let cells = headers
            .iter()
            .map(|h| {
                if COPIED.contains(&h.as_str()) {
                    return gold.get(row, h).to_string();
                }
                match h.as_str() {
                    // A file name in the corpus' `Author - Year - Title.pdf` style, so that the
                    // legacy scorer's file-name rule sees what it saw on real runs.
                    "source_file" => format!("{base} - baseline.pdf"),
                    "experiment" => match &exp {
                        ExpId::Whole => String::new(),
                        ExpId::Num(n) => n.to_string(),
                        ExpId::Label(l) => l.clone(),
                    },
                    _ => schema
                        .field(h)
                        .and_then(|f| f.baseline.clone())
                        .unwrap_or_default(),
                }
            })
            .collect();
        out.push(cells)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gold_row_gets_the_same_answers() {
        let s = Schema::load(Schema::default_path()).unwrap();
        let gold = Table::from_bytes(
            "g.csv",
            b"study_id,title,n_total,effector\nA2019EXP2,T,5,leg\n,skipped,,\n",
        )
        .unwrap();
        let t = constant_table(&s, &gold).unwrap();
        assert_eq!(t.rows().len(), 1);
        let r = &t.rows()[0];
        assert_eq!(t.get(r, "effector"), "arm");
        assert_eq!(t.get(r, "feedback_delay"), "0s");
        assert_eq!(t.get(r, "n_total"), "");
        assert_eq!(t.get(r, "experiment"), "2");
        assert_eq!(t.get(r, "title"), "T");
        assert_eq!(t.get(r, "source_file"), "A2019 - baseline.pdf");
    }
}
