//! Which predicted rows are compared with which gold rows (strict scorer).
//!
//! Papers: one-to-one, in three passes — normalized DOI, then the best title token-Jaccard of
//! at least 0.8, then first-author surname + year — and two papers whose DOIs both exist and
//! differ are never matched. A file name alone never matches anything. Duplicate PDFs (same sha256)
//! count once.
//!
//! Experiments: gold `...EXPn` <-> predicted experiment n; a gold label such as `GEN` <-> the
//! predicted experiment with that label; a paper annotated as a single gold row <-> the merge of
//! all predicted experiments (per the schema's `merge` rule).

use crate::schema::{Field, Merge, Schema, Value};
use crate::table::Table;
use anyhow::Result;
use std::collections::{BTreeSet, HashMap};

/// Which experiment of a paper a row describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpId {
    /// The whole paper (no experiment number).
    Whole,
    Num(u32),
    /// A non-numeric label (`GEN`), lower-cased.
    Label(String),
}

/// One gold row, its cells parsed per schema field (index = position in `Schema::fields`).
#[derive(Debug, Clone)]
pub struct GoldRow {
    pub study_id: String,
    pub line: u64,
    pub exp: ExpId,
    pub cells: Vec<Value>,
}

/// How a paper can be recognised.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub doi: Option<String>,
    pub title: BTreeSet<String>,
    pub author_year: Option<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct GoldPaper {
    /// `Butcher2018`: the study_id without its experiment suffix.
    pub id: String,
    pub identity: Identity,
    pub rows: Vec<GoldRow>,
}

#[derive(Debug, Clone)]
pub struct PredExp {
    pub exp: ExpId,
    pub line: u64,
    pub cells: Vec<Value>,
}

#[derive(Debug, Clone)]
pub struct PredPaper {
    /// Source file (or id) for reports.
    pub name: String,
    pub identity: Identity,
    pub exps: Vec<PredExp>,
}

/// The gold side, read.
#[derive(Debug, Clone)]
pub struct GoldSet {
    pub papers: Vec<GoldPaper>,
    /// Rows with an empty study_id (skipped, reported).
    pub skipped_rows: usize,
}

/// The prediction side, read.
#[derive(Debug, Clone)]
pub struct PredSet {
    pub papers: Vec<PredPaper>,
    /// Rows dropped because another file with the same sha256 came first.
    pub duplicate_rows: usize,
}

/// The pass that aligned a gold paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedBy {
    Doi,
    Title,
    AuthorYear,
}

impl MatchedBy {
    pub fn as_str(&self) -> &'static str {
        match self {
            MatchedBy::Doi => "doi",
            MatchedBy::Title => "title",
            MatchedBy::AuthorYear => "author+year",
        }
    }
}

/// Minimum title token-Jaccard for a title match.
pub const TITLE_JACCARD: f64 = 0.8;

// ----- identity helpers --------------------------------------------------------------------

/// `https://doi.org/10.1037/XHP0000440.` -> `10.1037/xhp0000440`; `None` without a DOI.
pub fn normalize_doi(s: &str) -> Option<String> {
    let lower = s.trim().to_lowercase();
    let bytes = lower.as_bytes();
    let start = (0..bytes.len().saturating_sub(3))
        .find(|&i| bytes[i..].starts_with(b"10.") && bytes[i + 3].is_ascii_digit())?;
    let doi: String = lower[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let doi = doi.trim_end_matches(['.', ',', ';', ')', ']', '"', '\'']);
    doi.contains('/').then(|| doi.to_string())
}

/// Title tokens (lower case, punctuation stripped), without `EXPn` markers.
pub fn title_tokens(s: &str) -> BTreeSet<String> {
    let lower = s.to_lowercase();
    let words = |text: &str| -> Vec<String> {
        text.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty() && !is_exp_token(w))
            .map(String::from)
            .collect()
    };
    // A hyphenated word counts both split and joined: journals and annotators disagree on
    // `re-aiming` / `reaiming` as much as on `prediction-error` / `prediction error`.
    let joined: String = lower
        .chars()
        .filter(|c| !matches!(c, '-' | '\u{2010}' | '\u{2011}' | '\u{00AD}'))
        .collect();
    words(&lower).into_iter().chain(words(&joined)).collect()
}

#[cfg(test)]
#[test]
fn title_tokens_strip_hyphens_inside_words() {
    let a =
        title_tokens("Relative sensitivity of explicit re-aiming and implicit motor adaptation");
    let b = title_tokens("Relative sensitivity of explicit reaiming and implicit motor adaptation");
    assert!(jaccard(&a, &b) >= 0.8, "{}", jaccard(&a, &b));
}

fn is_exp_token(w: &str) -> bool {
    w.strip_prefix("exp")
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

pub fn jaccard(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let inter = a.intersection(b).count();
    inter as f64 / (a.len() + b.len() - inter) as f64
}

/// `Butcher2018EXP3` -> (`butcher`, `2018`, `EXP3`): leading letters, a 4-digit year, the rest.
pub fn split_study_id(id: &str) -> Option<(String, String, String)> {
    let id = id.trim();
    let letters = id.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
    let rest = &id[letters..];
    if letters == 0 || rest.len() < 4 || !rest.as_bytes()[..4].iter().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((
        id[..letters].to_lowercase(),
        rest[..4].to_string(),
        rest[4..].to_string(),
    ))
}

/// Experiment id from a suffix or an `experiment` cell: `EXP2`, `_exp2`, `2` -> 2; `GEN` -> label.
pub fn parse_exp(s: &str) -> ExpId {
    let t = s.trim().trim_start_matches(['_', '-', ' ']).to_lowercase();
    if t.is_empty() {
        return ExpId::Whole;
    }
    let digits = t
        .strip_prefix("experiment")
        .or_else(|| t.strip_prefix("exp"))
        .unwrap_or(&t)
        .trim();
    match digits.parse::<u32>() {
        Ok(n) => ExpId::Num(n),
        Err(_) => ExpId::Label(t),
    }
}

fn author_year(authors: &str, year: &str) -> Option<(String, String)> {
    let surname: String = authors
        .trim()
        .chars()
        .take_while(|c| c.is_alphabetic() || *c == '-')
        .collect();
    let year: String = year.trim().chars().take(4).collect();
    (!surname.is_empty() && year.len() == 4 && year.bytes().all(|b| b.is_ascii_digit()))
        .then(|| (surname.to_lowercase(), year))
}

fn parse_cells(schema: &Schema, table: &Table, row: &crate::table::Row) -> Vec<Value> {
    schema
        .fields()
        .iter()
        .map(|f| f.parse(table.get(row, &f.name)))
        .collect()
}

// ----- loading -----------------------------------------------------------------------------

/// Read the gold table: rows grouped into papers by study_id without its suffix.
pub fn load_gold(schema: &Schema, table: &Table) -> Result<GoldSet> {
    table.require("study_id")?;
    let mut papers: Vec<GoldPaper> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut skipped = 0;
    for row in table.rows() {
        let sid = table.get(row, "study_id").trim().to_string();
        if sid.is_empty() {
            skipped += 1;
            continue;
        }
        let (base, exp, ay) = match split_study_id(&sid) {
            Some((s, y, suffix)) => (
                format!("{}{}", &sid[..s.len()], y),
                parse_exp(&suffix),
                Some((s, y)),
            ),
            None => (sid.clone(), ExpId::Whole, None),
        };
        let i = *index.entry(base.to_lowercase()).or_insert_with(|| {
            papers.push(GoldPaper {
                id: base.clone(),
                identity: Identity::default(),
                rows: Vec::new(),
            });
            papers.len() - 1
        });
        let p = &mut papers[i];
        if p.identity.doi.is_none() {
            p.identity.doi = normalize_doi(table.get(row, "doi_or_url"));
        }
        if p.identity.title.is_empty() {
            p.identity.title = title_tokens(table.get(row, "title"));
        }
        if p.identity.author_year.is_none() {
            p.identity.author_year =
                ay.or_else(|| author_year(table.get(row, "authors"), table.get(row, "year")));
        }
        p.rows.push(GoldRow {
            study_id: sid,
            line: row.line,
            exp,
            cells: parse_cells(schema, table, row),
        });
    }
    Ok(GoldSet {
        papers,
        skipped_rows: skipped,
    })
}

/// Read a prediction table: rows grouped into papers by sha256, else source file, else id.
pub fn load_pred(schema: &Schema, table: &Table) -> Result<PredSet> {
    let mut papers: Vec<PredPaper> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut sha_owner: HashMap<String, String> = HashMap::new();
    let mut duplicates = 0;
    for row in table.rows() {
        let get = |c: &str| table.get(row, c).trim();
        let (sha, file, sid) = (
            get("sha256").to_lowercase(),
            get("source_file"),
            get("study_id"),
        );
        if !sha.is_empty() {
            let owner = sha_owner
                .entry(sha.clone())
                .or_insert_with(|| file.to_string());
            if owner != file {
                duplicates += 1;
                continue;
            }
        }
        let parts = split_study_id(sid);
        let key = if !sha.is_empty() {
            format!("sha:{sha}")
        } else if !file.is_empty() {
            format!("file:{file}")
        } else if let Some((s, y, _)) = &parts {
            format!("id:{s}{y}")
        } else if !sid.is_empty() {
            format!("id:{}", sid.to_lowercase())
        } else {
            format!("title:{}", get("title").to_lowercase())
        };
        let name = if !file.is_empty() {
            file.to_string()
        } else if let Some((_, _, suffix)) = &parts {
            sid[..sid.len() - suffix.len()].to_string()
        } else {
            sid.to_string()
        };
        let i = *index.entry(key).or_insert_with(|| {
            papers.push(PredPaper {
                name,
                identity: Identity::default(),
                exps: Vec::new(),
            });
            papers.len() - 1
        });
        let p = &mut papers[i];
        let id = &mut p.identity;
        if id.doi.is_none() {
            id.doi = normalize_doi(get("doi")).or_else(|| normalize_doi(get("doi_or_url")));
        }
        if id.title.is_empty() {
            let t = if get("title_detected").is_empty() {
                get("title")
            } else {
                get("title_detected")
            };
            id.title = title_tokens(t);
        }
        if id.author_year.is_none() {
            id.author_year = parts
                .as_ref()
                .map(|(s, y, _)| (s.clone(), y.clone()))
                .or_else(|| author_year(get("authors"), get("year")));
        }
        let exp = match get("experiment") {
            "" => parts
                .as_ref()
                .map(|(_, _, suffix)| parse_exp(suffix))
                .unwrap_or(ExpId::Whole),
            e => parse_exp(e),
        };
        p.exps.push(PredExp {
            exp,
            line: row.line,
            cells: parse_cells(schema, table, row),
        });
    }
    Ok(PredSet {
        papers,
        duplicate_rows: duplicates,
    })
}

// ----- papers ------------------------------------------------------------------------------

fn doi_conflict(a: &Identity, b: &Identity) -> bool {
    matches!((&a.doi, &b.doi), (Some(x), Some(y)) if x != y)
}

/// For each gold paper, the predicted paper aligned with it (one-to-one).
pub fn align_papers(gold: &[GoldPaper], pred: &[PredPaper]) -> Vec<Option<(usize, MatchedBy)>> {
    let mut out: Vec<Option<(usize, MatchedBy)>> = vec![None; gold.len()];
    let mut used = vec![false; pred.len()];
    // 1. DOI.
    for (g, gp) in gold.iter().enumerate() {
        let Some(doi) = &gp.identity.doi else {
            continue;
        };
        if let Some(p) =
            (0..pred.len()).find(|&p| !used[p] && pred[p].identity.doi.as_ref() == Some(doi))
        {
            used[p] = true;
            out[g] = Some((p, MatchedBy::Doi));
        }
    }
    // 2. Best title Jaccard >= threshold, best pairs first.
    let mut cands = Vec::new();
    for (g, gp) in gold.iter().enumerate() {
        if out[g].is_some() {
            continue;
        }
        for (p, pp) in pred.iter().enumerate() {
            if used[p] || doi_conflict(&gp.identity, &pp.identity) {
                continue;
            }
            let j = jaccard(&gp.identity.title, &pp.identity.title);
            if j >= TITLE_JACCARD {
                cands.push((j, g, p));
            }
        }
    }
    cands.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then((a.1, a.2).cmp(&(b.1, b.2)))
    });
    for (_, g, p) in cands {
        if out[g].is_none() && !used[p] {
            used[p] = true;
            out[g] = Some((p, MatchedBy::Title));
        }
    }
    // 3. Surname + year.
    for (g, gp) in gold.iter().enumerate() {
        if out[g].is_some() {
            continue;
        }
        let Some(ay) = &gp.identity.author_year else {
            continue;
        };
        if let Some(p) = (0..pred.len()).find(|&p| {
            !used[p]
                && pred[p].identity.author_year.as_ref() == Some(ay)
                && !doi_conflict(&gp.identity, &pred[p].identity)
        }) {
            used[p] = true;
            out[g] = Some((p, MatchedBy::AuthorYear));
        }
    }
    out
}

// ----- experiments -------------------------------------------------------------------------

/// For each gold row of a paper, the predicted cells it is compared with (`None`: no
/// prediction, every gold cell misses); plus which predicted experiments were left unused.
pub fn pair_experiments(
    schema: &Schema,
    gold: &GoldPaper,
    pred: &PredPaper,
) -> (Vec<Option<Vec<Value>>>, Vec<bool>) {
    let (rows, used) = pair_experiment_rows(gold, pred);
    let out = rows
        .into_iter()
        .map(|r| {
            r.map(|idx| match idx.as_slice() {
                [one] => pred.exps[*one].cells.clone(),
                several => schema
                    .fields()
                    .iter()
                    .enumerate()
                    .map(|(fi, f)| merge(f, several.iter().map(|&e| &pred.exps[e].cells[fi])))
                    .collect(),
            })
        })
        .collect();
    (out, used)
}

/// Which predicted experiments (indices into `pred.exps`) each gold row of a paper is compared
/// with: one, or all of them merged when the gold annotates the paper as a single row; `None`
/// when none pairs with it. Plus which predicted experiments were left unused. The one pairing
/// rule behind [`pair_experiments`], kept apart so that a report can point at the rows.
pub fn pair_experiment_rows(
    gold: &GoldPaper,
    pred: &PredPaper,
) -> (Vec<Option<Vec<usize>>>, Vec<bool>) {
    let mut used = vec![false; pred.exps.len()];
    let single_row_gold = gold.rows.len() == 1 && gold.rows[0].exp == ExpId::Whole;
    let mut out = Vec::with_capacity(gold.rows.len());
    for row in &gold.rows {
        if single_row_gold {
            used.iter_mut().for_each(|u| *u = true);
            out.push(Some((0..pred.exps.len()).collect()));
            continue;
        }
        let found = pred.exps.iter().position(|e| e.exp == row.exp).or_else(|| {
            // A lone unnumbered prediction stands for experiment 1.
            (row.exp == ExpId::Num(1) && pred.exps.len() == 1 && pred.exps[0].exp == ExpId::Whole)
                .then_some(0)
        });
        match found {
            Some(i) if !used[i] => {
                used[i] = true;
                out.push(Some(vec![i]));
            }
            _ => out.push(None),
        }
    }
    (out, used)
}

/// Merge per-experiment values of one field into one paper-level value.
pub fn merge<'a>(field: &Field, values: impl Iterator<Item = &'a Value>) -> Value {
    let vals: Vec<&Value> = values.filter(|v| !v.is_empty()).collect();
    let Some(first) = vals.first() else {
        return Value::Empty;
    };
    // One experiment: its value as is (a union would collapse a multiset such as `0, 0`).
    if vals.len() == 1 {
        return (*first).clone();
    }
    if field.merge == Merge::Sum {
        let ints: Vec<i64> = vals
            .iter()
            .filter_map(|v| {
                if let Value::Integer(n) = v {
                    Some(*n)
                } else {
                    None
                }
            })
            .collect();
        if !ints.is_empty() {
            return Value::Integer(ints.iter().sum());
        }
    }
    let sort_dedup = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        v.dedup();
        v
    };
    // Locations: the largest count when either side is a count, else the union of directions.
    let counts: Vec<u64> = vals
        .iter()
        .filter_map(|v| {
            if let Value::Count(n) = v {
                Some(*n)
            } else {
                None
            }
        })
        .collect();
    if !counts.is_empty() {
        let dir_lens = vals.iter().filter_map(|v| {
            if let Value::Directions(d) = v {
                Some(d.len() as u64)
            } else {
                None
            }
        });
        return Value::Count(counts.iter().copied().chain(dir_lens).max().unwrap_or(0));
    }
    match first {
        Value::Terms(_) => Value::Terms(
            vals.iter()
                .filter_map(|v| {
                    if let Value::Terms(t) = v {
                        Some(t.clone())
                    } else {
                        None
                    }
                })
                .flatten()
                .collect(),
        ),
        Value::Magnitudes(_) => Value::Magnitudes(sort_dedup(
            vals.iter()
                .filter_map(|v| {
                    if let Value::Magnitudes(m) = v {
                        Some(m.clone())
                    } else {
                        None
                    }
                })
                .flatten()
                .collect(),
        )),
        Value::Directions(_) => Value::Directions(sort_dedup(
            vals.iter()
                .filter_map(|v| {
                    if let Value::Directions(m) = v {
                        Some(m.clone())
                    } else {
                        None
                    }
                })
                .flatten()
                .collect(),
        )),
        Value::Numbers(_) => {
            let mut items = Vec::new();
            for v in &vals {
                if let Value::Numbers(n) = v {
                    for it in n {
                        if !items.contains(it) {
                            items.push(*it);
                        }
                    }
                }
            }
            // Re-read the rendered union so the items come back in the parser's order.
            field.parse(&Value::Numbers(items).render(field))
        }
        Value::Text { .. } => {
            let text = vals
                .iter()
                .filter_map(|v| {
                    if let Value::Text { text, .. } = v {
                        Some(text.as_str())
                    } else {
                        None
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            field.parse(&text)
        }
        _ => (*first).clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dois_normalize_from_any_spelling() {
        assert_eq!(
            normalize_doi("DOI 10.1007/s12311-010-0201-x").as_deref(),
            Some("10.1007/s12311-010-0201-x")
        );
        assert_eq!(
            normalize_doi("http://doi.org/10.1037/XHP0000440.").as_deref(),
            Some("10.1037/xhp0000440")
        );
        assert_eq!(normalize_doi("https://example.org/paper"), None);
        assert_eq!(normalize_doi(""), None);
    }

    #[test]
    fn study_ids_split_into_author_year_and_experiment() {
        assert_eq!(
            split_study_id("Butcher2018EXP3"),
            Some(("butcher".into(), "2018".into(), "EXP3".into()))
        );
        assert_eq!(parse_exp("EXP3"), ExpId::Num(3));
        assert_eq!(parse_exp("_exp12"), ExpId::Num(12));
        assert_eq!(parse_exp("2"), ExpId::Num(2));
        assert_eq!(parse_exp("GEN"), ExpId::Label("gen".into()));
        assert_eq!(parse_exp(""), ExpId::Whole);
        assert_eq!(split_study_id("3023.full"), None);
    }

    #[test]
    fn titles_ignore_case_punctuation_and_exp_markers() {
        let a = title_tokens("Decomposition of a sensory prediction error signal EXP1");
        let b = title_tokens("Decomposition of a Sensory Prediction-Error Signal.");
        assert!(jaccard(&a, &b) >= 0.8, "{}", jaccard(&a, &b));
        let c = title_tokens("Decomposition of a Sensory Prediction Error Signal.");
        assert_eq!(jaccard(&a, &c), 1.0);
    }

    fn paper(doi: Option<&str>, title: &str, ay: Option<(&str, &str)>) -> Identity {
        Identity {
            doi: doi.map(String::from),
            title: title_tokens(title),
            author_year: ay.map(|(a, y)| (a.to_string(), y.to_string())),
        }
    }

    #[test]
    fn papers_align_one_to_one_and_never_across_different_dois() {
        let g = |id: Identity| GoldPaper {
            id: "g".into(),
            identity: id,
            rows: vec![],
        };
        let p = |id: Identity| PredPaper {
            name: "p".into(),
            identity: id,
            exps: vec![],
        };
        let gold = vec![
            g(paper(
                Some("10.1/a"),
                "alpha beta gamma",
                Some(("smith", "2018")),
            )),
            g(paper(
                None,
                "one two three four five",
                Some(("jones", "2019")),
            )),
            g(paper(Some("10.1/c"), "x", Some(("lee", "2020")))),
        ];
        let pred = vec![
            p(paper(None, "one two three four five", None)),
            p(paper(Some("10.1/a"), "", None)),
            // Same author+year as gold 2 but another DOI: never matched.
            p(paper(Some("10.1/zzz"), "", Some(("lee", "2020")))),
        ];
        let a = align_papers(&gold, &pred);
        assert_eq!(a[0], Some((1, MatchedBy::Doi)));
        assert_eq!(a[1], Some((0, MatchedBy::Title)));
        assert_eq!(a[2], None);
    }
}
