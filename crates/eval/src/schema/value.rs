//! Reading one raw cell into a typed [`Value`], driven by the field's declared type.
//!
//! Everything works on whole tokens (numbers, words, symbols), never on substrings, so that `8`
//! can never be found inside `180`. The rules are the ones written in `configs/schema.toml` and
//! in the scoring contract (`docs/evaluation.md`, "Details settled").

use super::{Field, FieldKind, Lexicon};
use std::collections::BTreeSet;

/// One number of a `number` field: a single value or a range such as `18-30`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NumItem {
    Single(f64),
    Range(f64, f64),
}

/// A parsed cell. Which variants a field produces depends only on its [`FieldKind`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Blank or an "unknown" marker (`?`, `n/a`, ...): not scored when on the gold side.
    Empty,
    /// `integer` field.
    Integer(i64),
    /// `number` field: a multiset of numbers/ranges, sorted.
    Numbers(Vec<NumItem>),
    /// `number_set` field: distinct magnitudes in the base unit, sorted.
    Magnitudes(Vec<f64>),
    /// `locations` field given as directions: distinct angles in [0, 360), sorted.
    Directions(Vec<f64>),
    /// `locations` field given as a count (`8 targets`).
    Count(u64),
    /// `category` field (or a non-numeric number set): canonical terms or literal items.
    Terms(BTreeSet<String>),
    /// `free_text` field: content tokens plus the whitespace-collapsed text.
    Text { tokens: Vec<String>, text: String },
    /// A cell that does not read as its type (e.g. `many` in an integer field): compared as
    /// literal normalized text.
    Literal(String),
}

impl Value {
    pub fn is_empty(&self) -> bool {
        matches!(self, Value::Empty)
    }

    /// Canonical text (see [`Field::normalize`]).
    pub fn render(&self, field: &Field) -> String {
        match self {
            Value::Empty => String::new(),
            Value::Integer(n) => n.to_string(),
            Value::Numbers(items) => items
                .iter()
                .map(|it| match it {
                    NumItem::Single(v) => fmt_num(*v),
                    NumItem::Range(a, b) => format!("{}-{}", fmt_num(*a), fmt_num(*b)),
                })
                .collect::<Vec<_>>()
                .join(", "),
            Value::Magnitudes(vs) | Value::Directions(vs) => {
                let unit = field.base_unit().unwrap_or("");
                vs.iter()
                    .map(|v| with_unit(*v, unit))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
            Value::Count(n) => {
                let word = match &field.kind {
                    FieldKind::Locations { count_words } => count_words.first().map(String::as_str),
                    _ => None,
                };
                format!("{n} {}", word.unwrap_or("targets"))
            }
            Value::Terms(set) => set.iter().cloned().collect::<Vec<_>>().join(", "),
            Value::Text { text, .. } => text.clone(),
            Value::Literal(s) => s.clone(),
        }
    }
}

fn with_unit(v: f64, unit: &str) -> String {
    if unit.is_empty() {
        fmt_num(v)
    } else if unit.chars().all(|c| c.is_alphabetic()) {
        format!("{} {unit}", fmt_num(v))
    } else {
        format!("{}{unit}", fmt_num(v))
    }
}

/// Round away float noise from unit conversion (1500 * 0.001) so values compare and print
/// exactly.
pub(crate) fn clean(v: f64) -> f64 {
    let r = (v * 1e9).round() / 1e9;
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

pub(crate) fn fmt_num(v: f64) -> String {
    format!("{}", clean(v))
}

// ----- tokens ------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A number; `neg` when a minus sign stood directly before it and not after a number.
    Num {
        value: f64,
        neg: bool,
        integral: bool,
    },
    /// A word (lower-cased), or a unit-like symbol such as `°`.
    Word(String),
    /// A dash or `to` between two numbers (a range).
    Dash,
    /// Any other separator (`,`, `;`, `/`, brackets...).
    Sep,
}

fn tokenize(s: &str) -> Vec<Tok> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut pending_minus = false;
    while i < chars.len() {
        let c = chars[i];
        let starts_number = c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()));
        if starts_number {
            let start = i;
            let mut seen_dot = false;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || (chars[i] == '.'
                        && !seen_dot
                        && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())))
            {
                seen_dot |= chars[i] == '.';
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            if let Ok(value) = text.parse::<f64>() {
                out.push(Tok::Num {
                    value,
                    neg: pending_minus,
                    integral: !seen_dot,
                });
            }
            pending_minus = false;
            continue;
        }
        if c.is_alphabetic() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '\'' || chars[i] == '’')
            {
                i += 1;
            }
            let w: String = chars[start..i].iter().collect::<String>().to_lowercase();
            if w == "to" && matches!(out.last(), Some(Tok::Num { .. })) {
                out.push(Tok::Dash);
            } else {
                out.push(Tok::Word(w));
            }
            pending_minus = false;
            continue;
        }
        i += 1;
        match c {
            '-' | '−' | '–' | '—' => {
                if matches!(out.last(), Some(Tok::Num { .. })) {
                    out.push(Tok::Dash);
                } else {
                    pending_minus = true;
                }
                continue;
            }
            '°' | 'º' | '±' | '%' => out.push(Tok::Word(c.to_string())),
            c if c.is_whitespace() => {
                // A minus sign must touch its number (`- 5` is a dash, not -5).
                pending_minus = false;
                continue;
            }
            '+' => {}
            _ => out.push(Tok::Sep),
        }
        pending_minus = false;
    }
    out
}

// ----- cell -> value -----------------------------------------------------------------------

pub(super) fn parse(field: &Field, raw: &str) -> Value {
    let lex = field.lexicon();
    let trimmed = raw.trim();
    if lex.empty.contains(&trimmed.to_lowercase()) {
        return Value::Empty;
    }
    let value = match &field.kind {
        FieldKind::Integer => parse_integer(trimmed),
        FieldKind::Number { .. } => parse_numbers(trimmed),
        FieldKind::NumberSet => parse_number_set(field, trimmed),
        FieldKind::Locations { count_words } => parse_locations(field, count_words, trimmed),
        FieldKind::Category => parse_terms(field, trimmed),
        FieldKind::FreeText => parse_text(lex, trimmed),
    };
    match &value {
        Value::Terms(t) if t.is_empty() => Value::Empty,
        Value::Literal(s) | Value::Text { text: s, .. } if s.is_empty() => Value::Empty,
        _ => value,
    }
}

fn parse_integer(s: &str) -> Value {
    let toks = tokenize(s);
    match toks.iter().find_map(|t| match t {
        Tok::Num {
            value,
            neg,
            integral,
        } => Some((*value, *neg, *integral)),
        _ => None,
    }) {
        Some((v, neg, true)) if v < 9.0e15 => {
            Value::Integer(if neg { -(v as i64) } else { v as i64 })
        }
        _ => Value::Literal(plain_text(s)),
    }
}

fn parse_numbers(s: &str) -> Value {
    let toks = tokenize(s);
    let mut items = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if let Tok::Num { value, neg, .. } = toks[i] {
            // `24.8 ± 4.1`: the number after `±` is a spread, not a value.
            if i > 0 && toks[i - 1] == Tok::Word("±".into()) {
                i += 1;
                continue;
            }
            let a = if neg { -value } else { value };
            if let (Some(Tok::Dash), Some(Tok::Num { value: b, .. })) =
                (toks.get(i + 1), toks.get(i + 2))
            {
                items.push(NumItem::Range(a, *b));
                i += 3;
                continue;
            }
            items.push(NumItem::Single(a));
        }
        i += 1;
    }
    if items.is_empty() {
        return Value::Literal(plain_text(s));
    }
    items.sort_by(|x, y| {
        num_key(x)
            .partial_cmp(&num_key(y))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    Value::Numbers(items)
}

fn num_key(it: &NumItem) -> (f64, f64) {
    match *it {
        NumItem::Single(v) => (v, f64::NEG_INFINITY),
        NumItem::Range(a, b) => (a, b),
    }
}

/// Numbers with their units: a bare number takes the next unit written in the cell; numbers
/// with no unit after them take the base unit. Signs are dropped (sets hold magnitudes).
fn numbers_with_units(field: &Field, toks: &[Tok]) -> Vec<f64> {
    let mut out = Vec::new();
    let mut pending: Vec<f64> = Vec::new();
    for t in toks {
        match t {
            Tok::Num { value, .. } => pending.push(*value),
            Tok::Word(w) => {
                if let Some(f) = field.unit_factor(w) {
                    out.extend(pending.drain(..).map(|v| v * f));
                }
            }
            Tok::Dash | Tok::Sep => {}
        }
    }
    out.extend(pending);
    out
}

fn distinct_sorted(mut vs: Vec<f64>) -> Vec<f64> {
    vs.iter_mut().for_each(|v| *v = clean(*v));
    vs.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    vs.dedup();
    vs
}

/// Drops direction words from the terms of a number-set cell once more, as the vocabulary
/// reads words (`term_key`): a direction word glued to other characters (`±(`) only shows
/// after that cleaning, and `normalize` must give a text that parses the same.
fn without_directions(field: &Field, v: Value) -> Value {
    let Value::Terms(terms) = v else { return v };
    let lex = field.lexicon();
    let mut directions: Vec<String> = lex
        .direction_words
        .iter()
        .map(|d| term_key(d, lex))
        .filter(|k| !k.is_empty())
        .collect();
    directions.sort_by_key(|d| std::cmp::Reverse(d.len()));
    let out = terms
        .into_iter()
        .filter_map(|t| {
            let mut k = format!(" {t} ");
            for d in &directions {
                let padded = format!(" {d} ");
                while k.contains(&padded) {
                    k = k.replace(&padded, " ");
                }
            }
            let k = k.trim();
            if k.is_empty() {
                None
            } else if k == t {
                Some(t)
            } else {
                Some(
                    field
                        .lookup_term(k)
                        .map_or_else(|| k.to_string(), str::to_string),
                )
            }
        })
        .collect();
    Value::Terms(out)
}

fn parse_number_set(field: &Field, s: &str) -> Value {
    let toks = tokenize(s);
    if !toks.iter().any(|t| matches!(t, Tok::Num { .. })) {
        // `clamped`: a category, after dropping direction words.
        let lex = field.lexicon();
        let kept: Vec<&str> = s
            .split_whitespace()
            .filter(|w| !lex.direction_words.contains(&w.to_lowercase()))
            .collect();
        return without_directions(field, parse_terms(field, &kept.join(" ")));
    }
    Value::Magnitudes(distinct_sorted(
        numbers_with_units(field, &toks)
            .into_iter()
            .map(f64::abs)
            .collect(),
    ))
}

fn parse_locations(field: &Field, count_words: &[String], s: &str) -> Value {
    let toks = tokenize(s);
    // `8 targets`: a number directly followed by a count word.
    for w in toks.windows(2) {
        if let [Tok::Num {
            value,
            integral: true,
            ..
        }, Tok::Word(word)] = w
        {
            if count_words.iter().any(|c| c == word) {
                return Value::Count(*value as u64);
            }
        }
    }
    let nums: Vec<(f64, bool, bool)> = toks
        .iter()
        .filter_map(|t| match t {
            Tok::Num {
                value,
                neg,
                integral,
            } => Some((*value, *neg, *integral)),
            _ => None,
        })
        .collect();
    let has_unit = toks
        .iter()
        .any(|t| matches!(t, Tok::Word(w) if field.unit_factor(w).is_some()));
    match nums.as_slice() {
        [] => parse_terms(field, s),
        // A bare integer above 0 is a count; `0` alone is a direction.
        [(v, false, true)] if *v > 0.0 && !has_unit => Value::Count(*v as u64),
        _ => {
            let angles = numbers_with_units(
                field,
                &toks
                    .iter()
                    .map(|t| match t {
                        Tok::Num {
                            value,
                            neg: true,
                            integral,
                        } => Tok::Num {
                            value: -value,
                            neg: true,
                            integral: *integral,
                        },
                        other => other.clone(),
                    })
                    .collect::<Vec<_>>(),
            );
            Value::Directions(distinct_sorted(
                angles
                    .into_iter()
                    .map(|a| clean(a).rem_euclid(360.0))
                    .collect(),
            ))
        }
    }
}

/// Remove bracketed text: `3D tracking (miniBirds, Ascension)` -> `3D tracking `.
fn strip_brackets(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0usize;
    for c in s.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The comparison key of a spelling: lower case, punctuation (incl. `_` and `-`) as spaces,
/// single spaces, each word through the typo table.
pub(crate) fn term_key(s: &str, lex: &Lexicon) -> String {
    let lowered = s.to_lowercase();
    let spaced: String = lowered
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '°' || c == '±' || c == '\'' {
                c
            } else {
                ' '
            }
        })
        .collect();
    spaced
        .split_whitespace()
        .map(|w| lex.typos.get(w).map(String::as_str).unwrap_or(w))
        .collect::<Vec<_>>()
        .join(" ")
}

fn plain_text(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn parse_terms(field: &Field, s: &str) -> Value {
    let lex = field.lexicon();
    let text = strip_brackets(&s.to_lowercase());
    let mut out = BTreeSet::new();
    split_items(field, lex, &text, 0, &mut out);
    Value::Terms(out)
}

/// Whole text first, then split on each delimiter in turn: a vocabulary phrase that contains a
/// delimiter (`gradual and abrupt`) is still found, and anything else ends up split fully.
fn split_items(field: &Field, lex: &Lexicon, text: &str, depth: usize, out: &mut BTreeSet<String>) {
    let key = term_key(text, lex);
    if key.is_empty() {
        return;
    }
    if field.term_count() > 0 {
        if let Some(t) = field.lookup_term(&key) {
            out.insert(t.to_string());
            return;
        }
    }
    match lex.delimiters.get(depth) {
        None => {
            out.insert(key);
        }
        Some(d) => {
            for part in text.split(d.as_str()) {
                split_items(field, lex, part, depth + 1, out);
            }
        }
    }
}

fn parse_text(lex: &Lexicon, s: &str) -> Value {
    let text = plain_text(s);
    let tokens = term_key(&text, lex)
        .split(' ')
        .filter(|w| !w.is_empty() && !lex.stopwords.contains(*w))
        .map(String::from)
        .collect();
    Value::Text { tokens, text }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;

    fn f(name: &str) -> Field {
        Schema::load(Schema::default_path())
            .unwrap()
            .field(name)
            .unwrap()
            .clone()
    }

    #[test]
    fn tokens_never_split_numbers() {
        let t = tokenize("180, 8");
        assert_eq!(t.len(), 3);
        assert!(matches!(t[0], Tok::Num { value, .. } if value == 180.0));
    }

    #[test]
    fn minus_after_a_number_is_a_range_dash() {
        assert_eq!(
            f("age_mean").parse("18-30"),
            Value::Numbers(vec![NumItem::Range(18.0, 30.0)])
        );
        assert_eq!(
            f("age_mean").parse("18 to 30"),
            Value::Numbers(vec![NumItem::Range(18.0, 30.0)])
        );
        assert_eq!(
            f("age_mean").parse("24.8 ± 4.1"),
            Value::Numbers(vec![NumItem::Single(24.8)])
        );
        assert_eq!(
            f("age_mean").parse("22 (young), 61 (old)"),
            Value::Numbers(vec![NumItem::Single(22.0), NumItem::Single(61.0)])
        );
    }

    #[test]
    fn number_set_units_and_signs() {
        let d = f("feedback_delay");
        assert_eq!(d.parse("500ms, 2s"), Value::Magnitudes(vec![0.5, 2.0]));
        assert_eq!(d.parse("1500 ms"), Value::Magnitudes(vec![1.5]));
        assert_eq!(d.parse("0/2s"), Value::Magnitudes(vec![0.0, 2.0]));
        let m = f("perturbation_magnitude");
        assert_eq!(m.parse("±9.3°"), Value::Magnitudes(vec![9.3]));
        assert_eq!(
            m.parse("0, 2, 4, 8, 16 CCW/CW"),
            Value::Magnitudes(vec![0.0, 2.0, 4.0, 8.0, 16.0])
        );
        assert_eq!(
            m.parse("clamped"),
            Value::Terms(["clamped".to_string()].into())
        );
    }

    #[test]
    fn locations_counts_and_directions() {
        let l = f("number_of_locations");
        assert_eq!(l.parse("8 targets"), Value::Count(8));
        assert_eq!(l.parse("8"), Value::Count(8));
        assert_eq!(l.parse("0"), Value::Directions(vec![0.0]));
        assert_eq!(l.parse("0°"), Value::Directions(vec![0.0]));
        assert_eq!(l.parse("-45, 360, 0"), Value::Directions(vec![0.0, 315.0]));
        assert_eq!(l.parse("120,60"), Value::Directions(vec![60.0, 120.0]));
    }

    #[test]
    fn categories_strip_brackets_and_fix_typos() {
        let e = f("environment");
        assert_eq!(
            e.parse("3D motion tracking (miniBirds, Acension Technologies)"),
            Value::Terms(["motion_tracking".to_string()].into())
        );
        assert_eq!(
            e.parse("tablet/mouse"),
            Value::Terms(["mouse".to_string(), "tablet".to_string()].into())
        );
        let s = f("perturbation_schedule");
        assert_eq!(
            s.parse("gradual and abrupt"),
            Value::Terms(["gradual_abrupt".to_string()].into())
        );
    }
}
