//! Short questions, each answered from sentences of the paper, each value made of what its
//! sentence says.
//!
//! One long answer for a whole paper lets a small model copy one sentence as the "quote" of
//! every field and fill the values from memory. Here a paper is asked one question per
//! experiment and field group (`group` in `configs/schema.toml`). A question shows numbered
//! sentences retrieved for its fields (by the fields' cue words and their vocabularies' cues,
//! from the experiment's own text and the shared text) and asks, per field, which sentence
//! states it and what the value is. The grammar of the answer is built from those sentences:
//! a field may only point at a sentence that holds a possible value, and the value may only be
//! made of that sentence's numbers (digits or number words, written as digits) or of the terms
//! it gives a cue for. The quote of a value is therefore its own sentence, and the value is
//! supported by construction; [`crate::run::evidence::support`] checks it again.
//!
//! The paper itself is the shared prefix of all questions (`Generator::generate_shared`): its
//! keys and values are computed once per paper.

use crate::pdf::{Document, SectionKind};
use crate::run::evidence;
use crate::run::experiments::Experiment;
use crate::schema::{Field, FieldKind, Schema};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Sentences a question shows at most (fewer when a tokenizer makes the question too long,
/// see `Runner::prepare`), and per field.
pub const MAX_SENTENCES: usize = 8;
const PER_FIELD: usize = 2;
/// Longest sentence shown (longer ones are cut at word boundaries into pieces).
const MAX_SENTENCE_CHARS: usize = 260;
const MIN_SENTENCE_CHARS: usize = 15;
/// The most tokens a question may take (its sentences, field lines and chat markup): at most
/// `MAX_SENTENCES` pieces of `MAX_SENTENCE_CHARS` plus one line per field of a group stay well
/// under it. `paramx plan` counts each question row's K/V at this length, and the run refuses
/// a question over it rather than overrun the plan.
pub const MAX_QUESTION_TOKENS: usize = 2048;
/// Items one number-set or locations value may list: twelve, as a generalization design tests
/// that many (`0°, 22.5°, 45°, … 180°`).
const MAX_ITEMS: usize = 12;
/// Items one number value may list: one per group (`22 (young), 61 (old)`).
const MAX_GROUPS: usize = 6;

/// One sentence of the paper, as a question shows it and as evidence.
#[derive(Debug, Clone)]
pub struct Sentence {
    /// Byte range in `Document::text`.
    pub start: usize,
    pub end: usize,
    /// One line, as the model sees it (see `prompt::sanitize`).
    pub text: String,
    words: Vec<String>,
    /// The `:` and `;` between `words` (see [`evidence::words_and_marks`]): where a number's bond
    /// to a `near_before`/`near_after` word ends.
    marks: Vec<(usize, evidence::Mark)>,
    /// How much the section it stands in is worth for design parameters.
    weight: i32,
    /// A table row that names its experiment (`Experiment 2: n Analyzed 20; …`, see
    /// [`crate::run::tables`]): that experiment's own text, wherever the table stands, and no
    /// other experiment's.
    row_of: Option<u32>,
}

impl Sentence {
    /// Whether this sentence is experiment `exp`'s own text: it stands in one of the
    /// experiment's spans, or it is a table row naming it.
    fn is_own(&self, exp: &Experiment) -> bool {
        exp.owns(self.start) || self.row_of == Some(exp.number)
    }

    /// Whether the number at `at` (an index into `words`) names what the word before it
    /// heads: an experiment (`Experiment 2`, `Exp. 3`) or a schema `label_nouns` noun
    /// (`rotation block 1`, `Bout 2`), written right after it, or what a plural of one heads
    /// as a later item of its list (`Bouts 1 and 2`). `words` drops punctuation, so
    /// the text decides: `In this experiment, 20 new participants` and `the test phase (60°)`
    /// name nothing.
    fn is_label(&self, field: &Field, at: usize) -> bool {
        let Some(prev) = at.checked_sub(1).and_then(|p| self.words.get(p)) else {
            return false;
        };
        let heads = |w: &str| field.is_label_word(w) || field.is_label_noun(w);
        let plural = |w: &str| w.strip_suffix('s').is_some_and(heads);
        let written_after = |head: &str, n: &str| {
            let text = self.text.to_lowercase();
            text.contains(&format!("{head} {n}")) || text.contains(&format!("{head}. {n}"))
        };
        if heads(prev) || plural(prev) {
            return written_after(prev, &self.words[at]);
        }
        // A later item of a list that a plural heads (`between Bouts 1 and 2`, `Experiments 1,
        // 2, and 3`, `blocks 1-3`) names as the first does. A singular head names one number
        // (`Experiment 1, 20 participants` counts 20), and a joining word closes the list: in
        // `Experiments 1 and 2, 40 participants` the 40 counts.
        let is_number = |w: &String| w.starts_with(|c: char| c.is_ascii_digit());
        let joins = |w: &String| matches!(w.as_str(), "and" | "or" | "to");
        let mut first = at;
        let mut joined = false;
        for p in (at.saturating_sub(MAX_LABEL_LIST)..at).rev() {
            let w = &self.words[p];
            if is_number(w) {
                first = p;
            } else if joins(w) {
                joined = true;
            } else {
                let closed = joined && is_number(&self.words[at - 1]);
                return first < at
                    && !closed
                    && plural(w)
                    && p + 1 == first
                    && written_after(w, &self.words[first]);
            }
        }
        false
    }
}

/// Words back from a number within which the plural that heads its list may stand (`Bouts 1,
/// 2, 3, and 4`).
const MAX_LABEL_LIST: usize = 8;

/// How much a sentence of a section of `kind` is worth for design parameters; `None`: never
/// shown. `has_methods`: the paper has a detected methods section, so the introduction and
/// discussion, which describe other studies ("a computer mouse, where hand movements are
/// transformed..."), are left out; without one, section detection may have failed, and they
/// are kept at a low weight rather than losing the paper's text.
fn section_weight(kind: Option<&SectionKind>, has_methods: bool) -> Option<i32> {
    use SectionKind::*;
    Some(match kind {
        None => 1, // the title page: abstract, often the sample
        Some(Methods | Participants | Procedure) => 3,
        Some(Abstract) => 1,
        Some(Other(_)) => 1,
        Some(Results) => 0,
        Some(Introduction | Discussion | Conclusion) if has_methods => return None,
        Some(Introduction | Discussion | Conclusion) => -2,
        Some(Acknowledgments | References) => return None,
    })
}

const ABBREVIATIONS: [&str; 16] = [
    "al", "e.g", "i.e", "fig", "figs", "eq", "exp", "vs", "approx", "ca", "cf", "no", "ref",
    "resp", "dr", "ms",
];

fn ends_abbreviation(before: &str) -> bool {
    let word: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '.')
        .collect::<String>()
        .chars()
        .rev()
        .collect::<String>()
        .to_lowercase();
    let word = word.trim_end_matches('.');
    ABBREVIATIONS.contains(&word) || (word.len() == 1 && word.chars().all(char::is_alphabetic))
}

/// Whether the paper has a detected methods section (see [`section_weight`]).
fn has_methods(doc: &Document) -> bool {
    doc.sections.iter().any(|s| {
        matches!(
            s.kind,
            SectionKind::Methods | SectionKind::Participants | SectionKind::Procedure
        )
    })
}

/// The median length in characters of the non-blank lines of `text`: a full line of this
/// document's layout (one or two columns, a manuscript's wide lines).
fn median_line_chars(text: &str) -> usize {
    let mut lens: Vec<usize> = text
        .lines()
        .map(|l| l.trim().chars().count())
        .filter(|&n| n > 0)
        .collect();
    if lens.is_empty() {
        return 0;
    }
    let mid = lens.len() / 2;
    *lens.select_nth_unstable(mid).1
}

/// Whether the blank line at byte `at` of `text` ends a sentence. PDF text puts a blank line
/// at every page and column break, and a double-spaced manuscript after every line, so a
/// blank line alone does not: it does after sentence-final punctuation, before a lower-case
/// continuation it never does, and otherwise only after a short line (a heading, a table
/// row): a full-width line that ends in a word or comma runs on (`were recruited for` /
/// `Experiment 1, and 26 subjects…`).
fn blank_line_ends_sentence(text: &str, at: usize, full_line: usize) -> bool {
    let before = text[..at].trim_end();
    let line = before.rsplit('\n').next().unwrap_or(before).trim();
    if line.is_empty() || line.ends_with(['.', '?', '!', ':', ';']) {
        return true;
    }
    if text[at..]
        .trim_start()
        .chars()
        .next()
        .is_some_and(char::is_lowercase)
    {
        return false;
    }
    line.chars().count() * 10 < full_line * 7
}

/// Where a section's heading line starts and where the text after it starts (sorted byte
/// offsets): a sentence never runs across them. A heading followed by a single line break
/// would otherwise start the sentence after it (`Experiment 1: Cursor and Scalar feedback` /
/// `Materials and Methods` / `Participants` / `Twenty-four participants … were recruited`),
/// and that sentence would take the section of the heading's start: the introduction's, and
/// be dropped with it.
fn heading_bounds(doc: &Document) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    for s in &doc.sections {
        out.push(s.start);
        if let Some(nl) = doc.text.get(s.start..).and_then(|t| t.find('\n')) {
            out.push(s.start + nl + 1);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The paper's sentences, in order, without references and acknowledgements.
pub fn sentences(doc: &Document) -> Vec<Sentence> {
    let text = &doc.text;
    let full_line = median_line_chars(text);
    let headings = heading_bounds(doc);
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let bytes = text.as_bytes();
    let mut s = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let boundary = if matches!(b, b'.' | b'?' | b'!') {
            let next_ws = bytes.get(i + 1).is_some_and(|c| c.is_ascii_whitespace());
            let after = text[i + 1..].trim_start();
            let starts = after
                .chars()
                .next()
                .is_some_and(|c| c.is_uppercase() || c.is_ascii_digit() || c == '(');
            next_ws && starts && !(b == b'.' && ends_abbreviation(&text[s..i]))
        } else {
            b == b'\n'
                && (headings.binary_search(&(i + 1)).is_ok()
                    || bytes.get(i + 1) == Some(&b'\n')
                        && blank_line_ends_sentence(text, i, full_line))
        };
        if boundary {
            cuts.push((s, i + 1));
            s = i + 1;
        }
        i += 1;
    }
    if s < text.len() {
        cuts.push((s, text.len()));
    }
    let has_methods = has_methods(doc);
    let mut out = Vec::new();
    for (a, b) in cuts {
        let raw = &text[a..b];
        let lead = raw.len() - raw.trim_start().len();
        let (a, raw) = (a + lead, raw.trim());
        let is_heading = |s: &crate::pdf::Section| {
            s.start == a && crate::run::prompt::sanitize(raw).eq_ignore_ascii_case(&s.heading)
        };
        if doc.sections.iter().any(is_heading) {
            continue; // a heading line, no sentence
        }
        let weight = section_weight(doc.section_at(a).map(|s| &s.kind), has_methods);
        let Some(weight) = weight else { continue };
        for (pa, pb) in pieces(raw, MAX_SENTENCE_CHARS) {
            let piece = &raw[pa..pb];
            if piece.chars().count() < MIN_SENTENCE_CHARS {
                continue;
            }
            let shown = crate::run::prompt::sanitize(piece);
            let (words, marks) = evidence::words_and_marks(&without_citations(piece));
            out.push(Sentence {
                start: a + pa,
                end: a + pb,
                words,
                marks,
                text: shown,
                weight,
                row_of: None,
            });
        }
    }
    out
}

/// Longest caption shown before a table row (cut at a word boundary): enough for its subject
/// (`Table 1. Overview of included and excluded participants …`), leaving room for the cells.
const MAX_CAPTION_CHARS: usize = 90;

/// `sentences` with the rows of the paper's column-wise tables (see [`crate::run::tables`])
/// added where their table stands. Each row reads as one sentence: the caption's start, the
/// row's label and each cell after its column header (`Table 1. Overview of … participants …,
/// Experiment 2: n Analyzed 20; Men 4; Age, yr 21 (19; 30)`), with the whole table as its
/// span. Headers lose their bracketed notes (`Age, yr [mean (min; max)]` is `Age, yr`), so a
/// cell stands next to its header's words; cells that would take the row past
/// `MAX_SENTENCE_CHARS` are left out, the first columns kept. A row whose label names an
/// experiment (`Experiment` / `2`, or a cell `Exp. 2`) is that experiment's own.
pub fn with_table_rows(
    doc: &Document,
    lexicon: &crate::schema::Lexicon,
    mut all: Vec<Sentence>,
) -> Vec<Sentence> {
    let has_methods = has_methods(doc);
    for row in crate::run::tables::rows(&doc.text) {
        let Some(weight) = section_weight(doc.section_at(row.start).map(|s| &s.kind), has_methods)
        else {
            continue;
        };
        let (head, cell) = (&row.label.0, &row.label.1);
        let row_of = experiment_label(lexicon, head, cell);
        let label = match row_of {
            Some(n) if cell.parse::<u32>().is_ok() => format!("{head} {n}"),
            _ => cell.clone(),
        };
        let mut text = format!("{}, {label}:", cut_at_word(&row.caption, MAX_CAPTION_CHARS));
        let mut first = true;
        for (h, c) in &row.cells {
            let part = format!("{} {}", without_brackets(h), c);
            if text.chars().count() + part.chars().count() + 2 > MAX_SENTENCE_CHARS {
                break;
            }
            text.push_str(if first { " " } else { "; " });
            text.push_str(&part);
            first = false;
        }
        if first {
            continue; // not even one cell fits
        }
        let shown = crate::run::prompt::sanitize(&text);
        let (words, marks) = evidence::words_and_marks(&shown);
        all.push(Sentence {
            start: row.start,
            end: row.end,
            words,
            marks,
            text: shown,
            weight,
            row_of,
        });
    }
    all.sort_by_key(|s| s.start);
    all
}

/// The experiment a table row's label names: a heading word over a column of numbers
/// (`Experiment` / `2`), or a cell that is a heading (`Exp. 3`).
fn experiment_label(lexicon: &crate::schema::Lexicon, head: &str, cell: &str) -> Option<u32> {
    let is_word = |w: &str| {
        lexicon
            .label_words
            .contains(&w.trim_end_matches(['.', ':']).to_lowercase())
    };
    if is_word(head.trim()) {
        if let Ok(n) = cell.trim().parse::<u32>() {
            return Some(n);
        }
    }
    let mut words = cell.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(w), Some(n), None) if is_word(w) => n.parse().ok(),
        _ => None,
    }
}

/// `s` without its bracketed parts (`Age, yr [mean (min; max)]` → `Age, yr`).
fn without_brackets(s: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in s.chars() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `s` cut to at most `max` characters at a word boundary, with `…` where it was cut.
fn cut_at_word(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out = String::new();
    for w in s.split_whitespace() {
        if out.chars().count() + w.chars().count() + 1 > max {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out.push('…');
    out
}

/// Longest parenthesis read as a citation.
const MAX_CITATION_CHARS: usize = 300;

/// `s` with its parenthesized citations blanked (`(Green et al., 2010)`, `(Oldfield, 1971;
/// Kim et al., 2018a)`, `(2010)`): a citation's year is never a value, and its author names
/// never a cue. A parenthesis is a citation when it holds a year (four digits from 1900 to
/// 2099, a letter allowed after) beside a name, or only the year.
fn without_citations(s: &str) -> std::borrow::Cow<'_, str> {
    let is_year = |t: &str| {
        let t = t.trim_end_matches(|c: char| c.is_ascii_lowercase());
        t.len() == 4
            && t.chars().all(|c| c.is_ascii_digit())
            && (t.starts_with("19") || t.starts_with("20"))
    };
    let mut blank: Vec<(usize, usize)> = Vec::new();
    for (open, _) in s.match_indices('(') {
        let rest = &s[open + 1..];
        let Some(close) = rest.find([')', '(']) else {
            continue;
        };
        if !rest[close..].starts_with(')') || close > MAX_CITATION_CHARS {
            continue;
        }
        let inner = &rest[..close];
        let tokens: Vec<&str> = inner
            .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';'))
            .filter(|t| !t.is_empty())
            .collect();
        let years = tokens.iter().filter(|t| is_year(t)).count();
        let named = tokens
            .iter()
            .any(|t| t.chars().next().is_some_and(char::is_uppercase));
        if years > 0 && (named || tokens.len() == years) {
            blank.push((open, open + 1 + close + 1));
        }
    }
    if blank.is_empty() {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for (a, b) in blank {
        out.push_str(&s[at..a]);
        out.push(' ');
        at = b;
    }
    out.push_str(&s[at..]);
    std::borrow::Cow::Owned(out)
}

/// `s` cut into pieces of at most `max` characters at spaces (byte ranges).
fn pieces(s: &str, max: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < s.len() {
        let rest = &s[start..];
        if rest.chars().count() <= max {
            out.push((start, s.len()));
            break;
        }
        let limit = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let cut = rest[..limit].rfind(' ').filter(|&c| c > 0).unwrap_or(limit);
        out.push((start, start + cut));
        start += cut;
        while s[start..].starts_with(' ') {
            start += 1;
        }
    }
    out
}

/// What a sentence offers as the value of a field: the alternatives of its answer grammar.
/// `numbers` are whole items (`500 ms`, `45°`, `8 targets`, `24`), each a number of the
/// sentence with the unit the sentence writes after it; `terms` are vocabulary terms the
/// sentence gives a cue for.
#[derive(Debug, Clone, PartialEq, Default)]
struct Options {
    numbers: Vec<String>,
    /// For locations: counts (`8 targets`) apart from directions (`45°`).
    counts: Vec<String>,
    terms: Vec<String>,
    /// For number sets: the runs of two or more offered items that the sentence writes as one
    /// list (`7.5°, 45°, or 95°`), in its order. Not offered on their own: see
    /// [`completed_list`].
    lists: Vec<Vec<String>>,
}

impl Options {
    fn is_empty(&self) -> bool {
        self.numbers.is_empty() && self.counts.is_empty() && self.terms.is_empty()
    }
}

/// Words that make a number a value of `field` when they stand near it, on either side.
fn near_words(field: &Field) -> Vec<&str> {
    if !field.near.is_empty() {
        return field.near.iter().map(String::as_str).collect();
    }
    let strict = !field.near_before.is_empty() || !field.near_after.is_empty();
    let mut out: Vec<&str> = Vec::new();
    for u in &field.units {
        out.push(&u.symbol);
        out.extend(u.aliases.iter().map(String::as_str));
    }
    if let FieldKind::Locations { count_words } = &field.kind {
        out.extend(count_words.iter().map(String::as_str));
    }
    if out.is_empty() && !strict {
        out.extend(field.cues.iter().map(String::as_str));
    }
    out
}

/// Which numbers of a sentence stand near enough to `field`'s words to be its value (indices
/// into `words`). `numbers` are the positions of every number of the sentence. A `near_before`
/// or `near_after` word binds only to the number on its side with nothing between them but
/// content words (`80 human subjects`, `n = 20`): another number or a function word (`1 SEM
/// over participants`, `7 trials across subjects`) breaks the bond.
fn near_numbers(
    field: &Field,
    s: &Sentence,
    numbers: &[usize],
    ranges: &[(usize, usize)],
) -> Vec<usize> {
    let words = &s.words;
    let either: Vec<usize> = near_words(field)
        .iter()
        .flat_map(|w| evidence::phrase_positions(words, w))
        .collect();
    let bound = bound_numbers(field, s, numbers, ranges);
    numbers
        .iter()
        .copied()
        .filter(|&at| {
            bound.contains(&at)
                || either
                    .iter()
                    .any(|&p| p != at && p + NEAR_WINDOW >= at && p <= at + NEAR_WINDOW)
        })
        .collect()
}

/// The numbers of a sentence that a `near_before` or `near_after` word binds (see
/// `near_numbers`): so tightly that a unitless one is still this field's (`rotated 45
/// counter-clockwise`, where the PDF lost the degree sign).
fn bound_numbers(
    field: &Field,
    s: &Sentence,
    numbers: &[usize],
    ranges: &[(usize, usize)],
) -> Vec<usize> {
    let tied = tied_numbers(field, s, numbers, &field.near_before, &field.near_after);
    // The other end of a range (`18-22 years`, `aged 18 to 22`) binds with the bound end.
    numbers
        .iter()
        .copied()
        .filter(|&n| {
            tied.contains(&n)
                || ranges
                    .iter()
                    .any(|&(a, b)| (a == n && tied.contains(&b)) || (b == n && tied.contains(&a)))
        })
        .collect()
}

/// The numbers that a phrase of `before` stands before, or a phrase of `after` after, with
/// nothing between them but content words: another number or a function word (`1 SEM over
/// participants`) breaks the bond, and so does a clause mark. A colon ends only the bond to
/// the words after it: it introduces what follows (`Participants: 24` binds), so a number
/// before it is not theirs (`two action effects: Participants were…`); a semicolon ends both.
fn tied_numbers(
    field: &Field,
    s: &Sentence,
    numbers: &[usize],
    before: &[String],
    after: &[String],
) -> Vec<usize> {
    let words = &s.words;
    // (first word, one past the last word) of each occurrence of each phrase
    let spans = |list: &[String]| -> Vec<(usize, usize)> {
        list.iter()
            .flat_map(|w| {
                let len = evidence::words(w).len();
                evidence::phrase_positions(words, w)
                    .into_iter()
                    .map(move |p| (p, p + len))
            })
            .collect()
    };
    let before = spans(before);
    let after = spans(after);
    // Whether the words strictly between `a` and `b` leave a number bound to a phrase; a
    // semicolon always ends the bond, a colon only with `colon_ends` (a number before the
    // phrase).
    let bound = |a: usize, b: usize, colon_ends: bool| {
        b > a
            && b - a <= NEAR_WINDOW
            && !numbers.iter().any(|&n| a < n && n < b)
            && !words[a + 1..b].iter().any(|w| field.is_stopword(w))
            && !s
                .marks
                .iter()
                .any(|&(k, m)| a < k && k <= b && (colon_ends || m == evidence::Mark::Semicolon))
    };
    numbers
        .iter()
        .copied()
        .filter(|&at| {
            before
                .iter()
                .any(|&(_, end)| end <= at && bound(end - 1, at, false))
                || after.iter().any(|&(start, _)| bound(at, start, true))
        })
        .collect()
}

/// The numbers of a list of two or more (positions in `words`) that holds none of the `bound`
/// numbers, in a sentence that binds one: the list stands beside the field's value, not in it
/// (`a 30° visuomotor rotation was introduced to one of eight locations: 0°, 45°, 90°, …`
/// lists directions, not sizes of the rotation). Items of one list have nothing between them
/// but what [`Field::joins_list`] accepts (`15°, 30°, and 45° CW`). With no bound number the
/// sentence does not say which numbers are the field's, and nothing is set aside.
fn unbound_lists(
    field: &Field,
    words: &[String],
    numbers: &[usize],
    bound: &[usize],
) -> Vec<usize> {
    if bound.is_empty() {
        return Vec::new();
    }
    joined_runs(field, words, numbers)
        .into_iter()
        .filter(|run| run.len() >= 2 && !run.iter().any(|n| bound.contains(n)))
        .flatten()
        .collect()
}

/// `positions` (increasing places in `words`) cut into runs whose neighbours have nothing
/// between them but what [`Field::joins_list`] accepts: the lists a sentence writes
/// (`15°, 30°, and 45° CW`), a lone number being a run of one.
fn joined_runs(field: &Field, words: &[String], positions: &[usize]) -> Vec<Vec<usize>> {
    let mut runs: Vec<Vec<usize>> = Vec::new();
    for &at in positions {
        match runs.last_mut() {
            Some(run)
                if run.last().is_some_and(|&prev| {
                    words[prev + 1..at].iter().all(|w| field.joins_list(w))
                }) =>
            {
                run.push(at)
            }
            _ => runs.push(vec![at]),
        }
    }
    runs
}

/// The pairs of numbers (positions in `words`, the words of `text`) written as a range, the
/// first the smaller: joined by a dash in `text` (`18-22`, `18 – 22`), by `to` (`18 to 22`),
/// or `between` (`between the ages of 18 and 22`). A comma is no joiner (`mean age 21, 30 women`), and a number ends
/// at most one range (`20-25-30` is no pair of ranges).
fn range_pairs(text: &str, words: &[String], numbers: &[usize]) -> Vec<(usize, usize)> {
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for w in numbers.windows(2) {
        let (a, b) = (w[0], w[1]);
        if pairs.last().is_some_and(|&(_, end)| end == a) {
            continue;
        }
        let joined = (b == a + 1 && dash_joined(text, &words[a], &words[b]))
            || (b == a + 2 && words[a + 1] == "to")
            || (b == a + 2
                && words[a + 1] == "and"
                && words[a.saturating_sub(NEAR_WINDOW)..a]
                    .iter()
                    .any(|w| w == "between"));
        let rising = match (words[a].parse::<f64>(), words[b].parse::<f64>()) {
            (Ok(x), Ok(y)) => x < y,
            _ => false,
        };
        if joined && rising {
            pairs.push((a, b));
        }
    }
    pairs
}

/// Whether `text` writes the number `x`, a dash (with or without spaces), then the number
/// `y`, each whole (`118-22` holds no `18-22`).
fn dash_joined(text: &str, x: &str, y: &str) -> bool {
    const DASHES: [char; 5] = ['-', '\u{2010}', '\u{2013}', '\u{2014}', '\u{2212}'];
    let lower = text.to_lowercase();
    lower.match_indices(x).any(|(i, _)| {
        let whole_start = lower[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric() && c != '.');
        let rest = lower[i + x.len()..].trim_start();
        let Some(after_dash) = rest.strip_prefix(DASHES) else {
            return false;
        };
        let after_dash = after_dash.trim_start();
        whole_start
            && after_dash.starts_with(y)
            && after_dash[y.len()..]
                .chars()
                .next()
                .is_none_or(|c| !c.is_ascii_digit())
    })
}

/// The numbers (positions in `words`) that bound a span of directions: two numbers with only
/// `to` and the field's unit spellings between them (`generalization targets spanned −45° to
/// 135°`, `targets from 0° to 180°`). A span names an arc, not the targets on it: its ends are
/// no target directions of their own.
fn span_ends(field: &Field, words: &[String], numbers: &[usize]) -> Vec<usize> {
    numbers
        .windows(2)
        .filter(|pair| {
            let between: Vec<&String> = words[pair[0] + 1..pair[1]]
                .iter()
                .filter(|w| field.unit_factor(w).is_none())
                .collect();
            matches!(between.as_slice(), [w] if *w == "to")
        })
        .flat_map(|pair| [pair[0], pair[1]])
        .collect()
}

/// Words either side of a number within which a `near` word makes it this field's.
const NEAR_WINDOW: usize = 4;

/// The unit symbol of `field` that the word after a number spells, if any.
fn unit_after(field: &Field, words: &[String], at: usize) -> Option<String> {
    let next = words.get(at + 1)?;
    field.units.iter().find_map(|u| {
        let hit = std::iter::once(&u.symbol)
            .chain(&u.aliases)
            .any(|a| evidence::words(a).first() == Some(next));
        hit.then(|| unit_text(&u.symbol))
    })
}

/// How a unit symbol follows its number in a value: `45°`, `500 ms`.
fn unit_text(symbol: &str) -> String {
    if symbol.chars().all(char::is_alphabetic) {
        format!(" {symbol}")
    } else {
        symbol.to_string()
    }
}

fn push_new(v: &mut Vec<String>, item: String) {
    if !v.contains(&item) {
        v.push(item);
    }
}

/// Whether the number at `at` may be a value at all: not a quantity in a unit the field does
/// not have (schema `measure_words`: `a 45° rotation, participants…` is no count, `85%` no
/// angle, `for 1 s. Participants…` no count), and not a spread (`7.2 ± 1.8`, `SD 3.24`)
/// unless the field reads spreads (labels, which need the sentence's text, are
/// [`Sentence::is_label`]). A spread sign (`±`, `+/-`) makes a
/// spread only after a number: with no number before it, it is the number's sign (`a
/// rotation of ± 0°, 2°, 4°`, `(±9.3°)`).
fn own_number(field: &Field, words: &[String], at: usize) -> bool {
    if words
        .get(at + 1)
        .is_some_and(|w| field.is_foreign_measure(w))
    {
        return false;
    }
    let Some(p) = at.checked_sub(1) else {
        return true;
    };
    let prev = &words[p];
    if !field.is_foreign_spread(prev) {
        return true;
    }
    let is_sign = !prev.chars().any(char::is_alphabetic);
    let after_number = p
        .checked_sub(1)
        .and_then(|q| words.get(q))
        .is_some_and(|w| w.starts_with(|c: char| c.is_ascii_digit()));
    is_sign && !after_number
}

/// Whether the number at `at` is a mean reported with its spread (`49° (SD 19)`, `12.5 ± 3.1`),
/// a spread that is not `field`'s own: a measured result, which states no design value
/// (`Total learning … was 49° (SD 19)` is no rotation size). The field's own words may still
/// bind it (`mean age 20.4 (SD 3.2)`, `rotated by 45 ± 5°`): the caller keeps those.
fn is_measured_mean(field: &Field, words: &[String], at: usize) -> bool {
    // Only a field whose own words can bind its value can tell a result from a design value; a
    // number after a sign is an item of a signed list (`±15°, ±30°`), no mean.
    if field.near_before.is_empty() && field.near_after.is_empty() {
        return false;
    }
    if at
        .checked_sub(1)
        .and_then(|p| words.get(p))
        .is_some_and(|w| !w.chars().any(char::is_alphabetic) && field.is_foreign_spread(w))
    {
        return false;
    }
    let unit_next =
        unit_after(field, words, at).is_some() || words.get(at + 1).is_some_and(|w| w == "°");
    let k = at + 1 + usize::from(unit_next);
    words.get(k).is_some_and(|w| field.is_foreign_spread(w))
}

/// A `number` field's offers with its ranges as a fallback: a range (`aged 18-34`) stands for
/// the value only where the sentence states no single number of the field inside it (`aged
/// 18-34; average 23 years` states the mean, 23), as a mean and the range it lies in are one
/// sample's two descriptions, and the mean is the more precise. A range with no number of its
/// own (another group's, `young adults aged 18-25 and older adults of mean age 68.4`) stays.
fn ranges_as_fallback(numbers: Vec<String>) -> Vec<String> {
    // (low, high) of a range item; `None` for a single number.
    let range = |v: &str| -> Option<(f64, f64)> {
        let cut = v.char_indices().skip(1).find(|&(_, c)| c == '-')?.0;
        Some((
            v[..cut].trim().parse().ok()?,
            v[cut + 1..].trim().parse().ok()?,
        ))
    };
    let singles: Vec<f64> = numbers
        .iter()
        .filter(|v| range(v).is_none())
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    numbers
        .into_iter()
        .filter(|v| range(v).is_none_or(|(lo, hi)| !singles.iter().any(|&x| lo <= x && x <= hi)))
        .collect()
}

/// What sentence `s` offers `field` for experiment `exp`, or `None` when the sentence may not
/// give this experiment's value (see [`eligible`]). A shared sentence offers a field stated
/// per experiment (`by_clause`: counts, ages) only from the experiment's own clause (see
/// [`clause_numbers`]).
fn offers(
    field: &Field,
    s: &Sentence,
    exp: &Experiment,
    others: &[&Experiment],
) -> Option<Options> {
    if !eligible(field, s, exp, others) {
        return None;
    }
    let shared = field.by_clause && !s.is_own(exp);
    Some(options(field, s, shared.then_some(exp.number)))
}

/// The numbers (positions in `words`) that a sentence naming experiments by label gives
/// experiment `number`: each number goes to the label on the side where the sentence puts its
/// labels, the nearest there: after the counts (`Eighty subjects were recruited for Experiment
/// 1, and 26 for Experiment 2`) or before them (`In Experiment 1, 80 subjects took part; in
/// Experiment 2, 26`). A number with no label on that side, or a sentence naming no
/// experiment, keeps every number.
fn clause_numbers(field: &Field, words: &[String], numbers: &[usize], number: u32) -> Vec<usize> {
    let labels: Vec<(usize, u32)> = words
        .windows(2)
        .enumerate()
        .filter(|(_, w)| field.is_label_word(&w[0]))
        .filter_map(|(p, w)| w[1].parse::<u32>().ok().map(|n| (p + 1, n)))
        .collect();
    let counts: Vec<usize> = numbers
        .iter()
        .copied()
        .filter(|at| !labels.iter().any(|(p, _)| p == at))
        .collect();
    let (Some(&(first_label, _)), Some(&first_count)) = (labels.first(), counts.first()) else {
        return numbers.to_vec();
    };
    let labels_lead = first_label < first_count;
    counts
        .into_iter()
        .filter(|&at| {
            let label = if labels_lead {
                labels.iter().rev().find(|(p, _)| *p < at)
            } else {
                labels.iter().find(|(p, _)| *p > at)
            };
            label.is_none_or(|&(_, n)| n == number)
        })
        .collect()
}

/// What sentence `s` offers `field`: the numbers and terms it states that may be its value;
/// with `clause`, only the numbers of that experiment's clause.
fn options(field: &Field, s: &Sentence, clause: Option<u32>) -> Options {
    let mut o = Options::default();
    let has_cue = field.cues.iter().any(|c| evidence::has_phrase(&s.words, c));
    let barred = field
        .never_with
        .iter()
        .any(|p| evidence::has_phrase(&s.words, p));
    if !has_cue || barred || field.states_other_work(&s.words) {
        // the sentence says nothing of this field, states a rule that is no value of it, or
        // speaks only of other work
        return o;
    }
    let lead = citation_lead(&s.text);
    let found: Vec<_> = evidence::numbers_at(&s.words)
        .into_iter()
        .filter(|(at, _)| *at >= lead)
        .collect();
    let at_all: Vec<usize> = found.iter().map(|(at, _)| *at).collect();
    let mine = clause.map(|n| clause_numbers(field, &s.words, &at_all, n));
    let all_ranges = range_pairs(&s.text, &s.words, &at_all);
    let near = near_numbers(field, s, &at_all, &all_ranges);
    let bound = bound_numbers(field, s, &at_all, &all_ranges);
    // A number field reads a range as one value (`18-22`): its ends alone are no value.
    let ranges: Vec<(usize, usize)> = match field.kind {
        FieldKind::Number { .. } => all_ranges
            .iter()
            .copied()
            .filter(|(a, b)| near.contains(a) && near.contains(b))
            .collect(),
        _ => Vec::new(),
    };
    let mut elsewhere = tied_numbers(
        field,
        s,
        &at_all,
        &field.not_near_before,
        &field.not_near_after,
    );
    if matches!(field.kind, FieldKind::Locations { .. }) {
        // The excluding words and spans set aside directions, never a count (`four targets
        // corresponding to the cardinal axes`, `4 to 8 targets`).
        elsewhere.extend(span_ends(field, &s.words, &at_all));
        elsewhere.retain(|&at| s.words.get(at + 1).is_some_and(|w| w == "°"));
    }
    if matches!(field.kind, FieldKind::NumberSet) {
        // A number written with the field's own unit and bound by the field's own words is a
        // quantity of that unit: the count noun after it (`30° rotation trials`) does not make
        // it a count. Unbound, the excluding words stand (`spaced in 90° increments`). (Target
        // directions, a `Locations` field, keep theirs excluded: `a 45° clockwise rotation`
        // is no target.)
        elsewhere.retain(|&at| !(unit_after(field, &s.words, at).is_some() && bound.contains(&at)));
    }
    // A range's ends stand or fall together (`increasing or decreasing by 1-2° on each
    // trial`).
    let partners: Vec<usize> = all_ranges
        .iter()
        .filter_map(
            |&(a, b)| match (elsewhere.contains(&a), elsewhere.contains(&b)) {
                (true, false) => Some(b),
                (false, true) => Some(a),
                _ => None,
            },
        )
        .collect();
    elsewhere.extend(partners);
    let beside = match field.kind {
        // A number word bound as a count (`one of three rotation sizes: 7.5°, 45°, or 95°`) is
        // no size, and sets no list aside: only digits can be the field's items, and only
        // those not excluded (`120 rotation trials at one of three sizes: 15°, 30°, or 60°`).
        FieldKind::NumberSet => {
            let digits: Vec<usize> = bound
                .iter()
                .copied()
                .filter(|&at| {
                    s.words[at].starts_with(|c: char| c.is_ascii_digit())
                        && !elsewhere.contains(&at)
                })
                .collect();
            unbound_lists(field, &s.words, &at_all, &digits)
        }
        _ => Vec::new(),
    };
    // The number-set items offered, by their place in `words`.
    let mut placed: Vec<(usize, String)> = Vec::new();
    for (at, n) in found {
        if !near.contains(&at)
            || !own_number(field, &s.words, at)
            || s.is_label(field, at)
            || (is_measured_mean(field, &s.words, at) && !bound.contains(&at))
            || elsewhere.contains(&at)
            || beside.contains(&at)
            || mine.as_ref().is_some_and(|m| !m.contains(&at))
        {
            continue;
        }
        match &field.kind {
            FieldKind::Integer => {
                if n.value.fract() == 0.0 && n.value > 0.0 {
                    push_new(&mut o.numbers, n.text);
                }
            }
            FieldKind::Number { .. } => {
                if let Some(&(_, b)) = ranges.iter().find(|(a, _)| *a == at) {
                    push_new(&mut o.numbers, format!("{}-{}", n.text, s.words[b]));
                } else if !ranges.iter().any(|&(_, b)| b == at) {
                    push_new(&mut o.numbers, n.text);
                }
            }
            FieldKind::NumberSet => {
                let item = if field.units.is_empty() {
                    Some(n.text)
                } else if let Some(u) = unit_after(field, &s.words, at) {
                    Some(format!("{}{u}", n.text))
                } else {
                    // Digits with no unit written, but bound to the field's words (a lost
                    // degree sign): the schema's unit. Number words (`two rotations`) never.
                    field
                        .units
                        .first()
                        .filter(|_| {
                            bound.contains(&at)
                                && s.words[at].starts_with(|c: char| c.is_ascii_digit())
                        })
                        .map(|first| format!("{}{}", n.text, unit_text(&first.symbol)))
                };
                if let Some(item) = item {
                    push_new(&mut o.numbers, item.clone());
                    placed.push((at, item));
                }
            }
            FieldKind::Locations { count_words } => {
                if s.words.get(at + 1).is_some_and(|w| w == "°") {
                    push_new(&mut o.numbers, format!("{}°", n.text));
                } else if n.value.fract() == 0.0 && n.value > 0.0 {
                    // A count names its noun with only content words between (`12
                    // off-cardinal locations`); `one of eight locations` picks one of them.
                    let counted = s.words.get(at + 1).is_none_or(|w| w != "of")
                        && tied_numbers(field, s, &at_all, &[], count_words).contains(&at);
                    if counted {
                        let word = count_words.first().map_or("targets", String::as_str);
                        push_new(&mut o.counts, format!("{} {word}", n.text));
                    }
                }
            }
            FieldKind::Category | FieldKind::FreeText => {}
        }
    }
    o.lists = written_lists(field, &s.words, &placed);
    if !counted_in_full(&o) {
        o.numbers.clear();
    }
    if matches!(field.kind, FieldKind::Number { .. }) {
        o.numbers = ranges_as_fallback(std::mem::take(&mut o.numbers));
    }
    if matches!(field.kind, FieldKind::Category | FieldKind::NumberSet) {
        let cued = evidence::cued_terms(field, &s.words);
        // A term whose narrower term the sentence also names is not offered beside it.
        let narrower_named = |t: &str| {
            field
                .vocabulary
                .iter()
                .any(|n| n.broader.as_deref() == Some(t) && cued.contains(&n.canonical.as_str()))
        };
        o.terms = cued
            .iter()
            .filter(|t| !narrower_named(t))
            .map(|t| t.to_string())
            .collect();
    }
    o
}

/// How many words at the start of a sentence are a citation mark: reference numbers that
/// the layout put after the previous sentence's full stop (`43 Patients with PFC lesions…`,
/// `10,11 As noted above, …`). Style guides never open a sentence with a numeral, so
/// numerals followed by a capitalized word are read as a mark, never as a value.
fn citation_lead(text: &str) -> usize {
    let prefix_len = text
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, ',' | '-' | '–' | ' ')))
        .unwrap_or(text.len());
    let (prefix, rest) = text.split_at(prefix_len);
    // A capital and a lower-case letter: a word (`As`), not an acronym (`PFC`). A unit such as
    // `60 Hz` reads as a word too, and no field reads it.
    let mut rest_chars = rest.chars();
    let capitalized = rest_chars.next().is_some_and(char::is_uppercase)
        && rest_chars.next().is_some_and(char::is_lowercase);
    if prefix.trim().is_empty() || !prefix.ends_with(' ') || !capitalized {
        return 0;
    }
    evidence::words(prefix).len()
}

/// The runs of two or more of the `placed` items (offered items by their place in `words`)
/// that have nothing between them but what [`Field::joins_list`] accepts: the sentence writes
/// them as one list (`± 0°, 4°, 8°, 16°, and 32°`).
fn written_lists(field: &Field, words: &[String], placed: &[(usize, String)]) -> Vec<Vec<String>> {
    let positions: Vec<usize> = placed.iter().map(|(at, _)| *at).collect();
    joined_runs(field, words, &positions)
        .into_iter()
        .map(|run| {
            let mut items: Vec<String> = Vec::new();
            for at in run {
                if let Some((_, item)) = placed.iter().find(|(p, _)| *p == at) {
                    push_new(&mut items, item.clone());
                }
            }
            items
        })
        .filter(|items| items.len() >= 2)
        .collect()
}

/// A number set's value made whole: where every item the model chose stands in one list its
/// quote writes, and in no other (`one of three rotation sizes: 7.5°, 45°, or 95°`), the
/// value is that list. A list of one field's quantities is the set the experiment used (the
/// schema asks for each one), and a small model tends to stop after the first item or two.
/// A sentence that hands its items out (`30° and 60° rotations, respectively`: schema
/// `distributive_words`), items from more than one list or from outside any, and a list
/// longer than [`MAX_ITEMS`] leave the value as chosen.
fn completed_list(field: &Field, s: &Sentence, value: String) -> String {
    if !matches!(field.kind, FieldKind::NumberSet) || field.distributes(&s.words) {
        return value;
    }
    let chosen: Vec<&str> = value.split(", ").map(str::trim).collect();
    let holding: Vec<Vec<String>> = options(field, s, None)
        .lists
        .into_iter()
        .filter(|list| chosen.iter().all(|c| list.iter().any(|i| i == c)))
        .collect();
    match holding.as_slice() {
        [list] if list.len() > chosen.len() && list.len() <= MAX_ITEMS => list.join(", "),
        _ => value,
    }
}

/// Whether the directions a sentence offers (`o.numbers`) are all the locations its count
/// names, or it names no count: `Eight target locations … spread from 82° to 98° with 2°
/// spacing, except skipping 90°` writes three angles of eight targets (a range's ends and a
/// gap), and only the count is the field's value; `one of four targets (45°, 135°, 225°,
/// 315°)` writes all four, and both agree.
fn counted_in_full(o: &Options) -> bool {
    if o.counts.is_empty() || o.numbers.is_empty() {
        return true;
    }
    o.counts.iter().any(|c| {
        c.split_whitespace()
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n == o.numbers.len())
    })
}

/// One question: an experiment, a field group, the sentences it shows, and its answer grammar.
#[derive(Debug, Clone, Serialize)]
pub struct Question {
    pub experiment: u32,
    pub group: String,
    /// The fields asked, in schema order.
    pub fields: Vec<String>,
    /// Indices into the paper's sentences, in the order shown (`[1]` is the first).
    pub shown: Vec<usize>,
    /// The question as the model reads it (after the paper).
    pub text: String,
    /// The answer's grammar (llguidance Lark).
    #[serde(skip)]
    pub grammar: String,
    /// Per field (as `fields`): the one value every offering sentence states, with the shown
    /// sentence (1-based) that states it alone where one does; `None` when the sentences
    /// offer nothing or disagree. See [`read_answer`].
    #[serde(skip)]
    pub sole_offers: Vec<Option<(usize, String)>>,
}

/// The item every offer of a field holds, when there is exactly one such item: with the
/// first sentence that offers only it (else the first that offers it).
fn sole_offer(offers: &[(usize, Options)]) -> Option<(usize, String)> {
    let items = |o: &Options| -> Vec<String> {
        o.numbers
            .iter()
            .chain(&o.counts)
            .chain(&o.terms)
            .cloned()
            .collect()
    };
    let (_, first) = offers.first()?;
    let common: Vec<String> = items(first)
        .into_iter()
        .filter(|i| offers.iter().all(|(_, o)| items(o).contains(i)))
        .collect();
    let [item] = common.as_slice() else {
        return None;
    };
    let at = offers
        .iter()
        .find(|(_, o)| items(o).len() == 1)
        .or(offers.first())
        .map(|(k, _)| *k)?;
    Some((at, item.clone()))
}

/// Fields of `schema` asked per group, groups in the order their first field appears.
pub fn groups(schema: &Schema) -> Vec<(String, Vec<&Field>)> {
    let mut out: Vec<(String, Vec<&Field>)> = Vec::new();
    for f in schema.parameters().filter(|f| f.scored) {
        let Some(g) = &f.group else { continue };
        match out.iter_mut().find(|(name, _)| name == g) {
            Some((_, fs)) => fs.push(f),
            None => out.push((g.clone(), vec![f])),
        }
    }
    out
}

/// Whether sentence `s` may give `field`'s value for experiment `exp`: it is not another
/// experiment's own text (its span, or a table row naming it) unless it opens by naming `exp`
/// (see [`subject_experiments`]), an own sentence that opens by naming only other experiments
/// is theirs, and a shared sentence that
/// names experiments by label (`For experiment 2, a 32° rotation was exchanged…`) speaks of
/// those and no others. A per-experiment count (`merge = "sum"`) is never inherited when
/// the paper gives its experiments their own text, unless the shared sentence names this
/// experiment (`Eighty subjects were recruited for Experiment 1, and 26 for Experiment 2`).
fn eligible(field: &Field, s: &Sentence, exp: &Experiment, others: &[&Experiment]) -> bool {
    if let Some(n) = s.row_of {
        return n == exp.number;
    }
    // A sentence about other experiments only is theirs wherever it stands (a caption `In
    // Experiment 2, clamped feedback was provided at 90°` that the layout put in Experiment
    // 1's text); a reference (`as in Experiment 1`) leaves it the text it stands in.
    let names = experiment_names(field, s);
    let about = subject_experiments(field, s, &names);
    if exp.owns(s.start) {
        return about.is_empty() || about.contains(&exp.number);
    }
    if others.iter().any(|o| o.owns(s.start)) {
        return about.contains(&exp.number);
    }
    let named: Vec<u32> = names.iter().map(|&(_, n)| n).collect();
    let names_another = named.iter().any(|n| others.iter().any(|o| o.number == *n));
    if names_another && !named.contains(&exp.number) {
        return false;
    }
    field.merge != crate::schema::Merge::Sum || exp.spans.is_empty() || named.contains(&exp.number)
}

/// The experiments a sentence names by a heading word and number (`Experiment 2`, `Exp. 2`):
/// `(position of the heading word, number)`, each number once.
fn experiment_names(field: &Field, s: &Sentence) -> Vec<(usize, u32)> {
    let mut out: Vec<(usize, u32)> = Vec::new();
    for at in 1..s.words.len() {
        if !field.is_label_word(&s.words[at - 1]) || !s.is_label(field, at) {
            continue;
        }
        if let Ok(n) = s.words[at].parse::<u32>() {
            if !out.iter().any(|&(_, m)| m == n) {
                out.push((at - 1, n));
            }
        }
    }
    out
}

/// The experiments a sentence names by label (see [`experiment_names`]).
fn named_experiments(field: &Field, s: &Sentence) -> Vec<u32> {
    experiment_names(field, s)
        .into_iter()
        .map(|(_, n)| n)
        .collect()
}

/// Words at the opening of a sentence within which an experiment's name makes the sentence
/// about it (`In Experiment 2, …`, `B, In Experiment 2, …`, `(C,D) Experiment 2: …`).
const SUBJECT_WINDOW: usize = 3;

/// The experiments a sentence is about: of those it names by label (`names`, see
/// [`experiment_names`]), the ones at its opening, within [`SUBJECT_WINDOW`] words, with no
/// reference word of the schema before the name (`As in Experiment 1, …`, `Similar to
/// Experiment 2, …` only refer to them). A name later in the sentence (`performed the task used in Experiment 2`) leaves
/// the sentence to the text it stands in.
fn subject_experiments(field: &Field, s: &Sentence, names: &[(usize, u32)]) -> Vec<u32> {
    names
        .iter()
        .copied()
        .filter(|&(at, _)| {
            at <= SUBJECT_WINDOW && !s.words[..at].iter().any(|x| field.is_label_reference(x))
        })
        .map(|(_, n)| n)
        .collect()
}

/// Whether `s` is experiment `exp`'s own statement for `field`: its own text, or a shared
/// sentence that names this experiment and no other.
fn speaks_for(field: &Field, s: &Sentence, exp: &Experiment) -> bool {
    s.is_own(exp) || named_experiments(field, s) == [exp.number]
}

/// The sentences worth showing for `field` in experiment `exp` (best first).
fn retrieve(
    field: &Field,
    all: &[Sentence],
    exp: &Experiment,
    others: &[&Experiment],
) -> Vec<usize> {
    let mut scored: Vec<(i32, usize)> = Vec::new();
    for (i, s) in all.iter().enumerate() {
        let Some(opts) = offers(field, s, exp, others) else {
            continue;
        };
        if opts.is_empty() {
            continue;
        }
        let cue_hits = field
            .cues
            .iter()
            .filter(|c| evidence::has_phrase(&s.words, c))
            .count() as i32;
        let score = 2 * cue_hits.min(3)
            + if opts.terms.is_empty() { 0 } else { 2 }
            + s.weight
            + if speaks_for(field, s, exp) { 3 } else { 0 };
        scored.push((score, i));
    }
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(PER_FIELD).map(|(_, i)| i).collect()
}

fn lit(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn alternatives(items: &[String]) -> String {
    items.iter().map(|s| lit(s)).collect::<Vec<_>>().join(" | ")
}

/// The value grammar of `field` over one sentence's options (rule `name`), or `None`.
fn value_rules(field: &Field, opts: &Options, name: &str, g: &mut String) -> Option<()> {
    let more = MAX_ITEMS - 1;
    let body = match &field.kind {
        FieldKind::Integer => {
            if opts.numbers.is_empty() {
                return None;
            }
            alternatives(&opts.numbers)
        }
        FieldKind::Number { .. } => {
            if opts.numbers.is_empty() {
                return None;
            }
            // Ranges are offered whole (`18-22`), so items only join as a list: one per group.
            let groups = MAX_GROUPS - 1;
            g.push_str(&format!("{name}_x: {}\n", alternatives(&opts.numbers)));
            format!("{name}_x (\", \" {name}_x){{0,{groups}}}")
        }
        FieldKind::NumberSet => {
            let items: Vec<String> = opts.numbers.iter().chain(&opts.terms).cloned().collect();
            if items.is_empty() {
                return None;
            }
            g.push_str(&format!("{name}_i: {}\n", alternatives(&items)));
            format!("{name}_i (\", \" {name}_i){{0,{more}}}")
        }
        FieldKind::Locations { .. } => {
            let mut alts = Vec::new();
            if !opts.numbers.is_empty() {
                g.push_str(&format!("{name}_x: {}\n", alternatives(&opts.numbers)));
                alts.push(format!("{name}_x (\", \" {name}_x){{0,{more}}}"));
            }
            if !opts.counts.is_empty() {
                alts.push(alternatives(&opts.counts));
            }
            if alts.is_empty() {
                return None;
            }
            alts.join(" | ")
        }
        FieldKind::Category => {
            if opts.terms.is_empty() {
                return None;
            }
            g.push_str(&format!("{name}_t: {}\n", alternatives(&opts.terms)));
            format!("{name}_t (\", \" {name}_t){{0,2}}")
        }
        FieldKind::FreeText => return None,
    };
    g.push_str(&format!("{name}: {body}\n"));
    Some(())
}

/// A number set's terms stand in for its numbers (`clamped` where a paper gives an error
/// clamp no size): where any sentence shown for the field states a number, the terms are not
/// offered, and a sentence that offered only terms offers nothing. Other kinds pass unchanged.
fn numbers_before_terms(field: &Field, stated: Vec<(usize, Options)>) -> Vec<(usize, Options)> {
    let any_number = stated.iter().any(|(_, o)| !o.numbers.is_empty());
    if !matches!(field.kind, FieldKind::NumberSet) || !any_number {
        return stated;
    }
    stated
        .into_iter()
        .map(|(si, o)| {
            let numbers_only = Options {
                terms: Vec::new(),
                ..o
            };
            (si, numbers_only)
        })
        .filter(|(_, o)| !o.is_empty())
        .collect()
}

/// What an experiment shares with the others is stated once, unless its own text says
/// otherwise: where a sentence that speaks for `exp` (see [`speaks_for`], or the experiment's
/// own clause of a shared sentence for a `by_clause` field) offers `field` a value, the shared
/// sentences of sections worth no more than its own (see `section_weight`) offer it nothing.
/// `age-matched controls and patients with cerebellar ataxia` in Experiment 3's own text
/// outranks the general `undergraduate students` of the shared methods.
/// `stated` holds (index into `shown`, offers) of sentences that offer something.
fn own_before_shared(
    field: &Field,
    exp: &Experiment,
    shown: &[usize],
    all: &[Sentence],
    stated: Vec<(usize, Options)>,
) -> Vec<(usize, Options)> {
    let own: Vec<bool> = stated
        .iter()
        .map(|(si, _)| {
            let s = &all[shown[*si]];
            speaks_for(field, s, exp)
                || (field.by_clause && named_experiments(field, s).contains(&exp.number))
        })
        .collect();
    let Some(best_own) = stated
        .iter()
        .zip(&own)
        .filter(|(_, &o)| o)
        .map(|((si, _), _)| all[shown[*si]].weight)
        .max()
    else {
        return stated;
    };
    // A shared sentence of a section worth more (the methods) still stands beside an own
    // sentence of the results: `we do not see a gradual increase in drift` is no schedule.
    stated
        .into_iter()
        .zip(own)
        .filter(|((si, _), o)| *o || all[shown[*si]].weight > best_own)
        .map(|(offer, _)| offer)
        .collect()
}

/// Builds the questions of one experiment: one per field group that has any sentence to show,
/// each showing at most `max_sentences` sentences.
pub fn questions_for(
    schema: &Schema,
    all: &[Sentence],
    exp: &Experiment,
    experiments: &[Experiment],
    max_sentences: usize,
) -> Vec<Question> {
    let others: Vec<&Experiment> = experiments
        .iter()
        .filter(|e| e.number != exp.number)
        .collect();
    let mut out = Vec::new();
    for (group, fields) in groups(schema) {
        let mut shown: Vec<usize> = Vec::new();
        for f in &fields {
            for i in retrieve(f, all, exp, &others) {
                if !shown.contains(&i) && shown.len() < max_sentences {
                    shown.push(i);
                }
            }
        }
        if shown.is_empty() {
            continue;
        }
        shown.sort_unstable();
        // Grammar: every field in order; each either null or one shown sentence and a value
        // made of that sentence's options.
        let mut g = String::new();
        let mut top = vec![lit("{")];
        let mut offered: Vec<Vec<(usize, Options)>> = Vec::new();
        for (fi, f) in fields.iter().enumerate() {
            if fi > 0 {
                top.push(lit(", "));
            }
            top.push(format!("f{fi}"));
            let mut alts: Vec<String> = Vec::new();
            let mut field_offers = Vec::new();
            let stated: Vec<(usize, Options)> = shown
                .iter()
                .enumerate()
                .filter_map(|(si, &i)| offers(f, &all[i], exp, &others).map(|o| (si, o)))
                .filter(|(_, o)| !o.is_empty())
                .collect();
            // Numbers before terms first: an own sentence's `clamped` must not set aside the
            // shared 45° that it would have given way to.
            let stated = own_before_shared(f, exp, &shown, all, numbers_before_terms(f, stated));
            for (si, opts) in stated {
                let name = format!("v{fi}_{si}");
                if value_rules(f, &opts, &name, &mut g).is_some() {
                    alts.push(format!(
                        "{} {name} {}",
                        lit(&format!("{}, \"value\": \"", si + 1)),
                        lit("\"}")
                    ));
                    field_offers.push((si + 1, opts));
                }
            }
            offered.push(field_offers);
            let head = lit(&format!("\"{}\": ", f.name));
            if alts.is_empty() {
                g.push_str(&format!("f{fi}: {head} \"null\"\n"));
            } else {
                g.push_str(&format!(
                    "f{fi}: {head} (\"null\" | {} ({}))\n",
                    lit("{\"sentence\": "),
                    alts.join(" | ")
                ));
            }
        }
        top.push(lit("}"));
        let grammar = format!("start: {}\n{g}", top.join(" "));
        let text = question_text(
            exp,
            experiments.len(),
            &group,
            &fields,
            &shown,
            all,
            &offered,
        );
        let sole_offers = offered.iter().map(|o| sole_offer(o)).collect();
        out.push(Question {
            experiment: exp.number,
            group,
            fields: fields.iter().map(|f| f.name.clone()).collect(),
            shown,
            text,
            grammar,
            sole_offers,
        });
    }
    out
}

fn question_text(
    exp: &Experiment,
    n_exps: usize,
    group: &str,
    fields: &[&Field],
    shown: &[usize],
    all: &[Sentence],
    offered: &[Vec<(usize, Options)>],
) -> String {
    let mut t = String::new();
    if n_exps > 1 {
        let label = if exp.label.is_empty() {
            String::new()
        } else {
            format!(" ({})", crate::run::prompt::sanitize(&exp.label))
        };
        t.push_str(&format!(
            "QUESTION about experiment {} of {n_exps}{label}, {group}.\n",
            exp.number
        ));
    } else {
        t.push_str(&format!("QUESTION about the experiment, {group}.\n"));
    }
    t.push_str("Sentences from the paper:\n");
    for (k, &i) in shown.iter().enumerate() {
        t.push_str(&format!("[{}] {}\n", k + 1, all[i].text));
    }
    t.push_str(
        "For each parameter, give the number of the sentence that states it for this \
experiment and the value exactly as that sentence states it; write null if no sentence states \
it.\n",
    );
    for (fi, f) in fields.iter().enumerate() {
        t.push_str(&format!("- {}\n", f.prompt_line()));
        if let Some(line) = offered.get(fi).and_then(|o| offer_line(o)) {
            t.push_str(&line);
        }
    }
    let example: Vec<String> = fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if i == 0 {
                format!("\"{}\": {{\"sentence\": 1, \"value\": \"...\"}}", f.name)
            } else {
                format!("\"{}\": null", f.name)
            }
        })
        .collect();
    t.push_str(&format!("Answer as JSON, e.g. {{{}}}", example.join(", ")));
    t
}

/// The line under a field that lists what each shown sentence offers for it (`[5] 45°`),
/// exactly the values its grammar allows: a small model then picks among stated values
/// instead of recalling them from a long context, and answers null far less often when a
/// sentence does state the value. `None` when no sentence offers anything.
fn offer_line(offers: &[(usize, Options)]) -> Option<String> {
    let parts: Vec<String> = offers
        .iter()
        .map(|(k, o)| {
            let items: Vec<&str> = o
                .numbers
                .iter()
                .chain(&o.counts)
                .chain(&o.terms)
                .map(String::as_str)
                .collect();
            format!("[{k}] {}", items.join(", "))
        })
        .collect();
    (!parts.is_empty()).then(|| format!("  stated: {}\n", parts.join("; ")))
}

/// The text of every question that does not depend on the paper: each group's fixed
/// sentences and field lines (what the job hash and the manifest's prompt hash cover).
pub fn template(schema: &Schema) -> String {
    let mut t = String::from(crate::run::prompt::SYSTEM);
    for q in group_templates(schema) {
        t.push('\n');
        t.push_str(&q);
    }
    t
}

/// Each group's question without sentences or offers: its fixed text, which every prompt of
/// that group holds (what `prompt::check_fits` counts before a model loads).
pub fn group_templates(schema: &Schema) -> Vec<String> {
    let exp = Experiment {
        number: 1,
        label: String::new(),
        spans: Vec::new(),
    };
    groups(schema)
        .into_iter()
        .map(|(group, fields)| question_text(&exp, 1, &group, &fields, &[], &[], &[]))
        .collect()
}

/// One field of an answer: the sentence (1-based, as shown) and the value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Cell {
    sentence: usize,
    value: String,
}

/// A value read from an answer, with the paper sentence it points at.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    pub field: String,
    pub value: String,
    /// Index into the paper's sentences.
    pub sentence: usize,
    /// The model wrote null, and the value is the one its shown sentences all state.
    pub sole_offer: bool,
}

/// Reads an answer to `q` (the grammar makes it parse; a cut answer keeps nothing).
///
/// A field the model left null takes its sole offer when its sentences have one (every
/// sentence shown for it states the same value): a small model often writes null beside a
/// sentence that plainly states the value (`a 45° counterclockwise rotation ... was imposed`
/// offered `45°`, answered null), and a value that each of its candidate sentences states,
/// quoted from one of them, is evidence by the same rule as a chosen one. The record marks it
/// `sole_offer`.
pub fn read_answer(q: &Question, text: &str) -> Result<Vec<Answered>> {
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
        .with_context(|| format!("the answer is not complete JSON: {:?}", preview(text)))?;
    let mut out = Vec::new();
    for (fi, f) in q.fields.iter().enumerate() {
        let cell = v.get(f).filter(|c| !c.is_null());
        let Some(cell) = cell else {
            let sole = q.sole_offers.get(fi).and_then(Option::as_ref);
            if let Some((k, value)) = sole {
                if let Some(&sentence) = k.checked_sub(1).and_then(|k| q.shown.get(k)) {
                    out.push(Answered {
                        field: f.clone(),
                        value: value.clone(),
                        sentence,
                        sole_offer: true,
                    });
                }
            }
            continue;
        };
        let cell: Cell =
            serde_json::from_value(cell.clone()).with_context(|| format!("field {f}: {cell}"))?;
        let Some(&sentence) = cell.sentence.checked_sub(1).and_then(|k| q.shown.get(k)) else {
            bail!(
                "field {f} points at sentence {} of {}",
                cell.sentence,
                q.shown.len()
            );
        };
        out.push(Answered {
            field: f.clone(),
            value: cell.value,
            sentence,
            sole_offer: false,
        });
    }
    Ok(out)
}

fn preview(text: &str) -> String {
    text.chars().take(200).collect()
}

/// The table form of a value: categories through the vocabulary (synonyms to canonical terms);
/// numbers as written (`500 ms` stays `500 ms`), so the cell still reads as its quote does.
/// A set (directions, magnitudes) holds each item once: the grammar lets the model repeat an
/// offered item, the set does not (`180°, 180°` is one direction).
pub fn table_value(field: &Field, raw: &str) -> String {
    match field.kind {
        FieldKind::Category => field.normalize(raw),
        _ if field.parse(raw).is_empty() => String::new(),
        FieldKind::Locations { .. } | FieldKind::NumberSet => {
            let mut items: Vec<&str> = Vec::new();
            for item in raw.split(", ").map(str::trim).filter(|i| !i.is_empty()) {
                if !items.contains(&item) {
                    items.push(item);
                }
            }
            items.join(", ")
        }
        _ => raw.trim().to_string(),
    }
}

/// Grounds the answers of one experiment: each value with its sentence as quote, checked by
/// the support rule; what fails is dropped with its reason.
pub fn ground(
    schema: &Schema,
    doc: &Document,
    all: &[Sentence],
    exp: &Experiment,
    answers: &[Answered],
    out: &mut crate::run::answer::Grounded,
) {
    use crate::run::answer::{
        page_of, DropReason, DroppedValue, GroundedExperiment, GroundedValue,
    };
    use crate::run::locate::Span;
    let starts: Vec<usize> = doc.pages.iter().map(|p| p.start).collect();
    let mut values = std::collections::BTreeMap::new();
    for a in answers {
        let Some(field) = schema.field(&a.field) else {
            continue;
        };
        let s = &all[a.sentence];
        let value = completed_list(field, s, table_value(field, &a.value));
        let drop = |reason, detail: Option<String>| DroppedValue {
            experiment: exp.number,
            field: a.field.clone(),
            value: a.value.clone(),
            quote: s.text.clone(),
            reason,
            detail,
        };
        if value.is_empty() {
            out.dropped.push(drop(DropReason::EmptyValue, None));
            continue;
        }
        if let Err(why) = evidence::support(field, &value, &s.text) {
            out.dropped
                .push(drop(DropReason::Unsupported, Some(why.to_string())));
            continue;
        }
        values.insert(
            a.field.clone(),
            GroundedValue {
                raw: a.value.clone(),
                value,
                quote: s.text.clone(),
                span: Span {
                    start: s.start,
                    end: s.end,
                },
                page: page_of(&starts, s.start),
                inherited: !exp.spans.is_empty() && !speaks_for(field, s, exp),
                sole_offer: a.sole_offer,
            },
        );
    }
    out.experiments.push(GroundedExperiment {
        experiment: exp.number,
        label: Some(exp.label.clone()).filter(|l| !l.is_empty()),
        values,
    });
}

/// An experiment whose own text says it repeats an earlier one (`the same as in Experiment
/// 1`) inherits that experiment's values for the fields it does not state itself, each with
/// the quote it came from and marked inherited. Per-experiment counts (`merge = "sum"`) are
/// never inherited.
pub fn inherit_repeated(
    schema: &Schema,
    doc: &Document,
    experiments: &[Experiment],
    out: &mut crate::run::answer::Grounded,
) {
    for exp in experiments {
        let Some(k) = crate::run::experiments::repeats(&doc.text, exp, &schema.experiments) else {
            continue;
        };
        let Some(source) = out.experiments.iter().find(|e| e.experiment == k).cloned() else {
            continue;
        };
        let Some(target) = out
            .experiments
            .iter_mut()
            .find(|e| e.experiment == exp.number)
        else {
            continue;
        };
        for (name, v) in source.values {
            let per_experiment = schema
                .field(&name)
                .is_some_and(|f| f.merge == crate::schema::Merge::Sum);
            if per_experiment || target.values.contains_key(&name) {
                continue;
            }
            let mut v = v;
            v.inherited = true;
            target.values.insert(name, v);
        }
    }
}

/// What the experiments of a paper share, stated once: an experiment that states no value for a
/// field the schema marks `inherit` (participant pool, apparatus) takes the nearest earlier
/// experiment's value, with the quote it came from, marked inherited. Its own statement always
/// wins, and later experiments never lend to earlier ones: papers state common methods first
/// and then say how each experiment differs.
pub fn inherit_shared(schema: &Schema, out: &mut crate::run::answer::Grounded) {
    let mut order: Vec<usize> = (0..out.experiments.len()).collect();
    order.sort_by_key(|&i| out.experiments[i].experiment);
    for f in schema.parameters().filter(|f| f.inherit) {
        let mut last: Option<crate::run::answer::GroundedValue> = None;
        for &i in &order {
            let values = &mut out.experiments[i].values;
            match values.get(&f.name) {
                Some(v) => last = Some(v.clone()),
                None => {
                    if let Some(v) = &last {
                        let mut v = v.clone();
                        v.inherited = true;
                        values.insert(f.name.clone(), v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdf::{Page, Section};

    fn doc(text: &str) -> Document {
        Document {
            path: "t.pdf".into(),
            sha256: String::new(),
            pages: vec![Page {
                number: 1,
                start: 0,
                end: text.len(),
            }],
            text: text.to_string(),
            sections: vec![Section {
                kind: SectionKind::Methods,
                heading: "Methods".into(),
                start: 0,
                end: text.len(),
            }],
            doi: None,
            title: None,
            authors: Vec::new(),
            year: None,
            page_errors: Vec::new(),
        }
    }

    /// A test paper as the run reads it: its sentences (table rows included) and experiments.
    fn paper(schema: &Schema, text: &str) -> (Document, Vec<Sentence>, Vec<Experiment>) {
        let d = doc(text);
        let all = with_table_rows(&d, schema.lexicon(), sentences(&d));
        let exps = crate::run::experiments::detect(&d.text, &schema.experiments);
        (d, all, exps)
    }

    #[test]
    fn sentences_split_at_ends_not_at_abbreviations() {
        let d = doc("Methods\nTwenty-four adults (e.g. students) took part, see Fig. 2. The cursor was rotated by 45°. Done here now.");
        let s = sentences(&d);
        let texts: Vec<&str> = s.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "Twenty-four adults (e.g. students) took part, see Fig. 2.",
                "The cursor was rotated by 45°.",
            ]
        );
        assert_eq!(
            &d.text[s[1].start..s[1].end],
            "The cursor was rotated by 45°."
        );
    }

    #[test]
    fn a_sentence_never_runs_across_a_section_heading() {
        let text = "Introduction\nPrior work used mirrors. We ask more.\n\nExperiment 1: Cursor feedback\nMaterials and Methods\nParticipants\nTwenty-four participants were recruited.\n";
        let at = |needle: &str| text.find(needle).expect("in the text");
        let section = |kind, heading: &str, start, end| Section {
            kind,
            heading: heading.into(),
            start,
            end,
        };
        let mut d = doc(text);
        d.sections = vec![
            section(
                SectionKind::Introduction,
                "Introduction",
                0,
                at("Materials"),
            ),
            section(
                SectionKind::Methods,
                "Materials and Methods",
                at("Materials"),
                at("Participants"),
            ),
            section(
                SectionKind::Participants,
                "Participants",
                at("Participants"),
                text.len(),
            ),
        ];
        let texts: Vec<String> = sentences(&d).into_iter().map(|s| s.text).collect();
        // The introduction is left out (the paper has methods); the participants' sentence is
        // its own, not the tail of the heading lines before it, which start in the introduction.
        assert_eq!(texts, vec!["Twenty-four participants were recruited."]);
    }

    #[test]
    fn a_blank_line_ends_a_sentence_only_where_the_sentence_ends() {
        // A double-spaced manuscript (a blank line after every line), a page break inside a
        // sentence, a heading, and a paragraph end.
        let d = doc("Participants and apparatus\n\nEighty human subjects [57 women, mean age 20.4 yrs.] were recruited for\n\n\
Experiment 1, and 26 subjects [18 women, mean age 19.7 yrs.] were recruited for Experiment\n\n\
2 from the research participation pool of the Department of Psychology at the University.\n\n\
In the Scalar feedback group, participants received online feedback of their hand position\n\n\
shown as a scalar point. Then a new paragraph starts here with full-width lines of text\n");
        let texts: Vec<String> = sentences(&d).into_iter().map(|s| s.text).collect();
        assert_eq!(texts[0], "Participants and apparatus");
        assert!(
            texts[1].starts_with("Eighty human subjects")
                && texts[1].contains("Experiment 1, and 26 subjects")
                && texts[1].ends_with("of Psychology at the University."),
            "{texts:?}"
        );
        assert_eq!(
            texts[2],
            "In the Scalar feedback group, participants received online feedback of their hand \
position shown as a scalar point."
        );
        assert_eq!(texts.len(), 4, "{texts:?}");
    }

    #[test]
    fn questions_offer_only_what_their_sentences_hold() -> Result<()> {
        let schema = Schema::load_default()?;
        let (_, all, exps) = paper(&schema, "Methods\nTwenty-four right-handed participants took part in the study. Participants moved a stylus on a digitizing tablet to one of 8 targets. The cursor was rotated by 45° after a delay of 500 ms.");
        let qs = questions_for(&schema, &all, &exps[0], &exps, MAX_SENTENCES);
        let part = qs
            .iter()
            .find(|q| q.group == "participants")
            .expect("participants");
        assert!(part
            .text
            .contains("[1] Twenty-four right-handed participants"));
        assert!(part.grammar.contains("\"24\""), "{}", part.grammar);
        assert!(
            !part.grammar.contains("\"45\""),
            "no number of another sentence in n_total"
        );
        let answer = r#"{"n_total": {"sentence": 1, "value": "24"}, "population_type": null, "age_mean": null, "age_sd": null, "handedness": {"sentence": 1, "value": "right"}}"#;
        let got = read_answer(part, answer)?;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].value, "24");
        assert_eq!(all[got[0].sentence].start, "Methods\n".len());
        assert!(read_answer(part, r#"{"n_total": {"sentence": 9, "value": "24"}}"#).is_err());
        Ok(())
    }

    fn offered(schema: &Schema, field: &str, text: &str) -> Options {
        let d = doc(text);
        let all = sentences(&d);
        options(schema.field(field).expect("field"), &all[0], None)
    }

    #[test]
    fn a_count_binds_to_the_noun_after_it() -> Result<()> {
        let schema = Schema::load_default()?;
        // `1` stands four words before `subjects`, but 26 is nearer: only 80 and 26 count.
        let o = offered(
            &schema,
            "n_total",
            "Eighty human subjects [57 women, mean age 20.1] were recruited for Experiment 1, and 26 subjects for Experiment 2.",
        );
        assert_eq!(o.numbers, vec!["80", "26"]);
        // A word that stands before: `n = 20`, `a total of 94`; a year is no count.
        let o = offered(
            &schema,
            "n_total",
            "A total of 94 participants (n = 20) took part (Smith 2010).",
        );
        assert_eq!(o.numbers, vec!["94", "20"]);
        // A group's size is no total.
        let o = offered(
            &schema,
            "n_total",
            "Experiment 1 compared two SPE conditions (n = 20 per group; total n = 60, 33 female, age range 18-25 years).",
        );
        assert_eq!(o.numbers, vec!["60"]);
        // A colon ends a number's bond to the words after it, not to those before it.
        let o = offered(
            &schema,
            "n_total",
            "Experiment 2 tested two different action effects: Participants (n = 17) moved a cursor.",
        );
        assert_eq!(o.numbers, vec!["17"]);
        let o = offered(
            &schema,
            "n_total",
            "In total, n: 24 right-handed students took part.",
        );
        assert_eq!(o.numbers, vec!["24"]);
        Ok(())
    }

    #[test]
    fn spreads_labels_and_citation_years_are_never_values() -> Result<()> {
        let schema = Schema::load_default()?;
        // An age is what age words bind, with the other end of its range; `28 Female` is no
        // age, and `SD 3.24` is a spread.
        let o = offered(
            &schema,
            "age_mean",
            "An additional thirty-six participants (28 Female, ages 18-22 years) were recruited.",
        );
        assert_eq!(o.numbers, vec!["18-22"]);
        // A range is one value; a mean beside it is the more precise one, and stands alone.
        let o = offered(
            &schema,
            "age_mean",
            "Thirty-four younger participants (aged 18 to 34; average 23 years; 11 males) took part.",
        );
        assert_eq!(o.numbers, vec!["23"]);
        // A comma is no dash: the mean is a value, the count of women none.
        let o = offered(
            &schema,
            "age_mean",
            "Twenty adults took part (mean age 21, 30 women in the pool).",
        );
        assert_eq!(o.numbers, vec!["21"]);
        let o = offered(
            &schema,
            "age_mean",
            "Participants were between the ages of 18 and 30 years.",
        );
        assert_eq!(o.numbers, vec!["18-30"]);
        // A share is never an age, first word of the sentence or not.
        let o = offered(&schema, "age_mean", "85% of participants were aged 25.");
        assert_eq!(o.numbers, vec!["25"]);
        let age = schema.field("age_mean").expect("age_mean in the schema");
        let quote = "Thirty-four younger participants (aged 18 to 34; average 23 years) took part.";
        assert!(evidence::support(age, &table_value(age, "18-34"), quote).is_ok());
        let o = offered(
            &schema,
            "age_mean",
            "Eighty human subjects [57 women, mean age 20.4 (SD 3.24) yrs.] were recruited.",
        );
        assert_eq!(o.numbers, vec!["20.4"]);
        // ... but the standard deviation field reads exactly that spread.
        let o = offered(
            &schema,
            "age_sd",
            "Eighty human subjects [57 women, mean age 20.4 (SD 3.24) yrs.] were recruited.",
        );
        assert_eq!(o.numbers, vec!["3.24"]);
        // With no number before it, `±` is a sign: every size of the list is offered.
        let o = offered(
            &schema,
            "perturbation_magnitude",
            "An angular rotation of ± 0°, 2°, 4°, 8°, and 16° was imposed on the cursor.",
        );
        assert_eq!(o.numbers, vec!["0°", "2°", "4°", "8°", "16°"]);
        let o = offered(
            &schema,
            "perturbation_magnitude",
            "The cursor was rotated (±9.3°) on miss trials.",
        );
        assert_eq!(o.numbers, vec!["9.3°"]);
        // A result's spread is no rotation size (nor is its unitless mean).
        let o = offered(
            &schema,
            "perturbation_magnitude",
            "All groups compensated for the rotation (Magnitude plus direction: 26.0 ± 2.5°).",
        );
        assert!(o.numbers.is_empty(), "{:?}", o.numbers);
        // An experiment's label is no count; a cited year is no count either.
        let o = offered(
            &schema,
            "n_total",
            "Experiment 1 Participants appeared overall able to compensate for the rotations.",
        );
        assert!(o.numbers.is_empty(), "{:?}", o.numbers);
        let o = offered(
            &schema,
            "n_total",
            "Due to agency in reaching (Green et al., 2010), people may be slow to update.",
        );
        assert!(o.numbers.is_empty(), "{:?}", o.numbers);
        assert_eq!(
            without_citations("as shown (Oldfield, 1971; Kim et al., 2018a) and (n = 20)."),
            "as shown   and (n = 20)."
        );
        Ok(())
    }

    /// The participants question's grammar of each experiment of a two-experiment paper.
    fn participants_grammars(schema: &Schema, text: &str) -> Vec<(u32, String)> {
        let (_, all, exps) = paper(schema, text);
        assert_eq!(exps.len(), 2, "{exps:?}");
        exps.iter()
            .map(|exp| {
                let qs = questions_for(schema, &all, exp, &exps, MAX_SENTENCES);
                let part = qs.iter().find(|q| q.group == "participants");
                (
                    exp.number,
                    part.map_or(String::new(), |q| q.grammar.clone()),
                )
            })
            .collect()
    }

    #[test]
    fn a_shared_sentence_gives_a_count_to_the_experiment_it_names() -> Result<()> {
        let schema = Schema::load_default()?;
        for (number, grammar) in participants_grammars(&schema, "Methods\nParticipants. Eighty human subjects were recruited for Experiment 1, and 26 subjects for Experiment 2. Twelve volunteers were recruited.\nExperiment 1\nThe cursor was rotated by 45° for all reaches to the target.\nExperiment 2\nThe cursor was rotated by 30° for all reaches to the target.\n") {
            // The sentence naming both experiments offers each the count of its clause ...
            let (mine, theirs) = if number == 1 { ("80", "26") } else { ("26", "80") };
            assert!(grammar.contains(&format!("\"{mine}\"")), "{grammar}");
            assert!(!grammar.contains(&format!("\"{theirs}\"")), "{grammar}");
            // ... a shared count that names none is no experiment's own.
            assert!(!grammar.contains("\"12\""), "{grammar}");
        }
        Ok(())
    }

    #[test]
    fn a_shared_sentence_gives_each_experiment_the_ages_of_its_clause() -> Result<()> {
        let schema = Schema::load_default()?;
        for (number, grammar) in participants_grammars(&schema, "Methods\nParticipants. Eighty human subjects [57 women, mean age 20.4 (SD 3.24) yrs.] were recruited for Experiment 1, and 26 subjects [18 women, mean age 19.69 (SD 1.35) yrs.] for Experiment 2.\nExperiment 1\nThe cursor was rotated by 45° for all reaches to the target.\nExperiment 2\nThe cursor was rotated by 30° for all reaches to the target.\n") {
            let (mine, theirs) = if number == 1 {
                (["20.4", "3.24"], ["19.69", "1.35"])
            } else {
                (["19.69", "1.35"], ["20.4", "3.24"])
            };
            for (m, t) in mine.iter().zip(theirs) {
                assert!(grammar.contains(&format!("\"{m}\"")), "{grammar}");
                assert!(!grammar.contains(&format!("\"{t}\"")), "{grammar}");
            }
        }
        Ok(())
    }

    #[test]
    fn a_table_row_gives_its_experiment_and_no_other_its_count_and_age() -> Result<()> {
        let schema = Schema::load_default()?;
        let (d, all, exps) = paper(
            &schema,
            "Methods\nNinety-four participants gave written informed consent.\n\n\
Table 1. Overview of included and excluded participants and trials for all experiments\n\n\
Experiment\n\n1\n2\n\nn Analyzed\n\n22\n20\n\nMen\n\n7\n4\n\n\
Age, yr [mean (min; max)]\n\n25 (20; 30)\n21 (19; 30)\n\n\
Experiment 1\nThe cursor was rotated by 45° for all reaches to the target.\n\
Experiment 2\nThe cursor was rotated by 30° for all reaches to the target.\n",
        );
        let rows: Vec<&Sentence> = all.iter().filter(|s| s.row_of.is_some()).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[1].text,
            "Table 1. Overview of included and excluded participants and trials for all \
experiments, Experiment 2: n Analyzed 20; Men 4; Age, yr 21 (19; 30)"
        );
        assert_eq!(exps.len(), 2, "{exps:?}");
        for exp in &exps {
            let qs = questions_for(&schema, &all, exp, &exps, MAX_SENTENCES);
            let part = qs
                .iter()
                .find(|q| q.group == "participants")
                .expect("a participants question");
            let (n, age, other_n) = if exp.number == 1 {
                ("22", "25", "20")
            } else {
                ("20", "21", "22")
            };
            let at = |field: &str| part.fields.iter().position(|f| f == field);
            let sole = |field: &str| {
                at(field)
                    .and_then(|i| part.sole_offers[i].clone())
                    .map(|(_, v)| v)
            };
            assert_eq!(sole("n_total").as_deref(), Some(n), "{}", part.text);
            assert_eq!(sole("age_mean").as_deref(), Some(age), "{}", part.text);
            assert!(
                !part.grammar.contains(&format!("\"{other_n}\"")),
                "{}",
                part.grammar
            );
            // The row is the experiment's own text, not an inherited one.
            let answers = read_answer(part, "{}")?;
            let mut out = crate::run::answer::Grounded::default();
            ground(&schema, &d, &all, exp, &answers, &mut out);
            let v = &out.experiments[0].values["n_total"];
            assert_eq!(v.value, n);
            assert!(!v.inherited);
            assert!(v
                .quote
                .contains(&format!("Experiment {}: n Analyzed {n}", exp.number)));
        }
        Ok(())
    }

    #[test]
    fn a_shared_sentence_naming_experiments_speaks_only_for_them() -> Result<()> {
        let schema = Schema::load_default()?;
        let (_, all, exps) = paper(&schema, "Methods\nAn angular rotation of ± 0°, 2°, 4°, 8°, and 16° was imposed on the cursor in Experiment 1. For experiment 2, a 32° rotation was exchanged for the 2° rotation, such that the rotations imposed were ± 0°, 4°, 8°, 16°, and 32°. The cursor was rotated by 45° in a pilot.\nExperiment 1\nTwenty participants reached to the targets.\nExperiment 2\nTen participants reached to the targets.\n");
        assert_eq!(exps.len(), 2, "{exps:?}");
        for exp in &exps {
            let qs = questions_for(&schema, &all, exp, &exps, MAX_SENTENCES);
            let q = qs
                .iter()
                .find(|q| q.group == "perturbation")
                .expect("a perturbation question");
            let (mine, theirs) = if exp.number == 1 {
                ("in Experiment 1", "For experiment 2")
            } else {
                ("For experiment 2", "in Experiment 1")
            };
            assert!(q.text.contains(mine), "{}", q.text);
            assert!(!q.text.contains(theirs), "{}", q.text);
            // A shared sentence that names no experiment is shown to both.
            assert!(q.text.contains("in a pilot"), "{}", q.text);
        }
        Ok(())
    }

    #[test]
    fn a_sentence_naming_a_kind_and_its_broader_term_offers_the_kind() -> Result<()> {
        let schema = Schema::load_default()?;
        let o = offered(
            &schema,
            "environment",
            "Subjects made planar reaching movements while holding onto the handle of a 2-link robotic manipulandum (KINARM End-Point, BKIN Technologies).",
        );
        assert_eq!(o.terms, vec!["kinarm"]);
        let o = offered(
            &schema,
            "environment",
            "Subjects made planar reaching movements while holding a robotic manipulandum.",
        );
        assert_eq!(o.terms, vec!["robot_manipulandum"]);
        Ok(())
    }

    #[test]
    fn a_count_goes_to_the_experiment_its_clause_names() -> Result<()> {
        let schema = Schema::load_default()?;
        let n_total = schema.field("n_total").expect("n_total");
        for text in [
            "Eighty human subjects were recruited for Experiment 1, and 26 subjects for Experiment 2.",
            "In Experiment 1, 80 subjects took part, and in Experiment 2, 26 subjects took part.",
        ] {
            let d = doc(text);
            let all = sentences(&d);
            let got = |n| options(n_total, &all[0], Some(n)).numbers;
            assert_eq!(got(1), vec!["80"], "{text}");
            assert_eq!(got(2), vec!["26"], "{text}");
        }
        Ok(())
    }

    #[test]
    fn target_counts_and_directions_are_what_the_targets_are() -> Result<()> {
        let schema = Schema::load_default()?;
        let o = offered(
            &schema,
            "number_of_locations",
            "On each trial, the target could appear in one of eight locations.",
        );
        assert_eq!(
            (o.counts, o.numbers),
            (vec!["8 targets".to_string()], vec![])
        );
        // A spacing is no direction; a selection (`one of two`) is no count.
        let o = offered(
            &schema,
            "number_of_locations",
            "In the 2T condition, one of two targets, separated by 180°, was presented at each trial.",
        );
        assert_eq!(
            (o.counts, o.numbers),
            (vec!["2 targets".to_string()], vec![])
        );
        let o = offered(
            &schema,
            "number_of_locations",
            "Participants reached to four targets spaced in 90° increments after a 45° clockwise rotation.",
        );
        assert_eq!(
            (o.counts, o.numbers),
            (vec!["4 targets".to_string()], vec![])
        );
        // A count the sentence's angles do not spell out in full is the value alone; angles
        // that list every target stand beside their count.
        let o = offered(
            &schema,
            "number_of_locations",
            "Eight target locations were again used, however, they were spread from 82° to 98° with 2° spacing, except skipping 90° (straight ahead).",
        );
        assert_eq!(
            (o.counts, o.numbers),
            (vec!["8 targets".to_string()], vec![])
        );
        let o = offered(
            &schema,
            "number_of_locations",
            "The target appeared at one of four locations (45°, 135°, 225° and 315°).",
        );
        assert_eq!(o.counts, vec!["4 targets".to_string()]);
        assert_eq!(o.numbers, vec!["45°", "135°", "225°", "315°"]);
        // A duration or a share before a target word is no count.
        for text in [
            "Once the stylus stayed in the start position for 200 msec, the target was displayed.",
            "Most reported aiming at the target (Magnitude plus direction: 85%; Direction only: 85%).",
        ] {
            let o = offered(&schema, "number_of_locations", text);
            assert!(o.is_empty(), "{text}: {o:?}");
        }
        let loc = schema
            .field("number_of_locations")
            .expect("number_of_locations in the schema");
        assert_eq!(table_value(loc, "180°, 0°, 180°"), "180°, 0°");
        Ok(())
    }

    #[test]
    fn a_null_takes_the_value_every_shown_sentence_states() -> Result<()> {
        let schema = Schema::load_default()?;
        let (_, all, exps) = paper(&schema, "Methods
Twenty healthy volunteers took part. Following baseline, a 45° counterclockwise rotation was imposed for 112 trials.");
        let qs = questions_for(&schema, &all, &exps[0], &exps, MAX_SENTENCES);
        let q = qs
            .iter()
            .find(|q| q.group == "perturbation")
            .expect("perturbation");
        let answer = r#"{"perturbation_class": {"sentence": 1, "value": "visuomotor_rotation"}, "perturbation_magnitude": null, "perturbation_schedule": null, "schedule_blocking": null}"#;
        let got = read_answer(q, answer)?;
        let by: std::collections::BTreeMap<&str, &Answered> =
            got.iter().map(|a| (a.field.as_str(), a)).collect();
        assert!(!by["perturbation_class"].sole_offer);
        assert_eq!(by["perturbation_magnitude"].value, "45°");
        assert!(by["perturbation_magnitude"].sole_offer);
        assert_eq!(by["perturbation_schedule"].value, "abrupt");
        assert!(
            all[by["perturbation_schedule"].sentence]
                .text
                .contains("imposed"),
            "quoted from the sentence that states it"
        );
        Ok(())
    }

    #[test]
    fn an_inflected_spelling_that_is_not_evidence_offers_nothing() -> Result<()> {
        let schema = Schema::load_default()?;
        let o = offered(
            &schema,
            "perturbation_schedule",
            "The payoffs between the left and right targets gradually shifted over the session.",
        );
        assert!(o.terms.is_empty(), "{:?}", o.terms);
        let o = offered(
            &schema,
            "perturbation_schedule",
            "The rotation was gradually increased by 1° every 8 trials.",
        );
        assert_eq!(o.terms, vec!["gradual"]);
        Ok(())
    }

    #[test]
    fn common_words_never_offer_a_term() -> Result<()> {
        let schema = Schema::load_default()?;
        // "years old" is no older-adult sample; a university pool is a healthy adult one.
        let o = offered(
            &schema,
            "population_type",
            "A total of 48 subjects (age range: 18-32 years old) were recruited from the research participation pool.",
        );
        assert_eq!(o.terms, vec!["healthy_adult"]);
        // A target order "randomized" is no random perturbation schedule; "imposed" is abrupt.
        let o = offered(
            &schema,
            "perturbation_schedule",
            "A 45° rotation was imposed for 112 trials, with target order randomized.",
        );
        assert_eq!(o.terms, vec!["abrupt"]);
        Ok(())
    }

    #[test]
    fn a_lost_degree_sign_is_restored_only_where_rotation_words_bind_the_number() -> Result<()> {
        let schema = Schema::load_default()?;
        let o = offered(
            &schema,
            "perturbation_magnitude",
            "The cursor was rotated 45 counter-clockwise relative to the hand, then a 30° rotation.",
        );
        assert_eq!(o.numbers, vec!["45°", "30°"]);
        // Unbound digits and number words stay out: no rotation of 45 or of 2 degrees here.
        let o = offered(
            &schema,
            "perturbation_magnitude",
            "Landmarks were spaced 45 apart during the rotation, and two rotations alternated.",
        );
        assert!(o.numbers.is_empty(), "{:?}", o.numbers);
        // The apparatus mirror is no mirror reversal.
        let o = offered(
            &schema,
            "perturbation_class",
            "A mirror was mounted halfway, and the visuomotor rotation began.",
        );
        assert_eq!(o.terms, vec!["visuomotor_rotation"]);
        Ok(())
    }

    #[test]
    fn a_count_of_trials_is_no_size_and_no_sample() -> Result<()> {
        let schema = Schema::load_default()?;
        // `48 rotation trials` counts trials: no 48° rotation.
        let o = offered(
            &schema,
            "perturbation_magnitude",
            "Each bout had eight baseline trials followed by 48 rotation trials, then a 45° rotation.",
        );
        assert_eq!(o.numbers, vec!["45°"]);
        // With its degree sign the number is a size, whatever noun follows.
        let o = offered(
            &schema,
            "perturbation_magnitude",
            "Participants then completed 30° rotation trials.",
        );
        assert_eq!(o.numbers, vec!["30°"]);
        // A count of trials beside the participants is no sample size.
        let o = offered(
            &schema,
            "n_total",
            "In block 1 (baseline, 60 trials), participants saw only the cursor.",
        );
        assert!(o.numbers.is_empty(), "{:?}", o.numbers);
        let o = offered(&schema, "n_total", "60 participants completed 300 trials.");
        assert_eq!(o.numbers, vec!["60"]);
        Ok(())
    }

    #[test]
    fn a_mean_with_its_spread_is_a_result_unless_the_field_binds_it() -> Result<()> {
        let schema = Schema::load_default()?;
        // A result: learning measured in degrees, with its spread.
        let o = offered(
            &schema,
            "perturbation_magnitude",
            "Total learning after the 45° rotation was 49° (SD 19) and 38 ± 12° after the clamp.",
        );
        assert_eq!(o.numbers, vec!["45°"]);
        // The field's own words bind a mean with its spread: still the value.
        let o = offered(
            &schema,
            "age_mean",
            "Participants (mean age 20.4 (SD 3.2)) gave consent.",
        );
        assert_eq!(o.numbers, vec!["20.4"]);
        // Signed sizes are a list, no means with their spreads.
        let o = offered(
            &schema,
            "perturbation_magnitude",
            "Rotation sizes were ±15°, ±30°, ±45° and ±60°.",
        );
        assert_eq!(o.numbers, vec!["15°", "30°", "45°", "60°"]);
        Ok(())
    }

    #[test]
    fn an_angle_is_no_count_and_a_layout_is_no_size_or_spacing() -> Result<()> {
        let schema = Schema::load_default()?;
        // Morehead 2017: an illustration's rotation beside the word participants.
        let o = offered(
            &schema,
            "n_total",
            "With a 45° visuomotor rotation, participants recognize that the feedback has been manipulated.",
        );
        assert!(o.numbers.is_empty(), "{:?}", o.numbers);
        // The targets' spacing and the circle they go around are neither a size nor a spacing.
        let text = "Controls (n = 10/group) were exposed to a 45°-offset clamped visual feedback while reaching to four targets spaced in 90° increments around 360°.";
        assert_eq!(
            offered(&schema, "perturbation_magnitude", text).numbers,
            vec!["45°"]
        );
        assert_eq!(offered(&schema, "spacing", text).numbers, vec!["90°"]);
        let o = offered(
            &schema,
            "n_total",
            "After a 45-degree rotation, participants reported their aim.",
        );
        assert!(o.numbers.is_empty(), "{:?}", o.numbers);
        // Bound by the field's own word, a size keeps its unit's meaning.
        let o = offered(
            &schema,
            "perturbation_magnitude",
            "Participants then completed 30° rotation trials around the target.",
        );
        assert_eq!(o.numbers, vec!["30°"]);
        Ok(())
    }

    #[test]
    fn a_sentence_of_other_work_offers_nothing() -> Result<()> {
        let schema = Schema::load_default()?;
        // An example states no design value at all (Taylor 2012's "For example, using a
        // computer mouse requires…").
        let o = offered(
            &schema,
            "environment",
            "For example, using a computer mouse requires learning the mapping between the device and the cursor.",
        );
        assert!(o.terms.is_empty(), "{:?}", o.terms);
        // Nor does a report of earlier work (McDougle 2017's methods justify a block by it).
        let o = offered(
            &schema,
            "retention_interval",
            "Recent research has shown that if error-clamp blocks are conducted up to 24 h after learning, subjects will show an aftereffect.",
        );
        assert!(o.numbers.is_empty(), "{:?}", o.numbers);
        // A sentence that also speaks of this study still states its design.
        let o = offered(
            &schema,
            "perturbation_magnitude",
            "We used a 30° rotation, which has been shown to engage explicit re-aiming.",
        );
        assert_eq!(o.numbers, vec!["30°"]);
        Ok(())
    }

    #[test]
    fn a_spacing_is_the_angle_a_spacing_word_stands_beside() -> Result<()> {
        let schema = Schema::load_default()?;
        // Stark-Inbar 2017: the arc's locations are no spacing.
        let o = offered(
            &schema,
            "spacing",
            "The circles were separated by 30°, forming a virtual arc on the upper part of the monitor (locations 45°, 75°, 105°, and 135°, where 90° is directly above the starting position).",
        );
        assert_eq!(o.numbers, vec!["30°"]);
        let o = offered(&schema, "spacing", "Eight targets were placed 45° apart.");
        assert_eq!(o.numbers, vec!["45°"]);
        Ok(())
    }

    #[test]
    fn an_age_range_is_offered_only_where_no_mean_is_stated() -> Result<()> {
        let schema = Schema::load_default()?;
        let o = offered(
            &schema,
            "age_mean",
            "Thirty-four participants (aged 18-34; average 23 years; 11 males) were recruited.",
        );
        assert_eq!(o.numbers, vec!["23"]);
        let o = offered(
            &schema,
            "age_mean",
            "Thirty-four participants (aged 18-34; 11 males) were recruited.",
        );
        assert_eq!(o.numbers, vec!["18-34"]);
        // A range with no number inside it is another group's, and stays.
        let o = offered(
            &schema,
            "age_mean",
            "Young adults (aged 18-25 years) and older adults (mean age 68.4 years) took part.",
        );
        assert_eq!(o.numbers, vec!["18-25", "68.4"]);
        Ok(())
    }

    #[test]
    fn a_reach_slid_over_a_table_is_horizontal() -> Result<()> {
        let schema = Schema::load_default()?;
        let o = offered(
            &schema,
            "coordinate_frame",
            "Participants made reaching movements by sliding a pen across the tablet.",
        );
        assert_eq!(o.terms, vec!["horizontal"]);
        Ok(())
    }

    #[test]
    fn a_question_lists_what_each_sentence_states() -> Result<()> {
        let schema = Schema::load_default()?;
        let (_, all, exps) = paper(&schema, "Methods\nParticipants moved a stylus on a digitizing tablet. The cursor was rotated by 45° for 80 trials.");
        let qs = questions_for(&schema, &all, &exps[0], &exps, MAX_SENTENCES);
        let q = qs
            .iter()
            .find(|q| q.group == "perturbation")
            .expect("perturbation");
        let line = q
            .text
            .lines()
            .skip_while(|l| !l.starts_with("- perturbation_magnitude"))
            .nth(1)
            .unwrap_or_default();
        assert!(
            line.contains("stated:") && line.contains("45°"),
            "{}",
            q.text
        );
        // What the line lists is what the grammar allows.
        assert!(q.grammar.contains("\"45°\""), "{}", q.grammar);
        Ok(())
    }

    #[test]
    fn introduction_and_discussion_are_not_shown_when_methods_exist() {
        let text = "Introduction\nThe most common example is a computer mouse moving a cursor. Methods\nParticipants moved a stylus on a digitizing tablet. Discussion\nA mouse would differ.";
        let mut d = doc(text);
        let at = |s: &str| text.find(s).expect("heading");
        let section = |kind, heading: &str, start, end| Section {
            kind,
            heading: heading.into(),
            start,
            end,
        };
        d.sections = vec![
            section(SectionKind::Introduction, "Introduction", 0, at("Methods")),
            section(
                SectionKind::Methods,
                "Methods",
                at("Methods"),
                at("Discussion"),
            ),
            section(
                SectionKind::Discussion,
                "Discussion",
                at("Discussion"),
                text.len(),
            ),
        ];
        let shown: Vec<String> = sentences(&d).into_iter().map(|s| s.text).collect();
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(shown[0].contains("digitizing tablet"));
        // Without a methods section the detection may have failed: everything is kept.
        d.sections.retain(|s| s.kind != SectionKind::Methods);
        assert_eq!(sentences(&d).len(), 3);
    }

    #[test]
    fn shared_fields_pass_to_later_experiments_that_state_none() -> Result<()> {
        use crate::run::answer::{Grounded, GroundedExperiment, GroundedValue};
        use crate::run::locate::Span;
        let schema = Schema::load_default()?;
        let v = |value: &str, quote: &str| GroundedValue {
            raw: value.into(),
            value: value.into(),
            quote: quote.into(),
            span: Span { start: 0, end: 1 },
            page: Some(1),
            inherited: false,
            sole_offer: false,
        };
        let exp = |n: u32, vals: Vec<(&str, GroundedValue)>| GroundedExperiment {
            experiment: n,
            label: None,
            values: vals.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        };
        let tablet = "Participants moved a stylus on a digitizing tablet.";
        let mut g = Grounded {
            // out of order on purpose: inheritance follows experiment numbers
            experiments: vec![
                exp(3, vec![("environment", v("mouse", "They used a mouse."))]),
                exp(
                    1,
                    vec![
                        ("environment", v("tablet", tablet)),
                        ("n_total", v("20", "20 participants")),
                    ],
                ),
                exp(2, vec![]),
                exp(4, vec![]),
            ],
            dropped: Vec::new(),
        };
        inherit_shared(&schema, &mut g);
        let get = |n: u32, f: &str| {
            g.experiments
                .iter()
                .find(|e| e.experiment == n)
                .and_then(|e| e.values.get(f))
                .cloned()
        };
        let e2 = get(2, "environment").expect("experiment 2 inherits the apparatus");
        assert_eq!(
            (e2.value.as_str(), e2.quote.as_str(), e2.inherited),
            ("tablet", tablet, true)
        );
        let e3 = get(3, "environment").expect("its own value");
        assert_eq!(
            (e3.value.as_str(), e3.inherited),
            ("mouse", false),
            "own statement wins"
        );
        let e4 = get(4, "environment").expect("the nearest earlier experiment's");
        assert_eq!((e4.value.as_str(), e4.inherited), ("mouse", true));
        assert!(get(1, "environment").is_some_and(|v| !v.inherited));
        assert!(
            get(2, "n_total").is_none(),
            "a per-experiment count is never inherited"
        );
        Ok(())
    }

    #[test]
    fn a_planted_unsupported_value_is_dropped_with_its_reason() -> Result<()> {
        use crate::run::answer::{DropReason, Grounded};
        let schema = Schema::load_default()?;
        let (d, all, exps) = paper(&schema, "Methods\nA total of 158 right-handed subjects were recruited. Participants moved a stylus on a digitizing tablet.");
        let planted = [
            Answered {
                field: "n_total".into(),
                value: "80".into(),
                sentence: 0,
                sole_offer: false,
            },
            Answered {
                field: "environment".into(),
                value: "kinarm".into(),
                sentence: 1,
                sole_offer: false,
            },
            Answered {
                field: "handedness".into(),
                value: "right".into(),
                sentence: 0,
                sole_offer: false,
            },
            Answered {
                field: "environment".into(),
                value: "tablet".into(),
                sentence: 1,
                sole_offer: false,
            },
        ];
        let mut g = Grounded::default();
        ground(&schema, &d, &all, &exps[0], &planted, &mut g);
        let kept = &g.experiments[0].values;
        assert_eq!(kept["handedness"].value, "right");
        assert_eq!(kept["environment"].value, "tablet");
        assert!(!kept.contains_key("n_total"));
        let reasons: Vec<(&str, DropReason, Option<&str>)> = g
            .dropped
            .iter()
            .map(|x| (x.field.as_str(), x.reason, x.detail.as_deref()))
            .collect();
        assert!(
            reasons.contains(&(
                "n_total",
                DropReason::Unsupported,
                Some("the number 80 is not in the quote")
            )),
            "{reasons:?}"
        );
        assert!(
            reasons.contains(&(
                "environment",
                DropReason::Unsupported,
                Some("the quote does not state `kinarm`")
            )),
            "{reasons:?}"
        );
        // the quote of a kept value is its sentence, at its place in the text
        let v = &kept["handedness"];
        assert_eq!(
            &d.text[v.span.start..v.span.end],
            "A total of 158 right-handed subjects were recruited."
        );
        Ok(())
    }

    /// The `stated:` line of `field` in a question's text.
    fn stated_line<'q>(q: &'q Question, field: &str) -> &'q str {
        let head = format!("- {field}:");
        q.text
            .lines()
            .skip_while(|l| !l.starts_with(&head))
            .nth(1)
            .filter(|l| l.trim_start().starts_with("stated:"))
            .unwrap_or("")
    }

    #[test]
    fn an_experiments_own_sentence_outranks_the_shared_methods() -> Result<()> {
        let schema = Schema::load_default()?;
        let (_, all, exps) = paper(&schema, "Methods\nUndergraduate students (n = 40, age = 22 ± 2 years) were recruited for the study.\nExperiment 1\nTwenty participants reached to eight targets on the tablet.\nExperiment 2\nPatients with cerebellar ataxia and age-matched controls (n = 10/group) reached to four targets.\n");
        assert_eq!(exps.len(), 2, "{exps:?}");
        let participants = |exp: &Experiment| -> Question {
            questions_for(&schema, &all, exp, &exps, MAX_SENTENCES)
                .into_iter()
                .find(|q| q.group == "participants")
                .expect("a participants question")
        };
        // Experiment 1 states no population of its own: the shared one stands.
        let q1 = participants(&exps[0]);
        assert!(
            stated_line(&q1, "population_type").contains("[1] healthy_adult"),
            "{}",
            q1.text
        );
        // Experiment 2 names its patients: the shared students are not offered beside them.
        let q2 = participants(&exps[1]);
        let population = stated_line(&q2, "population_type");
        assert!(population.contains("cerebellar_ataxia"), "{}", q2.text);
        assert!(!population.contains("[1]"), "{}", q2.text);
        // `age-matched controls (n = 10/group)` states no age: the shared mean is still offered.
        assert_eq!(
            stated_line(&q2, "age_mean").trim(),
            "stated: [1] 22",
            "{}",
            q2.text
        );
        // An own term gives way to a shared number as it always did (`numbers_before_terms`
        // first): `error-clamp trials` does not set the shared 45° aside.
        let (_, all, exps) = paper(&schema, "Methods\nThe cursor was rotated by 45° for all reaches.\nExperiment 1\nTwenty participants reached to the targets.\nExperiment 2\nFollowing adaptation, participants completed 40 error-clamp trials.\n");
        let q = questions_for(&schema, &all, &exps[1], &exps, MAX_SENTENCES)
            .into_iter()
            .find(|q| q.group == "perturbation")
            .expect("a perturbation question");
        assert!(
            stated_line(&q, "perturbation_magnitude").contains("45°"),
            "{}",
            q.text
        );
        Ok(())
    }

    #[test]
    fn a_sentence_about_another_experiment_is_that_experiments() -> Result<()> {
        let schema = Schema::load_default()?;
        let (_, all, exps) = paper(&schema, "Methods\nExperiment 1\nThe cursor was rotated by 45° for all reaches to the target. B, In Experiment 2, clamped feedback was provided at an invariant location (90°) on miss trials.\nExperiment 2\nAs in Experiment 1, the cursor was rotated by 30° for all reaches to the target. Subjects (N = 10) performed the reaching task used in Experiment 1.\n");
        assert_eq!(exps.len(), 2, "{exps:?}");
        let perturbation = |exp: &Experiment| -> String {
            questions_for(&schema, &all, exp, &exps, MAX_SENTENCES)
                .into_iter()
                .find(|q| q.group == "perturbation")
                .map_or(String::new(), |q| q.text)
        };
        // The caption in Experiment 1's text speaks of Experiment 2: it is Experiment 2's.
        let (one, two) = (perturbation(&exps[0]), perturbation(&exps[1]));
        assert!(
            one.contains("rotated by 45°") && !one.contains("(90°)"),
            "{one}"
        );
        assert!(two.contains("(90°)"), "{two}");
        // A reference to Experiment 1, at the opening or later, leaves the sentence to the text
        // it stands in.
        assert!(
            two.contains("rotated by 30°") && !one.contains("rotated by 30°"),
            "{one}"
        );
        let count = |exp: &Experiment| -> String {
            questions_for(&schema, &all, exp, &exps, MAX_SENTENCES)
                .into_iter()
                .find(|q| q.group == "participants")
                .map_or(String::new(), |q| stated_line(&q, "n_total").to_string())
        };
        assert!(count(&exps[1]).contains("10"), "{}", count(&exps[1]));
        assert!(!count(&exps[0]).contains("10"), "{}", count(&exps[0]));
        Ok(())
    }

    #[test]
    fn a_citation_mark_opening_a_sentence_is_no_value() -> Result<()> {
        let schema = Schema::load_default()?;
        let n = |text: &str| offered(&schema, "n_total", text).numbers;
        // Wong 2019: a block's label is no count ...
        assert!(n("In the next block (rotation block 1), all participants were given vision of their hand.").is_empty());
        // ... and a quantity before its noun is still a quantity.
        assert_eq!(
            offered(
                &schema,
                "retention_interval",
                "Participants returned 1 day later for the retention test."
            )
            .numbers,
            vec!["1 d"]
        );
        assert!(n("43 Patients with PFC lesions exhibit deficits in adaptation.").is_empty());
        assert_eq!(
            n("10,11 As noted above, 12 participants took part."),
            vec!["12"]
        );
        assert_eq!(n("Twenty-four participants took part."), vec!["24"]);
        assert_eq!(citation_lead("43 Patients with lesions"), 1);
        assert_eq!(citation_lead("10,11 As noted above"), 2);
        assert_eq!(citation_lead("24 participants took part"), 0);
        assert_eq!(citation_lead("45° Rotation"), 0);
        // A heading word names a number written right after it, not one after a comma.
        assert_eq!(
            n("In this experiment, 20 new participants took part."),
            vec!["20"]
        );
        // Wong 2019: a plural heads every number of its list (`Bouts 1 and 2`); a singular
        // head only the number right after it.
        assert!(n("Patients improved from Bout 3 to Bout 2 but not between Bouts 1 and 2 (patients: z = 2.81).").is_empty());
        assert!(n("Patients and controls were tested in Experiments 1, 2, and 3.").is_empty());
        assert_eq!(
            n("In Experiments 1 and 2, 40 participants took part."),
            vec!["40"]
        );
        assert_eq!(n("In Experiment 1, 20 participants took part."), vec!["20"]);
        Ok(())
    }

    #[test]
    fn a_group_size_or_a_planned_sample_is_no_count() -> Result<()> {
        let schema = Schema::load_default()?;
        let n = |text: &str| offered(&schema, "n_total", text).numbers;
        // Morehead 2017: a group's size, written after or before the count.
        assert!(n("Patients with cerebellar ataxia and age-matched controls (n = 10/group) were exposed to clamped feedback.").is_empty());
        assert_eq!(
            n("Participants (n = 90, 10/group) were randomly assigned to one of nine groups."),
            vec!["90"]
        );
        assert!(n("In Experiment 2 we increased the group sizes to 20 participants.").is_empty());
        // McDougle 2019: a power analysis states the sample needed, not the one tested; a
        // sample recruited on its grounds is the sample.
        assert!(n("In Experiment 2, a power analysis was used and revealed that a sample of 19 subjects would replicate the effect.").is_empty());
        assert_eq!(
            n("Based on a power analysis, we recruited 24 participants."),
            vec!["24"]
        );
        assert_eq!(n("Subjects (N = 32) performed two tasks."), vec!["32"]);
        // Bond 2017: a duration is no count.
        assert!(n(
            "A red crosshair remained on-screen for 1 s. Participants then rested their hand."
        )
        .is_empty());
        assert!(n("The 20 participants saw the cursor at 60 Hz.").contains(&"20".to_string()));
        // Butcher 2018: a pointer to the power analysis is none.
        assert_eq!(
            n("An additional sixty-one participants were recruited for this experiment (see Power Analysis below)."),
            vec!["61"]
        );
        Ok(())
    }

    #[test]
    fn a_span_or_shift_of_targets_is_no_target_direction() -> Result<()> {
        let schema = Schema::load_default()?;
        let dirs = |text: &str| offered(&schema, "number_of_locations", text).numbers;
        // Schween 2018: the practice target stands at 45°; the generalization targets span an
        // arc, and the shift moved them.
        assert_eq!(
            dirs("To test this, the targets were moved by 45° CW (i.e., the practice target was at 45° and generalization targets spanned −45° to 135°)."),
            vec!["45°"]
        );
        assert_eq!(
            dirs("We therefore offset targets by 22.5° outward from the center (i.e., to 112.5° in the left and 67.5° in the right workspace)."),
            vec!["112.5°", "67.5°"]
        );
        assert!(dirs("Generalization targets ranged from 0° to 180°.").is_empty());
        // Stark-Inbar 2017: an angle that defines the frame is no target; a count stays a
        // count whatever follows it.
        assert_eq!(
            dirs("The circles formed an arc (locations 45°, 75°, 105°, and 135°, where 90° is directly above the starting position)."),
            vec!["45°", "75°", "105°", "135°"]
        );
        assert_eq!(
            offered(
                &schema,
                "number_of_locations",
                "There were four targets corresponding to the cardinal axes."
            )
            .counts,
            vec!["4 targets"]
        );
        assert!(offered(
            &schema,
            "number_of_locations",
            "Each block presented 4 to 8 targets."
        )
        .counts
        .contains(&"8 targets".to_string()));
        // A list of directions stays whole.
        assert_eq!(
            dirs("The target appeared at 0°, 90°, and 180°."),
            vec!["0°", "90°", "180°"]
        );
        Ok(())
    }

    #[test]
    fn a_phase_without_feedback_states_no_reach_criterion() -> Result<()> {
        let schema = Schema::load_default()?;
        let terms = |text: &str| offered(&schema, "target_hit_criteria", text).terms;
        // Butcher 2018: the no-feedback baseline asks for shooting movements; the task's
        // reaches end in the target.
        assert!(terms("As no visual feedback was provided, participants were told they did not need to stop on the target location, but should make a shooting movement through the target.").is_empty());
        assert!(terms("Participants were told to make shooting movements, as they had practiced in the no-feedback baseline block.").is_empty());
        assert_eq!(
            terms("Participants were required to terminate the cursor in the target region on each trial."),
            vec!["stop_at_target"]
        );
        assert_eq!(
            terms("Participants made a rapid shooting movement through the target."),
            vec!["shooting"]
        );
        Ok(())
    }

    #[test]
    fn scale_ends_steps_and_attachments_state_no_value() -> Result<()> {
        let schema = Schema::load_default()?;
        // Stark-Inbar 2017: the ends of a handedness scale name no participant.
        assert_eq!(
            offered(&schema, "handedness", "All were right-handed as assessed by the Edinburgh Handedness Inventory (0.83 ± 0.19, where -1 is strictly left-handed and 1 is strictly right-handed).").terms,
            vec!["right"]
        );
        // ... and the step of a random walk is no size of the perturbation (both ends of
        // its range).
        assert!(offered(&schema, "perturbation_magnitude", "During the rotation blocks, the perturbation followed a sinusoidal pattern with local jitter, increasing or decreasing by 1-2° on each trial.").numbers.is_empty());
        assert_eq!(
            offered(
                &schema,
                "perturbation_magnitude",
                "The rotation increased by 15° every 40 trials until it reached 45°."
            )
            .numbers,
            vec!["45°"]
        );
        // Schween 2019: a sled attached to a finger is moved by the arm.
        let eff = |text: &str| offered(&schema, "effector", text).terms;
        assert_eq!(
            eff("Participants made reaching movements, dragging a sled attached to their index finger across a glass surface."),
            vec!["arm"]
        );
        assert_eq!(
            eff("Participants made index finger movements on a keyboard."),
            vec!["finger"]
        );
        Ok(())
    }

    #[test]
    fn an_own_results_sentence_leaves_the_shared_methods_standing() -> Result<()> {
        let schema = Schema::load_default()?;
        let text = "Methods\nThe visuomotor rotation was introduced on the first trial of the block.\nExperiment 1\nTwenty participants reached to the targets.\nExperiment 2\nTen participants reached to the targets.\nResults\nExperiment 2\nHere we do not see a gradual increase of the rotation in drift.\n";
        let results = text.find("Results").expect("a results heading");
        let mut d = doc(text);
        d.sections = vec![
            Section {
                kind: SectionKind::Methods,
                heading: "Methods".into(),
                start: 0,
                end: results,
            },
            Section {
                kind: SectionKind::Results,
                heading: "Results".into(),
                start: results,
                end: text.len(),
            },
        ];
        let all = with_table_rows(&d, schema.lexicon(), sentences(&d));
        let exps = crate::run::experiments::detect(&d.text, &schema.experiments);
        assert_eq!(exps.len(), 2, "{exps:?}");
        let q = questions_for(&schema, &all, &exps[1], &exps, MAX_SENTENCES)
            .into_iter()
            .find(|q| q.group == "perturbation")
            .expect("a perturbation question");
        let schedule = stated_line(&q, "perturbation_schedule");
        assert!(
            schedule.contains("abrupt") && schedule.contains("gradual"),
            "{}",
            q.text
        );
        Ok(())
    }

    #[test]
    fn a_rule_for_excluding_trials_names_no_target() -> Result<()> {
        let schema = Schema::load_default()?;
        let o = offered(&schema, "number_of_locations", "Reaches with endpoint hand angles ±90° from the target location were excluded from analysis.");
        assert!(o.is_empty(), "{o:?}");
        let o = offered(
            &schema,
            "number_of_locations",
            "Targets appeared at 45° and 135° from the start location.",
        );
        assert_eq!(o.numbers, vec!["45°", "135°"]);
        // A place and a distribution's statistics are no rotation size either.
        let size = |text: &str| offered(&schema, "perturbation_magnitude", text).numbers;
        assert!(size(
            "Clamped feedback was provided at an invariant location (90°) on miss trials."
        )
        .is_empty());
        assert!(size(
            "The mean exposure rotation was 0° (μ maximum rotation across subjects = 86.64°)."
        )
        .is_empty());
        assert_eq!(
            size("The cursor was rotated by 45° on every trial."),
            vec!["45°"]
        );
        Ok(())
    }

    #[test]
    fn a_chosen_item_of_a_written_list_brings_the_whole_list() -> Result<()> {
        use crate::run::answer::Grounded;
        let schema = Schema::load_default()?;
        let (d, all, exps) = paper(&schema, "Methods\nParticipants were randomly assigned to one of three rotation sizes: 7.5°, 45°, or 95°. In separate blocks the cursor was rotated by ± 15°, 30°, and 60°, and by 5° in a pilot. The cursor was rotated by 45° while the targets stood at 0° and 90°.");
        let answer = |value: &str, sentence: usize| Answered {
            field: "perturbation_magnitude".into(),
            value: value.into(),
            sentence,
            sole_offer: false,
        };
        let grounded = |a: Answered| -> String {
            let mut g = Grounded::default();
            ground(&schema, &d, &all, &exps[0], &[a], &mut g);
            g.experiments[0].values["perturbation_magnitude"]
                .value
                .clone()
        };
        assert_eq!(grounded(answer("95°", 0)), "7.5°, 45°, 95°");
        assert_eq!(grounded(answer("30°, 60°", 1)), "15°, 30°, 60°");
        // A count bound to the field's words sets no list aside.
        let (d2, all2, exps2) = paper(&schema, "Methods\nEach participant completed 120 rotation trials at one of three sizes: 15°, 30°, or 60°. Participants in the two groups saw 30° and 60° rotations, respectively.");
        let grounded2 = |value: &str, sentence: usize| -> String {
            let mut g = Grounded::default();
            ground(
                &schema,
                &d2,
                &all2,
                &exps2[0],
                &[answer(value, sentence)],
                &mut g,
            );
            g.experiments[0].values["perturbation_magnitude"]
                .value
                .clone()
        };
        assert_eq!(grounded2("30°", 0), "15°, 30°, 60°");
        // A sentence that hands its items out keeps the one chosen.
        assert_eq!(grounded2("30°", 1), "30°");
        // Items from outside one list, or a size beside a list of directions, stay as chosen.
        assert_eq!(grounded(answer("30°, 5°", 1)), "30°, 5°");
        assert_eq!(grounded(answer("45°", 2)), "45°");
        Ok(())
    }

    #[test]
    fn a_list_beside_a_bound_size_is_no_size() -> Result<()> {
        let schema = Schema::load_default()?;
        let size = |text: &str| offered(&schema, "perturbation_magnitude", text).numbers;
        // The rotation's size is bound to its words; the directions listed beside it are not.
        assert_eq!(
            size("In the subsequent rotation phase, a 30° visuomotor rotation was introduced to a single training movement direction (selected from eight possible locations: 0°, 45°, 90°, 135°, 180°; counterbalanced across subjects)."),
            vec!["30°"]
        );
        // A list that holds the bound size is the field's list, every item of it.
        assert_eq!(
            size("The cursor was rotated by 15°, 30°, and 45° CW in separate blocks."),
            vec!["15°", "30°", "45°"]
        );
        // Nothing bound: the sentence does not say which are sizes, and all are offered.
        assert_eq!(
            size("During the rotation block, targets appeared at 0°, 45° and 90°."),
            vec!["0°", "45°", "90°"]
        );
        // One unbound number beside a bound one is no list: a second size of the sentence.
        assert_eq!(
            size("A 15° rotation was applied in the first block and 30° in the second."),
            vec!["15°", "30°"]
        );
        Ok(())
    }

    #[test]
    fn a_number_sets_terms_stand_in_only_where_no_number_is_stated() -> Result<()> {
        let schema = Schema::load_default()?;
        let grammar_of = |text: &str| -> Result<(String, String)> {
            let (_, all, exps) = paper(&schema, text);
            let qs = questions_for(&schema, &all, &exps[0], &exps, MAX_SENTENCES);
            let q = qs
                .iter()
                .find(|q| q.group == "perturbation")
                .expect("a perturbation question");
            Ok((q.grammar.clone(), q.text.clone()))
        };
        // A size stated anywhere in the question: `clamped` is not offered beside it.
        let (grammar, text) = grammar_of("Methods
Subjects received either delayed endpoint feedback or clamped visual feedback. In the rotation phase, a 30° visuomotor rotation was introduced.")?;
        assert!(grammar.contains("30°"), "{grammar}");
        assert!(!grammar.contains("clamped"), "{grammar}");
        assert!(!text.contains("[1] clamped"), "{text}");
        // No size stated: the term stands in for it.
        let (grammar, _) = grammar_of(
            "Methods
On miss trials, task-irrelevant clamped feedback was shown during the rotation block.",
        )?;
        assert!(grammar.contains("clamped"), "{grammar}");
        Ok(())
    }
}
