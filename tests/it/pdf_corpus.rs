//! Quality thresholds on the 15 shared corpus papers, measured against `pdftotext` (poppler) as
//! an oracle. Skips visibly when the corpus or pdftotext is absent; the product never uses it.
//!
//! Metrics: `paramx::pdf::metrics` (shared with `benches/pdf_vs_pdftotext.rs`).

use paramx::pdf::metrics::{is_number_line, line_end_hyphens, recurring, Counts};
use paramx::pdf::{self, Document, ExtractOptions, SectionKind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn corpus() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/papers");
    d.is_dir().then_some(d)
}

fn have_pdftotext() -> bool {
    Command::new("pdftotext").arg("-v").output().is_ok()
}

struct Paper {
    name: String,
    ours: Document,
    reference: String,
}

/// Extracts the corpus once per test binary (in parallel) and runs pdftotext once per paper.
fn papers() -> Option<&'static Vec<Paper>> {
    static P: OnceLock<Option<Vec<Paper>>> = OnceLock::new();
    P.get_or_init(|| {
        let Some(dir) = corpus() else {
            eprintln!("SKIP: ../shared/corpus/papers not found");
            return None;
        };
        if !have_pdftotext() {
            eprintln!(
                "SKIP: pdftotext (poppler-utils) not installed; corpus thresholds not checked"
            );
            return None;
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "pdf"))
            .collect();
        files.sort();
        let results = pdf::extract_many(&files, &ExtractOptions::default());
        Some(
            results
                .into_iter()
                .map(|(path, r)| {
                    let ours = r.unwrap_or_else(|e| panic!("extraction failed: {e}"));
                    let out = Command::new("pdftotext")
                        .arg("-enc")
                        .arg("UTF-8")
                        .arg(&path)
                        .arg("-")
                        .output()
                        .unwrap();
                    Paper {
                        name: path
                            .file_name()
                            .unwrap()
                            .to_string_lossy()
                            .chars()
                            .take(40)
                            .collect(),
                        ours,
                        reference: String::from_utf8_lossy(&out.stdout).into_owned(),
                    }
                })
                .collect(),
        )
    })
    .as_ref()
}

fn our_pages(d: &Document) -> Vec<&str> {
    d.pages.iter().map(|p| &d.text[p.start..p.end]).collect()
}

#[test]
fn word_recall_precision_and_order_vs_pdftotext() {
    let Some(papers) = papers() else { return };
    let mut failures = Vec::new();
    let mut total = Counts::default();
    for p in papers {
        let c = Counts::compare(
            &p.reference.split('\u{c}').collect::<Vec<_>>(),
            &our_pages(&p.ours),
        );
        let (rec, prec, ord) = (c.recall(), c.precision(), c.order());
        eprintln!(
            "{:40} recall {rec:.4} precision {prec:.4} bigrams {ord:.4}",
            p.name
        );
        if rec < 0.97 || prec < 0.97 || ord < 0.95 {
            failures.push(format!(
                "{}: recall {rec:.4} precision {prec:.4} bigrams {ord:.4}",
                p.name
            ));
        }
        total.add(&c);
    }
    let (rec, prec, ord) = (total.recall(), total.precision(), total.order());
    eprintln!("OVERALL recall {rec:.4} precision {prec:.4} bigrams {ord:.4}");
    assert!(failures.is_empty(), "per-paper thresholds: {failures:#?}");
    assert!(
        rec >= 0.99 && prec >= 0.99 && ord >= 0.98,
        "overall recall {rec} precision {prec} bigrams {ord}"
    );
}

#[test]
fn symbols_survive() {
    let Some(papers) = papers() else { return };
    for p in papers {
        let (o, r) = (&p.ours.text, &p.reference);
        let count = |t: &str, c: char| t.chars().filter(|&x| x == c).count();
        for c in ['\u{B1}', '='] {
            assert!(
                count(o, c) >= count(r, c),
                "{}: {c:?} lost: {} < {}",
                p.name,
                count(o, c),
                count(r, c)
            );
        }
        assert!(
            count(o, '\u{2212}') + o.matches("-").count() >= count(r, '\u{2212}'),
            "{}: minus signs lost",
            p.name
        );
        let bad: Vec<char> = o
            .chars()
            .filter(|&c| (c.is_control() && c != '\n') || ('\u{FB00}'..='\u{FB06}').contains(&c))
            .collect();
        assert!(bad.is_empty(), "{}: control/ligature chars {bad:?}", p.name);
    }
}

#[test]
fn degree_signs_at_least_pdftotext() {
    // Compared page by page on the pages we keep: figure-only pages (axis labels, no sentence)
    // are skipped by design, and their labels are not counted on either side.
    let Some(papers) = papers() else { return };
    let mut short = Vec::new();
    for p in papers {
        let ref_pages: Vec<&str> = p.reference.split('\u{c}').collect();
        let (mut o, mut r, mut skipped) = (0, 0, 0);
        for pg in &p.ours.pages {
            let ours = &p.ours.text[pg.start..pg.end];
            let theirs = ref_pages
                .get(pg.number - 1)
                .map_or(0, |t| t.matches('\u{B0}').count());
            if ours.is_empty() {
                skipped += theirs;
                continue;
            }
            o += ours.matches('\u{B0}').count();
            r += theirs;
        }
        eprintln!(
            "{:40} degrees ours {o} pdftotext {r} (on skipped figure-only pages: {skipped})",
            p.name
        );
        if o < r {
            short.push(format!("{}: {o} < {r}", p.name));
        }
    }
    assert!(short.is_empty(), "{short:#?}");
}

#[test]
fn math_font_minus_is_a_minus() {
    // 3023.full.pdf sets signs in a "Universal-GreekwithMathPi" font (glyph names H11002...).
    let Some(papers) = papers() else { return };
    let Some(p) = papers.iter().find(|p| p.name.starts_with("3023")) else {
        return;
    };
    let minus = p.ours.text.matches("\u{2212}").count();
    let pm = p.ours.text.matches('\u{B1}').count();
    assert!(minus > 0 && pm > 0, "minus {minus} plusminus {pm}");
}

#[test]
fn few_line_end_hyphens_left() {
    let Some(papers) = papers() else { return };
    let n: usize = papers.iter().map(|p| line_end_hyphens(&p.ours.text)).sum();
    eprintln!("line-end hyphens left in corpus: {n}");
    assert!(n <= 60, "{n} line-end hyphens left");
}

#[test]
fn no_line_numbers_or_running_headers() {
    let Some(papers) = papers() else { return };
    for p in papers {
        let ours_nums = p.ours.text.lines().filter(|l| is_number_line(l)).count();
        let ref_nums = p.reference.lines().filter(|l| is_number_line(l)).count();
        // Line-numbered manuscripts show hundreds of number-only lines in pdftotext.
        if ref_nums >= 300 {
            assert!(
                ours_nums * 10 <= ref_nums,
                "{}: {ours_nums} number-only lines left (pdftotext {ref_nums})",
                p.name
            );
        }
        let rec = recurring(&our_pages(&p.ours));
        assert!(rec.is_empty(), "{}: recurring lines {rec:?}", p.name);
    }
}

#[test]
fn methods_found_where_present() {
    let Some(papers) = papers() else { return };
    let names = [
        "methods",
        "method",
        "materials and methods",
        "general methods",
        "experimental procedures",
        "methods and materials",
    ];
    for p in papers {
        let has = p.reference.lines().any(|l| {
            let t = l
                .trim()
                .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')
                .to_lowercase();
            names.contains(&t.trim_end_matches(['.', ':']))
        });
        let found = p
            .ours
            .sections
            .iter()
            .any(|s| s.kind == SectionKind::Methods);
        eprintln!(
            "{:40} methods heading in pdftotext: {has}, found: {found}",
            p.name
        );
        if has {
            assert!(
                found,
                "{}: Methods heading not found; sections: {:?}",
                p.name,
                p.ours
                    .sections
                    .iter()
                    .map(|s| &s.heading)
                    .collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn offsets_are_consistent() {
    let Some(papers) = papers() else { return };
    for p in papers {
        let d = &p.ours;
        let mut prev = 0;
        for pg in &d.pages {
            assert!(pg.start >= prev && pg.start <= pg.end && pg.end <= d.text.len());
            assert!(d.text.is_char_boundary(pg.start) && d.text.is_char_boundary(pg.end));
            prev = pg.end;
        }
        for s in &d.sections {
            assert!(
                s.start < s.end
                    && s.end <= d.text.len()
                    && d.text[s.start..].starts_with(&s.heading)
            );
        }
        assert!(d.doi.as_deref().is_none_or(|x| x.starts_with("10.")));
        let json = serde_json::to_string(d).unwrap();
        let back: Document = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, d);
    }
}
