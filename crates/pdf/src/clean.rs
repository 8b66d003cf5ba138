//! Clean-up between layout and the final text: character normalisation (ligatures, controls,
//! odd spaces), page furniture (running headers/footers and watermarks that recur on many
//! pages, margin line numbers, figure-only pages) and line-end hyphens.
//!
//! Dehyphenation rule: `adapta-` + `tion` is joined to `adaptation` only when `adaptation` (or
//! an inflection of its stem: `conducting` confirmed by `conducted`) occurs elsewhere in this
//! paper and `adapta-tion` does not. Otherwise the hyphen is kept as printed and only the line
//! break is removed (`time-locked`, `Contreras-Vidal`, and unconfirmed splits such as
//! `discov-ered`). Guessing from a dictionary would silently corrupt names and terms.

use super::layout::Line;
use super::Page;
use std::collections::{BTreeSet, HashMap, HashSet};

/// Share of pages a normalised line must recur on to count as a running header/footer.
pub const RECUR_SHARE: f64 = 0.4;

/// Character-level clean-up of one line: ligatures expanded, controls dropped, unusual spaces
/// made plain, whitespace collapsed.
pub fn normalize_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\u{FB00}' => out.push_str("ff"),
            '\u{FB01}' => out.push_str("fi"),
            '\u{FB02}' => out.push_str("fl"),
            '\u{FB03}' => out.push_str("ffi"),
            '\u{FB04}' => out.push_str("ffl"),
            '\u{FB05}' | '\u{FB06}' => out.push_str("st"),
            '\u{00AD}' => out.push('-'),
            '\u{00A0}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' | '\t' => {
                out.push(' ')
            }
            '\u{200B}'..='\u{200D}' | '\u{FEFF}' | '\u{FFFD}' => {}
            // Bidirectional controls reorder how text displays (a U+202E in a title shows it
            // reversed): never text of the paper, and a way to disguise a value.
            '\u{200E}'
            | '\u{200F}'
            | '\u{061C}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}' => {}
            c if c.is_control() => {}
            c if ('\u{E000}'..='\u{F8FF}').contains(&c) => {}
            c => out.push(c),
        }
    }
    let mut collapsed = String::with_capacity(out.len());
    for w in out.split(' ').filter(|w| !w.is_empty()) {
        if !collapsed.is_empty() {
            collapsed.push(' ');
        }
        collapsed.push_str(w);
    }
    collapsed
}

/// The key under which lines are compared across pages: digits masked, case and spaces folded.
fn recur_key(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| {
            if c.is_ascii_digit() {
                '#'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect::<String>()
        .replace("##", "#")
        .replace("##", "#")
}

fn is_number_line(s: &str) -> bool {
    !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Removes lines that recur (digits masked) on at least [`RECUR_SHARE`] of the pages.
pub fn remove_running_lines(pages: &mut [Vec<Line>]) {
    let n = pages.iter().filter(|p| !p.is_empty()).count();
    if n < 3 {
        return;
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for p in pages.iter() {
        let keys: HashSet<String> = p.iter().map(|l| recur_key(&l.text)).collect();
        for k in keys {
            *counts.entry(k).or_default() += 1;
        }
    }
    let min = ((n as f64) * RECUR_SHARE).ceil().max(2.0) as usize;
    for p in pages.iter_mut() {
        p.retain(|l| !is_running(&l.text, &counts, min));
    }
}

/// A line is page furniture when its digit-masked key recurs on `min` pages and it has some
/// words: number-only lines ("9.5" in a table) mask to the same key everywhere and are content.
fn is_running(text: &str, counts: &HashMap<String, usize>, min: usize) -> bool {
    text.chars().filter(|c| c.is_alphabetic()).count() >= 3
        && counts.get(&recur_key(text)).copied().unwrap_or(0) >= min
}

/// Removes margin line numbers: number-only lines lying outside the page's text body, and
/// leading line numbers glued to a body line by the layout when they form a running sequence.
pub fn remove_line_numbers(page: &mut Vec<Line>) {
    let body: Vec<&Line> = page.iter().filter(|l| l.text.len() >= 30).collect();
    if body.is_empty() {
        return;
    }
    let left = body.iter().map(|l| l.x0).fold(f32::INFINITY, f32::min);
    let right = body.iter().map(|l| l.x1).fold(f32::NEG_INFINITY, f32::max);
    page.retain(|l| !(is_number_line(&l.text) && (l.x1 <= left + 1.0 || l.x0 >= right - 1.0)));
    // Page numbers alone at the very top or bottom of the page.
    let top = page.iter().map(|l| l.y).fold(f32::NEG_INFINITY, f32::max);
    let bottom = page.iter().map(|l| l.y).fold(f32::INFINITY, f32::min);
    page.retain(|l| !(is_number_line(&l.text) && (l.y >= top || l.y <= bottom)));
}

/// A page with no sentence on it (only figure labels, axis ticks, a logo).
fn figure_only(page: &[Line]) -> bool {
    let words: usize = page.iter().map(|l| l.text.split(' ').count()).sum();
    let longest = page
        .iter()
        .map(|l| l.text.split(' ').count())
        .max()
        .unwrap_or(0);
    !page.is_empty() && words < 40 && longest < 6
}

fn words_of(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
}

/// Vocabulary for the dehyphenation rule: lowercase alphabetic words, and hyphenated compounds.
struct Vocab {
    words: BTreeSet<String>,
    compounds: HashSet<String>,
}

/// Inflection endings stripped to find a joined word's stem elsewhere in the paper
/// (`conducting` is confirmed by `conducted`).
const SUFFIXES: &[&str] = &[
    "ations", "ation", "ments", "ment", "ities", "ity", "ions", "ion", "ally", "ness", "ives",
    "ive", "ing", "ers", "er", "ies", "ed", "es", "ly", "al", "y", "s", "d", "e",
];

impl Vocab {
    fn build(pages: &[Vec<Line>]) -> Vocab {
        let mut words = BTreeSet::new();
        let mut compounds = HashSet::new();
        for l in pages.iter().flatten() {
            // The last word of a hyphen-ending line is only a fragment: not evidence.
            let t = match l.text.strip_suffix('-') {
                Some(t) => t.rsplit_once(' ').map(|(a, _)| a).unwrap_or(""),
                None => &l.text,
            };
            // The first word of a line may be the tail of a split word: not evidence either.
            let body = match t.split_once(' ') {
                Some((_, rest)) => rest,
                None => "",
            };
            for w in words_of(body) {
                words.insert(w.to_lowercase());
            }
            for tok in body.split(' ') {
                let tok = tok.trim_matches(|c: char| !c.is_alphabetic() && c != '-');
                if tok.contains('-') && !tok.starts_with('-') && !tok.ends_with('-') {
                    compounds.insert(tok.to_lowercase());
                }
            }
        }
        Vocab { words, compounds }
    }

    fn has(&self, w: &str) -> bool {
        self.words.contains(w)
    }

    /// The joined word, or an inflection of its stem, occurs in the paper.
    fn confirms(&self, joined: &str) -> bool {
        if self.has(joined) {
            return true;
        }
        for suf in SUFFIXES {
            let Some(stem) = joined.strip_suffix(suf) else {
                continue;
            };
            if stem.chars().count() < 5 {
                continue;
            }
            let mut it = self.words.range(stem.to_string()..);
            if it
                .next()
                .is_some_and(|w| w.starts_with(stem) && w.len() <= stem.len() + 5)
            {
                return true;
            }
        }
        false
    }
}

pub struct Assembled {
    pub text: String,
    pub pages: Vec<Page>,
}

/// What to do with a line ending in a hyphen.
#[derive(Debug, PartialEq)]
enum Join {
    Word,
    Compound,
    Keep,
}

fn decide(vocab: &Vocab, line: &str, next: &str) -> (Join, usize) {
    let Some(stem) = line.strip_suffix('-') else {
        return (Join::Keep, 0);
    };
    let prefix: String = stem
        .chars()
        .rev()
        .take_while(|c| c.is_alphabetic())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if prefix.is_empty() {
        return (Join::Keep, 0);
    }
    let first = next.split(' ').next().unwrap_or("");
    let suffix: String = first.chars().take_while(|c| c.is_alphabetic()).collect();
    let Some(initial) = suffix.chars().next() else {
        return (Join::Keep, 0);
    };
    if initial.is_uppercase() {
        // `Contreras-` + `Vidal`, `Instruction-` + `Online`: a compound of names, hyphen kept.
        return (Join::Compound, first.len());
    }
    let (p, s) = (prefix.to_lowercase(), suffix.to_lowercase());
    if !vocab.compounds.contains(&format!("{p}-{s}")) && vocab.confirms(&format!("{p}{s}")) {
        (Join::Word, first.len())
    } else {
        // Unconfirmed: the hyphen is kept as printed (it may be a real compound, and guessing
        // would corrupt terms), but the two halves are put on one line.
        (Join::Compound, first.len())
    }
}

/// Normalises, removes furniture, dehyphenates and concatenates pages into one text with page
/// ranges. Pages are separated by a blank line; layout blocks within a page by a blank line too.
/// A hyphen ending a column or page is joined with the first word of the next one.
pub fn assemble(mut pages: Vec<Vec<Line>>) -> Assembled {
    for p in pages.iter_mut() {
        for l in p.iter_mut() {
            l.text = normalize_line(&l.text);
        }
        p.retain(|l| !l.text.is_empty());
    }
    remove_running_lines(&mut pages);
    for p in pages.iter_mut() {
        remove_line_numbers(p);
    }
    // Figure-only pages are dropped, but only from a document that has real text elsewhere.
    if pages.iter().any(|p| !p.is_empty() && !figure_only(p)) {
        for p in pages.iter_mut() {
            if figure_only(p) {
                p.clear();
            }
        }
    }
    let vocab = Vocab::build(&pages);
    // Flattened (page, line) sequence, so joins can cross block and page boundaries.
    let flat: Vec<(usize, &Line)> = pages
        .iter()
        .enumerate()
        .flat_map(|(pi, p)| p.iter().map(move |l| (pi, l)))
        .collect();
    let mut text = String::new();
    let mut out_pages: Vec<Page> = Vec::with_capacity(pages.len());
    let mut cur_page = usize::MAX;
    let mut skip = 0usize;
    let mut first_in_page = true;
    // Lines whose first word was pulled up to an earlier line (beyond the immediate next one).
    let mut skipped: HashSet<usize> = HashSet::new();
    let mut skip_at: HashMap<usize, usize> = HashMap::new();
    for (k, &(pi, l)) in flat.iter().enumerate() {
        if pi != cur_page {
            // Close the open page, then open pages up to this one (skipped pages stay empty).
            while out_pages.len() <= pi {
                open_page(&mut text, &mut out_pages);
            }
            cur_page = pi;
            first_in_page = true;
        }
        if let Some(t) = skip_at.remove(&k) {
            skip = t;
        }
        let mut line = l.text.get(skip..).unwrap_or("").trim_start();
        skip = 0;
        if line.is_empty() {
            continue;
        }
        if l.block_start && !first_in_page {
            text.push('\n');
        }
        first_in_page = false;
        let next = flat.get(k + 1).map(|(_, n)| n.text.as_str()).unwrap_or("");
        let (mut join, mut take) = if next.is_empty() {
            (Join::Keep, 0)
        } else {
            decide(&vocab, line, next)
        };
        let mut target = k + 1;
        if join == Join::Keep && line.ends_with('-') {
            // The column may continue after a figure or caption: try the first line of the next
            // few blocks, still requiring the joined word to be confirmed by the paper.
            for (j, &(_, cand)) in flat.iter().enumerate().skip(k + 2).take(80) {
                if !cand.block_start || skipped.contains(&j) {
                    continue;
                }
                let (jn, tk) = decide(&vocab, line, &cand.text);
                if jn == Join::Word {
                    (join, take, target) = (jn, tk, j);
                    break;
                }
            }
        }
        match join {
            Join::Word | Join::Compound => {
                if join == Join::Word {
                    line = &line[..line.len() - 1];
                }
                let donor = &flat[target].1.text;
                text.push_str(line);
                text.push_str(&donor[..take]);
                if target == k + 1 {
                    skip = take;
                } else {
                    skipped.insert(target);
                    skip_at.insert(target, take);
                }
            }
            Join::Keep => text.push_str(line),
        }
        text.push('\n');
    }
    while out_pages.len() < pages.len() {
        open_page(&mut text, &mut out_pages);
    }
    if let Some(last) = out_pages.last_mut() {
        trim_end(&mut text, last.start);
        last.end = text.len();
    }
    // An empty trailing page must not point past the trimmed text.
    let len = text.len();
    for p in out_pages.iter_mut() {
        p.start = p.start.min(len);
        p.end = p.end.min(len).max(p.start);
    }
    Assembled {
        text,
        pages: out_pages,
    }
}

/// Ends the last page's range at the (trimmed) end of the text and starts the next page.
fn open_page(text: &mut String, pages: &mut Vec<Page>) {
    if let Some(last) = pages.last_mut() {
        trim_end(text, last.start);
        last.end = text.len();
    }
    if !text.is_empty() {
        text.push_str("\n\n");
    }
    pages.push(Page {
        number: pages.len() + 1,
        start: text.len(),
        end: text.len(),
    });
}

fn trim_end(text: &mut String, floor: usize) {
    while text.len() > floor && text.ends_with(['\n', ' ']) {
        text.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t: &str, y: f32) -> Line {
        Line {
            text: t.to_string(),
            x0: 50.0,
            x1: 300.0,
            y,
            size: 10.0,
            block_start: false,
        }
    }

    #[test]
    fn ligatures_and_controls() {
        assert_eq!(
            normalize_line("e\u{FB03}cient\u{0002} de\u{FB01}cits\u{00A0} x"),
            "efficient deficits x"
        );
    }

    #[test]
    fn dehyphenates_only_known_words() {
        let pages = vec![vec![
            line("we studied adapta-", 700.0),
            line("tion in the task and adaptation again, with task-", 688.0),
            line("irrelevant feedback and the xyzzy-", 676.0),
            line("plugh term, a task-irrelevant cue", 664.0),
        ]];
        let a = assemble(pages);
        // Confirmed by "adaptation" elsewhere: joined without the hyphen.
        assert!(
            a.text.starts_with("we studied adaptation\nin the task"),
            "{}",
            a.text
        );
        // A compound seen elsewhere keeps its hyphen; only the line break goes.
        assert!(a.text.contains("task-irrelevant\nfeedback"), "{}", a.text);
        // Unconfirmed: hyphen kept as printed.
        assert!(a.text.contains("xyzzy-plugh\nterm"), "{}", a.text);
        assert!(!a.text.lines().any(|l| l.ends_with('-')), "{}", a.text);
    }

    #[test]
    fn running_headers_removed() {
        let mut pages: Vec<Vec<Line>> = (1..=5)
            .map(|i| {
                vec![
                    line(&format!("J Neurophysiol {i} • www.jn.org"), 780.0),
                    line(&format!("body text {}", "x".repeat(i)), 500.0),
                ]
            })
            .collect();
        remove_running_lines(&mut pages);
        assert!(pages
            .iter()
            .all(|p| p.len() == 1 && p[0].text.starts_with("body text")));
    }

    #[test]
    fn margin_numbers_removed() {
        let mut p = vec![
            Line {
                text: "12".into(),
                x0: 20.0,
                x1: 28.0,
                y: 700.0,
                size: 8.0,
                block_start: false,
            },
            line("A body line that is long enough to count as body", 700.0),
            line("Another body line that is long enough to count", 688.0),
            line("and a table value 3", 676.0),
        ];
        remove_line_numbers(&mut p);
        assert_eq!(p.len(), 3);
        assert!(p.iter().all(|l| l.text != "12"));
    }

    #[test]
    fn page_ranges_cover_text() {
        let a = assemble(vec![
            vec![line("first page", 700.0)],
            vec![],
            vec![line("third", 700.0)],
        ]);
        assert_eq!(a.pages.len(), 3);
        assert_eq!(&a.text[a.pages[0].start..a.pages[0].end], "first page");
        assert_eq!(&a.text[a.pages[2].start..a.pages[2].end], "third");
    }
}
