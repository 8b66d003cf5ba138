//! The legacy scorer: the reference project's validator rules, rewritten from the contract's
//! description (`docs/evaluation.md`, "The legacy scorer") so that a figure can stand beside
//! its published F1 0.201. It is deliberately lenient; do not use it as the headline.
//!
//! Rules reproduced:
//! - Gold entries keyed by study_id (empty ids skipped; a repeated id keeps the last row).
//! - Predicted ids from the file name: `^([A-Za-z]+).*?(\d{4})` -> `Name2019`, else the first
//!   word; `_EXPi` appended by list position when a file has several rows.
//! - Matching: by cleaned `doi_or_url` (the last prediction carrying that DOI), else the first
//!   predicted id that contains the gold id's author (case-insensitive) and year — so every
//!   `...EXPn` of a paper meets the same predicted experiment. Unmatched gold rows are ignored.
//! - A value matches on: exact, same vocabulary term (the schema's synonyms), equality after
//!   stripping punctuation, two-way substring, a known typo pair, >= 60% of the gold's content
//!   words, comma-set overlap >= half the smaller set, one number each within 5%, or equal
//!   first numbers, or a unit/direction abbreviation against its long form.
//! - A predicted column that is not a gold column is a false positive (when non-empty; the
//!   pipeline's own bookkeeping columns are not parameters); a mismatch is "wrong".
//! - P = TP/(TP+FP+wrong), R = TP/(TP+FN). Free text is scored like everything else.

use super::{CellMiss, Counts, FieldScore, Outcome, PaperScore, Scorer};
use crate::schema::Schema;
use crate::table::{Table, PIPELINE_COLUMNS};
use anyhow::Result;
use std::collections::{BTreeSet, HashMap};

/// Columns the reference validator never scores.
const METADATA: [&str; 8] = [
    "study_id",
    "title",
    "authors",
    "year",
    "notes",
    "doi_or_url",
    "lab",
    "dataset_link",
];
/// Gold values it treats as "not annotated".
const EMPTY: [&str; 5] = ["", "null", "none", "n/a", "?"];
/// Its stop words for the content-word rule.
const STOP: [&str; 13] = [
    "the", "a", "an", "and", "or", "but", "in", "on", "at", "to", "for", "of", "with",
];
/// Its typo pairs (correct, typo), matched as substrings.
const TYPOS: [(&str, &str); 4] = [
    ("horizontal", "horiztonal"),
    ("continuous", "continous"),
    ("endpoint", "end-point"),
    ("endpoint", "end point"),
];
/// Its abbreviation pairs (short, long).
const ABBREV: [(&str, &str); 6] = [
    ("ccw", "counterclockwise"),
    ("cw", "clockwise"),
    ("deg", "degrees"),
    ("s", "seconds"),
    ("ms", "milliseconds"),
    ("vmr", "visuomotor rotation"),
];

/// The reference's paper id from a file name.
pub fn id_from_file_name(name: &str) -> String {
    let base = name.replace(".pdf", "");
    let letters: String = base
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    if !letters.is_empty() {
        let b = base.as_bytes();
        let year = (letters.len()..b.len().saturating_sub(3))
            .find(|&i| b[i..i + 4].iter().all(u8::is_ascii_digit));
        if let Some(i) = year {
            return format!("{letters}{}", &base[i..i + 4]);
        }
    }
    base.split_whitespace().next().unwrap_or("").to_string()
}

/// The reference's DOI cleaning (prefixes removed, nothing else).
fn clean_doi(s: &str) -> String {
    s.replace("https://", "")
        .replace("http://", "")
        .replace("dx.doi.org/", "")
        .replace("doi.org/", "")
        .replace("DOI ", "")
        .trim()
        .to_string()
}

fn norm_text(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if matches!(c, '-' | '_' | '/' | '°' | '(' | ')' | '[' | ']') || c.is_whitespace() {
                ' '
            } else {
                c
            }
        })
        .collect();
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn words(s: &str) -> BTreeSet<String> {
    s.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

/// Numbers as the reference finds them (`[-+]?\d*\.?\d+`), as text.
fn numbers(s: &str) -> Vec<String> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let start = i;
        let mut j = i;
        if c[j] == '-' || c[j] == '+' {
            j += 1;
        }
        let int_start = j;
        while j < c.len() && c[j].is_ascii_digit() {
            j += 1;
        }
        let mut end = None;
        if j < c.len() && c[j] == '.' && c.get(j + 1).is_some_and(|d| d.is_ascii_digit()) {
            let mut k = j + 1;
            while k < c.len() && c[k].is_ascii_digit() {
                k += 1;
            }
            end = Some(k);
        } else if j > int_start {
            end = Some(j);
        }
        match end {
            Some(e) => {
                out.push(c[start..e].iter().collect());
                i = e;
            }
            None => i = start + 1,
        }
    }
    out
}

/// The reference's lenient value match.
pub fn lenient_match(schema: &Schema, field: &str, gold: &str, pred: &str) -> bool {
    let (g, a) = (gold.trim().to_lowercase(), pred.trim().to_lowercase());
    if g == a {
        return true;
    }
    if let Some(f) = schema.field(field) {
        if let (Some(x), Some(y)) = (f.lookup_term(&g), f.lookup_term(&a)) {
            if x == y {
                return true;
            }
        }
    }
    let (gn, an) = (norm_text(&g), norm_text(&a));
    if gn == an {
        return true;
    }
    if g.contains(&a) || a.contains(&g) || gn.contains(&an) || an.contains(&gn) {
        return true;
    }
    if TYPOS.iter().any(|(ok, typo)| {
        (gn.contains(ok) && an.contains(typo)) || (gn.contains(typo) && an.contains(ok))
    }) {
        return true;
    }
    let stop: BTreeSet<String> = STOP.iter().map(|s| s.to_string()).collect();
    let gw: BTreeSet<String> = words(&gn).difference(&stop).cloned().collect();
    let aw: BTreeSet<String> = words(&an).difference(&stop).cloned().collect();
    if gw.len() >= 2 && gw.intersection(&aw).count() as f64 >= gw.len() as f64 * 0.6 {
        return true;
    }
    if g.contains(',') || a.contains(',') {
        let gs: BTreeSet<&str> = g.split(',').map(str::trim).collect();
        let as_: BTreeSet<&str> = a.split(',').map(str::trim).collect();
        let overlap = gs.intersection(&as_).count();
        if overlap > 0 && overlap as f64 >= gs.len().min(as_.len()) as f64 * 0.5 {
            return true;
        }
    }
    let (gnum, anum) = (numbers(&g), numbers(&a));
    if !gnum.is_empty() && !anum.is_empty() {
        if gnum.len() == 1 && anum.len() == 1 {
            if let (Ok(x), Ok(y)) = (gnum[0].parse::<f64>(), anum[0].parse::<f64>()) {
                if (x - y).abs() / x.abs().max(0.001) < 0.05 {
                    return true;
                }
            }
        } else if gnum[0] == anum[0] {
            return true;
        }
    }
    ABBREV
        .iter()
        .any(|(s, l)| (gw.contains(*s) && an.contains(l)) || (aw.contains(*s) && gn.contains(l)))
}

/// Score `pred` against `gold` with the reference rules.
pub fn score(schema: &Schema, gold: &Table, pred: &Table) -> Result<Outcome> {
    gold.require("study_id")?;
    // Gold entries, keyed by study_id, last row wins, first position kept.
    let mut gold_ids: Vec<String> = Vec::new();
    let mut gold_rows: HashMap<String, &crate::table::Row> = HashMap::new();
    let mut skipped = 0;
    for row in gold.rows() {
        let sid = gold.get(row, "study_id").trim().to_string();
        if sid.is_empty() {
            skipped += 1;
            continue;
        }
        if gold_rows.insert(sid.clone(), row).is_none() {
            gold_ids.push(sid);
        }
    }
    // Predicted entries: grouped by file, `_EXPi` by position.
    let paper_of = |r: &crate::table::Row| {
        let f = pred.get(r, "source_file").trim();
        if f.is_empty() {
            pred.get(r, "study_id").trim().to_string()
        } else {
            f.to_string()
        }
    };
    let mut files: Vec<(String, Vec<&crate::table::Row>)> = Vec::new();
    for r in pred.rows() {
        let p = paper_of(r);
        match files.iter_mut().find(|(f, _)| *f == p) {
            Some((_, rows)) => rows.push(r),
            None => files.push((p, vec![r])),
        }
    }
    let mut auto_ids: Vec<String> = Vec::new();
    let mut auto: HashMap<String, &crate::table::Row> = HashMap::new();
    let mut by_doi: HashMap<String, String> = HashMap::new();
    for (file, rows) in &files {
        let base = id_from_file_name(file);
        for (i, r) in rows.iter().enumerate() {
            let id = if rows.len() > 1 {
                format!("{base}_EXP{}", i + 1)
            } else {
                base.clone()
            };
            if auto.insert(id.clone(), r).is_none() {
                auto_ids.push(id.clone());
            }
            let doi = [pred.get(r, "doi_or_url"), pred.get(r, "doi")]
                .into_iter()
                .find(|d| !d.trim().is_empty())
                .map(clean_doi);
            if let Some(d) = doi.filter(|d| !d.is_empty()) {
                by_doi.insert(d, id);
            }
        }
    }
    let gold_cols: BTreeSet<&str> = gold.headers().iter().map(String::as_str).collect();
    let extra_cols: Vec<&str> = pred
        .headers()
        .iter()
        .map(String::as_str)
        .filter(|h| {
            !gold_cols.contains(h) && !METADATA.contains(h) && !PIPELINE_COLUMNS.contains(h)
        })
        .collect();
    let scored_cols: Vec<&str> = gold
        .headers()
        .iter()
        .map(String::as_str)
        .filter(|h| !METADATA.contains(h))
        .collect();

    let mut field_counts: Vec<(String, Counts)> = scored_cols
        .iter()
        .map(|c| (c.to_string(), Counts::default()))
        .collect();
    field_counts.extend(
        extra_cols
            .iter()
            .map(|c| (c.to_string(), Counts::default())),
    );
    let mut papers = Vec::new();
    let mut unscored = 0u64;
    let mut misses = Vec::new();
    let mut matched_auto: BTreeSet<String> = BTreeSet::new();
    for gid in &gold_ids {
        let grow = gold_rows[gid];
        let gdoi = clean_doi(gold.get(grow, "doi_or_url"));
        let (matched, by) = if let Some(aid) = by_doi.get(&gdoi).filter(|_| !gdoi.is_empty()) {
            (Some(aid.clone()), "doi")
        } else {
            let letters: String = gid
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            let year: String = gid[letters.len()..].chars().take(4).collect();
            let ok =
                !letters.is_empty() && year.len() == 4 && year.bytes().all(|b| b.is_ascii_digit());
            let found = ok
                .then(|| {
                    auto_ids.iter().find(|a| {
                        a.to_lowercase().contains(&letters.to_lowercase()) && a.contains(&year)
                    })
                })
                .flatten();
            (found.cloned(), "author+year in file-name id")
        };
        let mut paper = PaperScore {
            id: gid.clone(),
            matched: matched.clone(),
            matched_by: matched.as_ref().map(|_| by.to_string()),
            counts: Counts::default(),
            free_text: Counts::default(),
        };
        if let Some(aid) = matched {
            matched_auto.insert(aid.clone());
            let arow = auto[&aid];
            for (fi, col) in scored_cols.iter().enumerate() {
                if *col == "lab" {
                    continue;
                }
                let gv = gold.get(grow, col).trim();
                let av = pred.get(arow, col).trim();
                if EMPTY.contains(&gv.to_lowercase().as_str()) {
                    unscored += u64::from(!av.is_empty());
                    continue;
                }
                let (tp, c) = if av.is_empty() {
                    (
                        false,
                        Counts {
                            fn_: 1,
                            ..Counts::default()
                        },
                    )
                } else if lenient_match(schema, col, gv, av) {
                    (
                        true,
                        Counts {
                            tp: 1,
                            ..Counts::default()
                        },
                    )
                } else {
                    (
                        false,
                        Counts {
                            wrong: 1,
                            ..Counts::default()
                        },
                    )
                };
                if !tp {
                    misses.push(CellMiss {
                        study_id: gid.clone(),
                        field: col.to_string(),
                        gold: gv.to_string(),
                        pred: av.to_string(),
                    });
                }
                field_counts[fi].1.add(&c);
                paper.counts.add(&c);
            }
            for (k, col) in extra_cols.iter().enumerate() {
                if !pred.get(arow, col).trim().is_empty() {
                    let c = Counts {
                        fp: 1,
                        ..Counts::default()
                    };
                    field_counts[scored_cols.len() + k].1.add(&c);
                    paper.counts.add(&c);
                }
            }
        }
        papers.push(paper);
    }
    Ok(Outcome {
        scorer: Scorer::Legacy,
        fields: field_counts
            .into_iter()
            .map(|(name, counts)| FieldScore {
                reads_paper: schema.field(&name).is_some_and(|f| f.reads_paper),
                name,
                counts,
                free_text: false,
            })
            .collect(),
        papers,
        unscored_predictions: unscored,
        skipped_gold_rows: skipped,
        duplicate_pdf_rows: 0,
        unmatched_predicted_papers: auto_ids
            .iter()
            .filter(|a| !matched_auto.contains(*a))
            .count(),
        misses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::load(Schema::default_path()).unwrap()
    }

    #[test]
    fn file_name_ids_follow_the_reference_regex() {
        assert_eq!(
            id_from_file_name("Butcher and Taylor - 2018 - Decomposition.pdf"),
            "Butcher2018"
        );
        assert_eq!(
            id_from_file_name("Wong et al. - Can patients with cerebellar disease.pdf"),
            "Wong"
        );
        assert_eq!(id_from_file_name("3023.full.pdf"), "3023.full");
    }

    #[test]
    fn reference_number_finder() {
        assert_eq!(numbers("0°, -45 and 1.5s"), vec!["0", "-45", "1.5"]);
        assert_eq!(numbers(".5"), vec![".5"]);
    }

    #[test]
    fn the_lenient_rules_accept_what_the_strict_scorer_rejects() {
        let s = schema();
        // Substring: `8` inside `180`, `45` inside `145`.
        assert!(lenient_match(&s, "n_total", "180", "8"));
        assert!(lenient_match(&s, "perturbation_magnitude", "145", "45"));
        // Equal first numbers.
        assert!(lenient_match(
            &s,
            "perturbation_magnitude",
            "0, 2, 4, 8, 16 CCW/CW",
            "0"
        ));
        // Numbers within 5%.
        assert!(lenient_match(&s, "n_total", "100", "104"));
        assert!(!lenient_match(&s, "n_total", "100", "106"));
        // Typo pair and synonyms.
        assert!(lenient_match(
            &s,
            "feedback_type",
            "continous",
            "Continuous feedback"
        ));
        assert!(lenient_match(&s, "effector", "arm", "hand"));
        assert!(!lenient_match(&s, "effector", "arm", "leg"));
    }

    #[test]
    fn all_experiments_meet_the_first_predicted_one() {
        let s = schema();
        let gold = Table::from_bytes(
            "g.csv",
            b"study_id,n_total\nLee2019EXP1,10\nLee2019EXP2,20\n",
        )
        .unwrap();
        let pred = Table::from_bytes(
            "p.csv",
            b"source_file,n_total\nLee - 2019 - x.pdf,10\nLee - 2019 - x.pdf,20\n",
        )
        .unwrap();
        let o = score(&s, &gold, &pred).unwrap();
        // EXP2 (20) is compared with Lee2019_EXP1 (10): 10 vs 20 differ by more than 5%.
        assert_eq!(
            o.summary().micro,
            Counts {
                tp: 1,
                fp: 0,
                fn_: 0,
                wrong: 1
            }
        );
    }
}
