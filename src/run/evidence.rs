//! Does a quote state its value? The support rule of the scoring contract
//! (`docs/evaluation.md`, "Evidence support"), used twice: to build what a question may answer
//! (only numbers and terms its sentence holds, see `run::question`), and to check every value
//! again before it reaches the table ([`support`]).
//!
//! - A value with numbers is supported when every number in it occurs in the quote. Numbers
//!   are read as decimals (`0.5` = `.5`); number words one to twenty and the tens count
//!   (`twenty-four` = 24); units and signs are ignored.
//! - A value without numbers is supported when the quote holds the value's content words
//!   (three letters or more), or a spelling or cue of the value's canonical term.
//!
//! Which words are cues of which term is schema data (`configs/schema.toml`); nothing here
//! knows a field's name.

use crate::schema::{Field, FieldKind};
use serde::{Deserialize, Serialize};

/// Text as cue matching reads it: lower case, hyphens, underscores and slashes (and any other
/// punctuation but `°`, `±` and `%`) as spaces, split into words.
pub fn words(text: &str) -> Vec<String> {
    let lowered = text.to_lowercase();
    let mut spaced = String::with_capacity(lowered.len() + 8);
    for c in lowered.chars() {
        match c {
            // symbols are words of their own: `45°` reads as `45`, `°`
            '°' | '±' | '˚' | 'º' | '%' => {
                spaced.push(' ');
                spaced.push(match c {
                    '±' | '%' => c,
                    _ => '°',
                });
                spaced.push(' ');
            }
            c if c.is_alphanumeric() || c == '.' || c == '\'' => spaced.push(c),
            // PDF text writes apostrophes curly (`didn’t`): one spelling for every list.
            '\u{2019}' | '\u{2018}' => spaced.push('\''),
            _ => spaced.push(' '),
        }
    }
    spaced
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '.' || c == '\'').to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

/// A clause mark between two words of a text (see [`words_and_marks`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Colon,
    Semicolon,
}

/// [`words`]`(text)`, with the colons and semicolons of `text`, each with the index of the word
/// after it: [`words`] reads them as spaces, while a number's bond to the words around it
/// stops at them (`two action effects: Participants…` states no number of participants). One
/// pass: the words of the pieces between marks are the words of the whole, since no word spans
/// a mark.
pub fn words_and_marks(text: &str) -> (Vec<String>, Vec<(usize, Mark)>) {
    let mut out = Vec::new();
    let mut marks = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find([':', ';']) {
        out.extend(words(&rest[..i]));
        let mark = if rest[i..].starts_with(':') {
            Mark::Colon
        } else {
            Mark::Semicolon
        };
        marks.push((out.len(), mark));
        rest = &rest[i + 1..];
    }
    out.extend(words(rest));
    (out, marks)
}

/// Whether `text_word` is `cue_word` or one of its plain inflections (`reach` -> `reaches`,
/// `reached`, `reaching`): enough for English cue words without a stemmer.
fn word_matches(text_word: &str, cue_word: &str) -> bool {
    match text_word.strip_prefix(cue_word) {
        Some("") => true,
        Some(rest) => cue_word.len() >= 3 && matches!(rest, "s" | "es" | "d" | "ed" | "ing" | "ly"),
        None => false,
    }
}

/// Whether the phrase `cue` (in any spelling [`words`] accepts) occurs in `text_words` as a run
/// of whole words.
pub fn has_phrase(text_words: &[String], cue: &str) -> bool {
    let cue = words(cue);
    if cue.is_empty() || cue.len() > text_words.len() {
        return false;
    }
    text_words
        .windows(cue.len())
        .any(|w| w.iter().zip(&cue).all(|(t, c)| word_matches(t, c)))
}

/// Every spelling that shows a sentence states `canonical`: the term itself (underscores as
/// spaces), its synonyms and its cues.
pub fn term_phrases<'f>(field: &'f Field, canonical: &str) -> Vec<std::borrow::Cow<'f, str>> {
    let Some(term) = field.vocabulary.iter().find(|t| t.canonical == canonical) else {
        return Vec::new();
    };
    let mut out = vec![std::borrow::Cow::Owned(term.canonical.replace('_', " "))];
    out.extend(
        term.synonyms
            .iter()
            .map(|s| std::borrow::Cow::Borrowed(s.as_str())),
    );
    out.extend(
        term.cues
            .iter()
            .map(|s| std::borrow::Cow::Borrowed(s.as_str())),
    );
    out
}

/// The canonical terms of `field` that `text_words` gives evidence for, in vocabulary order,
/// leaving out spellings the schema marks `not_evidence` and spellings a negation denies
/// (see [`negated`]): what a question may offer as the field's value for a sentence.
///
/// A `not_evidence` spelling is a phrase of the *text* in which a term's spelling says nothing
/// of the term: an occurrence of a spelling is left out when a `not_evidence` phrase occurs
/// over all of its words, inflections included. So `old` does not stand in `years old`, `no
/// feedback` not in `the no-feedback washout block` (a phase, not the experiment's feedback),
/// `vertical` not in a caption's `vertical dotted lines`, and `gradual` not in `payoffs
/// gradually shifted` when `gradually` is not evidence, while a longer cue that the barred
/// phrase does not cover (`gradually increased`) still is.
pub fn cued_terms<'f>(field: &'f Field, text_words: &[String]) -> Vec<&'f str> {
    field
        .vocabulary
        .iter()
        .filter(|t| {
            let said = spans(text_words, term_phrases(field, &t.canonical).iter());
            if said.is_empty() {
                return false;
            }
            let barred = spans(text_words, t.not_evidence.iter());
            said.iter().any(|&(at, end)| {
                !barred.iter().any(|&(from, to)| from <= at && end <= to)
                    && !negated(field, text_words, at)
            })
        })
        .map(|t| t.canonical.as_str())
        .collect()
}

/// Words before a spelling within which a negation word denies it.
const NEGATION_WINDOW: usize = 3;

/// Whether a negation word of the schema stands at most [`NEGATION_WINDOW`] words before the
/// spelling that starts at `at`, with no `negation_breaks` word between (`did not need to stop
/// on the target`, `were never told about the rotation`): the sentence denies the term. A
/// spelling that holds its own negation (`no feedback`, `not instructed`) starts at it, so it
/// is not denied by it.
fn negated(field: &Field, text_words: &[String], at: usize) -> bool {
    // Nearest word first: a break between the negation and the spelling ends the denial
    // (`was not provided, only endpoint feedback`; `could not see their hand`).
    for w in text_words[at.saturating_sub(NEGATION_WINDOW)..at]
        .iter()
        .rev()
    {
        if field.is_negation_break(w) {
            return false;
        }
        if field.is_negation(w) {
            return true;
        }
    }
    false
}

/// Where each of `phrases` stands in `text_words`: (first word, one past its last), every
/// occurrence (`words` reads `_` as a space, so a canonical name is its own phrase).
fn spans<S: AsRef<str>>(
    text_words: &[String],
    phrases: impl Iterator<Item = S>,
) -> Vec<(usize, usize)> {
    phrases
        .flat_map(|p| {
            let len = words(p.as_ref()).len();
            phrase_positions(text_words, p.as_ref())
                .into_iter()
                .map(move |at| (at, at + len))
        })
        .collect()
}

const UNITS: [&str; 19] = [
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 8] = [
    "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

fn unit_word(w: &str) -> Option<f64> {
    UNITS.iter().position(|u| *u == w).map(|i| (i + 1) as f64)
}

fn tens_word(w: &str) -> Option<f64> {
    TENS.iter()
        .position(|u| *u == w)
        .map(|i| ((i + 2) * 10) as f64)
}

/// One number as a text states it: its value, and how a cell writes it (`24` for
/// `twenty-four`, `.5` as `0.5`).
#[derive(Debug, Clone, PartialEq)]
pub struct Number {
    pub value: f64,
    pub text: String,
}

fn number(value: f64) -> Number {
    Number {
        value,
        text: crate::schema::format_number(value),
    }
}

/// A number spelled out at the start of `ws` (lower-case words): one to ninety-nine
/// (`twenty four`), and hundreds (`one hundred`, `two hundred and forty`). Returns the value and
/// how many words it takes. Sample sizes above ninety-nine are spelled out too (`A total of
/// one-hundred human volunteers participated`).
fn spelled<S: AsRef<str>>(ws: &[S]) -> Option<(f64, usize)> {
    let word = |i: usize| ws.get(i).map(AsRef::as_ref);
    let below_hundred = |from: usize| -> Option<(f64, usize)> {
        let first = word(from)?;
        if let Some(t) = tens_word(first) {
            return match word(from + 1).and_then(unit_word).filter(|u| *u < 10.0) {
                Some(u) => Some((t + u, 2)),
                None => Some((t, 1)),
            };
        }
        unit_word(first).map(|u| (u, 1))
    };
    let (v, n) = below_hundred(0)?;
    if v >= 10.0 || word(n) != Some("hundred") {
        return Some((v, n));
    }
    let (mut value, mut used) = (v * 100.0, n + 1);
    let skip_and = usize::from(word(used) == Some("and"));
    if let Some((rest, k)) = below_hundred(used + skip_and) {
        value += rest;
        used += skip_and + k;
    }
    Some((value, used))
}

/// The longest spelled number can take: `two hundred and forty four`.
const MAX_SPELLED_WORDS: usize = 5;

/// The numbers of `text`, in order: digits (with a decimal part, `.5` included) and number
/// words (`twenty-four`, `twenty four`, `Twelve`, `one-hundred`; see [`spelled`]). A minus
/// sign and thousands separators are not read: signs are ignored by the support rule, and
/// design values are small.
pub fn numbers(text: &str) -> Vec<Number> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let starts = c.is_ascii_digit()
            || (c == '.'
                && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())
                && (i == 0 || !chars[i - 1].is_ascii_digit()));
        if starts {
            let s = i;
            let mut dot = false;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || (chars[i] == '.'
                        && !dot
                        && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())))
            {
                dot |= chars[i] == '.';
                i += 1;
            }
            let lit: String = chars[s..i].iter().collect();
            if let Ok(v) = lit.parse::<f64>() {
                out.push(number(v));
            }
            continue;
        }
        if c.is_alphabetic() {
            // This word and the next few joined by a hyphen or a space (`twenty-four`,
            // `one hundred and two`), with where each ends.
            let mut ws: Vec<(String, usize)> = Vec::new();
            let mut j = i;
            loop {
                let s = j;
                while j < chars.len() && chars[j].is_alphabetic() {
                    j += 1;
                }
                ws.push((chars[s..j].iter().collect::<String>().to_lowercase(), j));
                let joined = j < chars.len()
                    && (chars[j] == '-' || chars[j] == ' ')
                    && chars.get(j + 1).is_some_and(|c| c.is_alphabetic());
                if !joined || ws.len() == MAX_SPELLED_WORDS {
                    break;
                }
                j += 1;
            }
            let lower: Vec<&str> = ws.iter().map(|(w, _)| w.as_str()).collect();
            match spelled(&lower) {
                Some((v, n)) => {
                    out.push(number(v));
                    i = ws[n - 1].1;
                }
                None => i = ws[0].1,
            }
            continue;
        }
        i += 1;
    }
    out
}

/// The numbers among `words` (as [`words`] splits a text) with the index of the word that
/// holds each: digits, and number words (`twenty four` as one number at the first word).
pub fn numbers_at(words: &[String]) -> Vec<(usize, Number)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        if w.chars().next().is_some_and(|c| c.is_ascii_digit())
            && w.chars().all(|c| c.is_ascii_digit() || c == '.')
        {
            if let Ok(v) = w.parse::<f64>() {
                out.push((i, number(v)));
            }
        } else {
            let end = (i + MAX_SPELLED_WORDS).min(words.len());
            if let Some((v, n)) = spelled(&words[i..end]) {
                out.push((i, number(v)));
                i += n;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Where the phrase `cue` starts in `text_words` (every occurrence).
pub fn phrase_positions(text_words: &[String], cue: &str) -> Vec<usize> {
    let cue = words(cue);
    if cue.is_empty() || cue.len() > text_words.len() {
        return Vec::new();
    }
    text_words
        .windows(cue.len())
        .enumerate()
        .filter(|(_, w)| w.iter().zip(&cue).all(|(t, c)| word_matches(t, c)))
        .map(|(i, _)| i)
        .collect()
}

/// Why a value is not supported by its quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum Unsupported {
    /// A number of the value does not occur in the quote.
    NumberNotInQuote(String),
    /// An item of the value has neither its content words nor a cue of its term in the quote.
    NoCueInQuote(String),
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unsupported::NumberNotInQuote(n) => write!(f, "the number {n} is not in the quote"),
            Unsupported::NoCueInQuote(i) => write!(f, "the quote does not state `{i}`"),
        }
    }
}

/// Checks that `quote` states `value` (a cell as the table writes it) for `field`.
pub fn support(field: &Field, value: &str, quote: &str) -> Result<(), Unsupported> {
    let in_value = numbers(value);
    if !in_value.is_empty() {
        let in_quote = numbers(quote);
        for n in &in_value {
            if !in_quote.iter().any(|q| (q.value - n.value).abs() < 1e-9) {
                return Err(Unsupported::NumberNotInQuote(n.text.clone()));
            }
        }
        return Ok(());
    }
    let quote_words = words(quote);
    let items: Vec<&str> = match field.kind {
        FieldKind::Category | FieldKind::NumberSet => value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect(),
        _ => vec![value.trim()],
    };
    for item in items {
        let content: Vec<String> = words(item)
            .into_iter()
            .filter(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 3)
            .collect();
        let by_words = !content.is_empty()
            && content
                .iter()
                .all(|w| quote_words.iter().any(|q| word_matches(q, w)));
        let by_cue = field.lookup_term(item).is_some_and(|canonical| {
            term_phrases(field, canonical)
                .iter()
                .any(|p| has_phrase(&quote_words, p))
        });
        if !(by_words || by_cue) {
            return Err(Unsupported::NoCueInQuote(item.to_string()));
        }
    }
    Ok(())
}

/// How well a run's table values are evidenced, per field: the check the scoring contract
/// asks for ("Evidence support"), computed again from the records, never taken on trust.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FieldEvidence {
    pub field: String,
    /// Values in the table.
    pub kept: usize,
    /// Of those, values whose own quote states them.
    pub supported: usize,
    /// Of those, values with numbers / without numbers (categories: a cue in the quote).
    pub with_numbers: usize,
    pub with_numbers_supported: usize,
    /// Values whose quote is also the quote of another field of the same experiment.
    pub shared_quote: usize,
    /// Values whose experiment inherited them from text shared by all experiments.
    pub inherited: usize,
    /// Values the model left null that took the one value every shown sentence states.
    pub sole_offer: usize,
    /// Values the model gave that were not written because their quote does not state them.
    pub dropped_unsupported: usize,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct EvidenceReport {
    pub papers: usize,
    pub experiments: usize,
    pub total: FieldEvidence,
    pub fields: Vec<FieldEvidence>,
}

impl EvidenceReport {
    /// Checks every kept value of `records` against its quote.
    pub fn of(
        schema: &crate::schema::Schema,
        records: &[&crate::run::record::PaperRecord],
    ) -> Self {
        use crate::run::answer::DropReason;
        use crate::run::record::Outcome;
        let mut fields: Vec<FieldEvidence> = schema
            .fields()
            .iter()
            .map(|f| FieldEvidence {
                field: f.name.clone(),
                ..Default::default()
            })
            .collect();
        let mut rep = EvidenceReport::default();
        for rec in records {
            let Outcome::Ok(r) = &rec.outcome else {
                continue;
            };
            rep.papers += 1;
            rep.experiments += r.experiments.len();
            for e in &r.experiments {
                for (name, v) in &e.values {
                    let (Some(field), Some(fe)) = (
                        schema.field(name),
                        fields.iter_mut().find(|f| &f.field == name),
                    ) else {
                        continue;
                    };
                    fe.kept += 1;
                    let ok = support(field, &v.value, &v.quote).is_ok();
                    fe.supported += usize::from(ok);
                    if !numbers(&v.value).is_empty() {
                        fe.with_numbers += 1;
                        fe.with_numbers_supported += usize::from(ok);
                    }
                    fe.inherited += usize::from(v.inherited);
                    fe.sole_offer += usize::from(v.sole_offer);
                    let shared = e
                        .values
                        .iter()
                        .any(|(other, w)| other != name && w.span == v.span);
                    fe.shared_quote += usize::from(shared);
                }
            }
            for d in &r.dropped {
                if d.reason == DropReason::Unsupported {
                    if let Some(fe) = fields.iter_mut().find(|f| f.field == d.field) {
                        fe.dropped_unsupported += 1;
                    }
                }
            }
        }
        fields.retain(|f| f.kept + f.dropped_unsupported > 0);
        let mut total = FieldEvidence {
            field: "all".into(),
            ..Default::default()
        };
        for f in &fields {
            total.kept += f.kept;
            total.supported += f.supported;
            total.with_numbers += f.with_numbers;
            total.with_numbers_supported += f.with_numbers_supported;
            total.shared_quote += f.shared_quote;
            total.inherited += f.inherited;
            total.sole_offer += f.sole_offer;
            total.dropped_unsupported += f.dropped_unsupported;
        }
        rep.total = total;
        rep.fields = fields;
        rep
    }

    /// A plain table for the terminal.
    pub fn to_text(&self) -> String {
        let pct = |a: usize, b: usize| {
            if b == 0 {
                "-".to_string()
            } else {
                format!("{:.0}%", 100.0 * a as f64 / b as f64)
            }
        };
        let mut t = format!(
            "evidence ({} paper(s), {} experiment(s)): every table value checked against its own quote\n{:<24} {:>5} {:>9} {:>12} {:>12} {:>9} {:>10} {:>11}\n",
            self.papers, self.experiments, "field", "kept", "supported", "numbers ok", "shared quote", "inherited", "sole offer", "dropped: no"
        );
        for f in self.fields.iter().chain(std::iter::once(&self.total)) {
            t.push_str(&format!(
                "{:<24} {:>5} {:>9} {:>12} {:>12} {:>9} {:>10} {:>11}\n",
                f.field,
                f.kept,
                pct(f.supported, f.kept),
                pct(f.with_numbers_supported, f.with_numbers),
                pct(f.shared_quote, f.kept),
                f.inherited,
                f.sole_offer,
                f.dropped_unsupported
            ));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;

    fn field(name: &str) -> Field {
        Schema::load_default()
            .expect("schema")
            .field(name)
            .expect("field")
            .clone()
    }

    #[test]
    fn clause_marks_index_the_words_after_them() {
        let text = "Two effects: Participants (n = 17; 9 female) moved.";
        let (w, marks) = words_and_marks(text);
        assert_eq!(w, words(text));
        assert_eq!(marks, vec![(2, Mark::Colon), (5, Mark::Semicolon)]);
        assert_eq!(w[2], "participants");
        assert_eq!(w[5], "9");
        // Pieces between marks add up to the whole, so the indices hold at the ends too.
        assert_eq!(
            words_and_marks(":a;").1,
            vec![(0, Mark::Colon), (1, Mark::Semicolon)]
        );
    }

    #[test]
    fn numbers_read_digits_decimals_and_words() {
        let got: Vec<f64> =
            numbers("Twenty-four adults (aged 18-30, mean 22.5, SD .5) and twelve children, 2 s")
                .iter()
                .map(|n| n.value)
                .collect();
        assert_eq!(got, vec![24.0, 18.0, 30.0, 22.5, 0.5, 12.0, 2.0]);
        assert_eq!(numbers("twenty four")[0].text, "24");
        assert_eq!(numbers("thirty")[0].value, 30.0);
        assert!(
            numbers("someone, anyone, often").is_empty(),
            "no number words inside words"
        );
    }

    #[test]
    fn number_values_need_their_numbers_in_the_quote() {
        let f = field("n_total");
        assert!(support(&f, "24", "Twenty-four right-handed adults took part.").is_ok());
        assert_eq!(
            support(
                &f,
                "80",
                "A total of 158 right-handed subjects were recruited."
            ),
            Err(Unsupported::NumberNotInQuote("80".into()))
        );
        // never a substring: 8 is not in 180
        assert!(support(&field("perturbation_magnitude"), "8°", "rotated by 180°").is_err());
        assert!(support(&field("feedback_delay"), "0.5 s", "a delay of .5 s").is_ok());
    }

    #[test]
    fn categories_need_a_cue_or_their_words_in_the_quote() {
        let f = field("environment");
        assert!(support(
            &f,
            "tablet",
            "They moved a stylus over a digitizing tablet."
        )
        .is_ok());
        assert!(
            support(&f, "tablet", "Movements were made with a stylus.").is_ok(),
            "synonym"
        );
        assert_eq!(
            support(
                &f,
                "tablet",
                "A total of 158 right-handed subjects were recruited."
            ),
            Err(Unsupported::NoCueInQuote("tablet".into()))
        );
        let fb = field("feedback_type");
        assert!(support(
            &fb,
            "endpoint, continuous",
            "Feedback was continuous or shown at the end point only."
        )
        .is_ok());
        assert!(support(&fb, "endpoint, continuous", "Feedback was continuous.").is_err());
        // inflections of cue words count, other words do not
        let eff = field("effector");
        assert!(support(&eff, "arm", "Participants reached to targets.").is_ok());
        assert!(support(&eff, "arm", "Participants reacted quickly.").is_err());
    }

    #[test]
    fn numbers_at_word_positions() {
        let w = words("Twenty-four adults aged 18–34 (N = 24), rotated 45˚");
        let got: Vec<(usize, f64)> = numbers_at(&w)
            .into_iter()
            .map(|(i, n)| (i, n.value))
            .collect();
        assert_eq!(
            got,
            vec![(0, 24.0), (4, 18.0), (5, 34.0), (7, 24.0), (9, 45.0)]
        );
        assert_eq!(w[10], "°");
        assert_eq!(phrase_positions(&w, "aged"), vec![3]);
    }

    /// The terms of field `f` that text `t` gives evidence for.
    fn terms(f: &str, t: &str) -> Vec<String> {
        let f = field(f);
        cued_terms(&f, &words(t))
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn a_denied_term_is_no_evidence_of_it() {
        let th = "target_hit_criteria";
        // Butcher 2018: the no-feedback phase says what participants need not do.
        assert_eq!(
            terms(
                th,
                "participants were told they did not need to stop on the target location, but should make a shooting movement through the target"
            ),
            vec!["shooting"]
        );
        assert_eq!(
            terms(th, "participants had to stop on the target"),
            vec!["stop_at_target"]
        );
        // A break ends the denial: only the endpoint is given, and not seeing the hand
        // denies the seeing.
        assert_eq!(
            terms(
                "feedback_type",
                "Online feedback was not provided, only endpoint feedback was shown"
            ),
            vec!["continuous", "endpoint"]
        );
        assert_eq!(
            terms("effector", "participants could not see their hand"),
            vec!["arm"]
        );
        assert_eq!(
            terms(th, "participants didn\u{2019}t stop on the target"),
            Vec::<String>::new()
        );
        // A spelling that starts with its own negation still states its term.
        assert_eq!(
            terms(
                "instruction_awareness",
                "participants were not instructed about the rotation"
            ),
            vec!["uninstructed"]
        );
        assert_eq!(
            terms(
                "instruction_awareness",
                "Participants were not told about the rotation."
            ),
            vec!["uninstructed"]
        );
    }

    #[test]
    fn a_not_evidence_phrase_bars_the_spellings_it_stands_over() {
        // A phase of the session is no feedback type (Butcher 2018, Parvin 2018).
        let fb = "feedback_type";
        assert!(terms(
            fb,
            "and 3) the first eight trials of the no-feedback washout block."
        )
        .is_empty());
        assert!(terms(fb, "Next, 24 trials of a no-feedback baseline block").is_empty());
        assert_eq!(
            terms(
                fb,
                "Participants reached without visual feedback of the cursor"
            ),
            vec!["no_feedback"]
        );
        assert!(terms(fb, "participants without neurological disorders").is_empty());
        // A figure's lines are no plane of movement (McDougle 2019's captions).
        let cf = "coordinate_frame";
        assert!(terms(cf, "Vertical dotted lines represent predicted locations").is_empty());
        assert!(terms(cf, "Vertical lines delineate the task block").is_empty());
        // A device's or a stimulus's orientation is no plane of movement either.
        assert!(terms(
            cf,
            "Participants sat 1 m in front of a vertically mounted 22-in. LCD screen"
        )
        .is_empty());
        assert!(terms(cf, "The group viewed two vertically oriented red lines").is_empty());
        assert_eq!(
            terms(
                cf,
                "made horizontal reaching movements; vertical lines mark blocks"
            ),
            vec!["horizontal"]
        );
        // Answer words in running text.
        let co = "center_out";
        assert!(terms(
            co,
            "At no point was the true hand position shown at the start"
        )
        .is_empty());
        assert_eq!(terms(co, "a center-out reaching task"), vec!["yes"]);
        // Blocks of trials are no blocked schedule; conditions in blocks are.
        let sb = "schedule_blocking";
        assert!(terms(
            sb,
            "within a block of eight trials, targets were shown once"
        )
        .is_empty());
        assert_eq!(
            terms(sb, "the two rotations were presented in blocks"),
            vec!["blocked"]
        );
    }

    #[test]
    fn hundreds_are_spelled_numbers_too() {
        // Schween et al. 2019: "A total of one-hundred human volunteers participated".
        let values = |t: &str| numbers(t).into_iter().map(|n| n.value).collect::<Vec<_>>();
        assert_eq!(
            values("A total of one-hundred human volunteers"),
            vec![100.0]
        );
        assert_eq!(values("two hundred and forty-four subjects"), vec![244.0]);
        assert_eq!(values("one hundred twelve, then 3"), vec![112.0, 3.0]);
        assert_eq!(values("a hundred trials"), Vec::<f64>::new());
        let w = words("one-hundred human volunteers (twenty women) and two hundred and five");
        let at: Vec<(usize, f64)> = numbers_at(&w)
            .into_iter()
            .map(|(i, n)| (i, n.value))
            .collect();
        assert_eq!(at, vec![(0, 100.0), (4, 20.0), (7, 205.0)]);
        // The support rule reads the same number on both sides.
        let n_total = field("n_total");
        assert_eq!(
            support(&n_total, "100", "one-hundred human volunteers participated"),
            Ok(())
        );
    }

    #[test]
    fn where_a_reach_ends_and_how_a_rotation_grew_are_read_as_such() {
        let fb = "feedback_type";
        // Bond 2017: an endpoint as a place is no endpoint feedback ...
        assert!(terms(fb, "by tapping an intended reach endpoint on a touchscreen").is_empty());
        assert!(terms(fb, "the endpoint error of each reach").is_empty());
        // Where feedback is restricted to it, it is endpoint feedback (Taylor 2014).
        assert_eq!(
            terms(
                fb,
                "cursor feedback was restricted to the movement endpoint"
            ),
            vec!["endpoint"]
        );
        // ... the feedback is.
        assert_eq!(
            terms(fb, "Endpoint feedback was given after each reach"),
            vec!["endpoint"]
        );
        let sched = "perturbation_schedule";
        // Taylor 2013: introduced, and how: gradually.
        assert_eq!(
            terms(
                sched,
                "A vertical shift was introduced in an incremental manner"
            ),
            vec!["gradual"]
        );
        assert_eq!(
            terms(sched, "The rotation was introduced on trial 61"),
            vec!["abrupt"]
        );
        // A caption's coloured lines and a perturbation's direction are no plane of movement.
        let plane = "coordinate_frame";
        assert!(!terms(
            plane,
            "Vertical red and blue lines indicate the target direction"
        )
        .contains(&"vertical".to_string()));
        assert!(!terms(
            plane,
            "the perturbation was a 3.5-cm upward, vertical translation"
        )
        .contains(&"vertical".to_string()));
        assert!(terms(plane, "Participants reached in the vertical plane")
            .contains(&"vertical".to_string()));
        // Stark-Inbar 2017: a random walk is a random schedule.
        assert!(terms(sched, "a pseudorandom walk visuomotor perturbation")
            .contains(&"random".to_string()));
    }

    #[test]
    fn phrases_match_whole_words_only() {
        let w = words("The counter-clockwise rotation; a tabletop display");
        assert!(has_phrase(&w, "counter clockwise"));
        assert!(has_phrase(&w, "rotation"));
        assert!(!has_phrase(&w, "table"), "tabletop is not table");
        assert!(!has_phrase(&w, "rot"));
    }
}
