//! Text-comparison metrics against a reference extraction (the corpus tests and the benchmark
//! use `pdftotext` as the oracle; nothing in extraction calls this module).
//!
//! Same treatment on both sides: NFKC; lines recurring (digits masked) on >= 40% of pages
//! removed, since the reference keeps running headers that we must drop; number-only lines
//! removed (line numbers, page numbers, table cells, symmetric); a line-end hyphen joined when
//! the joined word occurs in that text, else kept as a hyphen; lowercase `[a-z0-9]+` tokens.

use serde::Serialize;
use std::collections::{HashMap, HashSet};
use unicode_normalization::UnicodeNormalization;

/// The digit-masked, case- and space-folded key under which lines are compared across pages.
pub fn recur_key(l: &str) -> String {
    let mut k = String::new();
    for c in l.chars().filter(|c| !c.is_whitespace()) {
        let c = if c.is_ascii_digit() {
            '#'
        } else {
            c.to_ascii_lowercase()
        };
        if !(c == '#' && k.ends_with('#')) {
            k.push(c);
        }
    }
    k
}

/// Keys of lines (with >= 3 letters) recurring on >= 40% of the non-empty pages (>= 3 pages).
pub fn recurring(pages: &[&str]) -> HashSet<String> {
    let n = pages.iter().filter(|p| !p.trim().is_empty()).count();
    if n < 3 {
        return HashSet::new();
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for p in pages {
        let keys: HashSet<String> = p
            .lines()
            .filter(|l| l.chars().filter(|c| c.is_alphabetic()).count() >= 3)
            .map(recur_key)
            .collect();
        for k in keys {
            *counts.entry(k).or_default() += 1;
        }
    }
    let min = (n * 4).div_ceil(10).max(2);
    counts
        .into_iter()
        .filter(|(_, c)| *c >= min)
        .map(|(k, _)| k)
        .collect()
}

/// A line holding only a 1-4 digit number.
pub fn is_number_line(l: &str) -> bool {
    let t = l.trim();
    !t.is_empty() && t.len() <= 4 && t.bytes().all(|b| b.is_ascii_digit())
}

/// Metric tokens of a text given as pages.
pub fn tokens(pages: &[&str]) -> Vec<String> {
    let rec = recurring(pages);
    let mut kept = String::new();
    for p in pages {
        for l in p.lines() {
            let alpha = l.chars().filter(|c| c.is_alphabetic()).count();
            if is_number_line(l) || (alpha >= 3 && rec.contains(&recur_key(l))) {
                continue;
            }
            kept.push_str(l);
            kept.push('\n');
        }
    }
    let t: String = kept.nfkc().collect::<String>().to_lowercase();
    let vocab: HashSet<&str> = t
        .split(|c: char| !c.is_ascii_lowercase())
        .filter(|w| !w.is_empty())
        .collect();
    let mut joined = String::with_capacity(t.len());
    let lines: Vec<&str> = t.split('\n').collect();
    let mut carry = String::new();
    for (i, raw) in lines.iter().enumerate() {
        let mut line = format!("{carry}{raw}");
        carry.clear();
        if line.ends_with('-') && i + 1 < lines.len() {
            let prefix: String = line[..line.len() - 1]
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_lowercase())
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let suffix: String = lines[i + 1]
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_lowercase())
                .collect();
            if !prefix.is_empty() && !suffix.is_empty() {
                if vocab.contains(format!("{prefix}{suffix}").as_str()) {
                    line.pop();
                }
                carry = line;
                continue;
            }
        }
        joined.push_str(&line);
        joined.push('\n');
    }
    joined.push_str(&carry);
    joined
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Size of the multiset intersection.
pub fn overlap(a: &[String], b: &[String]) -> usize {
    let mut m: HashMap<&str, usize> = HashMap::new();
    for x in a {
        *m.entry(x).or_default() += 1;
    }
    b.iter()
        .filter(|x| match m.get_mut(x.as_str()) {
            Some(c) if *c > 0 => {
                *c -= 1;
                true
            }
            _ => false,
        })
        .count()
}

/// Bigrams of consecutive alphabetic tokens (numbers skipped), the reading-order probe.
pub fn bigrams(t: &[String]) -> Vec<String> {
    let a: Vec<&String> = t
        .iter()
        .filter(|w| w.chars().all(|c| c.is_ascii_lowercase()))
        .collect();
    a.windows(2).map(|w| format!("{} {}", w[0], w[1])).collect()
}

/// Counts behind recall, precision and bigram order for one document.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counts {
    pub reference_tokens: usize,
    pub our_tokens: usize,
    pub common_tokens: usize,
    pub reference_bigrams: usize,
    pub kept_bigrams: usize,
}

impl Counts {
    pub fn compare(reference_pages: &[&str], our_pages: &[&str]) -> Counts {
        let (r, o) = (tokens(reference_pages), tokens(our_pages));
        let (rb, ob) = (bigrams(&r), bigrams(&o));
        Counts {
            reference_tokens: r.len(),
            our_tokens: o.len(),
            common_tokens: overlap(&r, &o),
            reference_bigrams: rb.len(),
            kept_bigrams: overlap(&rb, &ob),
        }
    }
    pub fn add(&mut self, o: &Counts) {
        self.reference_tokens += o.reference_tokens;
        self.our_tokens += o.our_tokens;
        self.common_tokens += o.common_tokens;
        self.reference_bigrams += o.reference_bigrams;
        self.kept_bigrams += o.kept_bigrams;
    }
    pub fn recall(&self) -> f64 {
        self.common_tokens as f64 / self.reference_tokens.max(1) as f64
    }
    pub fn precision(&self) -> f64 {
        self.common_tokens as f64 / self.our_tokens.max(1) as f64
    }
    pub fn order(&self) -> f64 {
        self.kept_bigrams as f64 / self.reference_bigrams.max(1) as f64
    }
}

/// Lines ending in a hyphen that follows a letter (an unresolved line-end hyphenation).
pub fn line_end_hyphens(text: &str) -> usize {
    text.lines()
        .filter(|l| l.ends_with('-') && l.chars().rev().nth(1).is_some_and(char::is_alphabetic))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_texts_score_one() {
        let c = Counts::compare(&["The cat sat\non the mat"], &["The cat sat\non the mat"]);
        assert_eq!((c.recall(), c.precision(), c.order()), (1.0, 1.0, 1.0));
    }

    #[test]
    fn dehyphenation_and_furniture_are_symmetric() {
        let pages = [
            "Header line\nadapta-\ntion here\n12",
            "Header line\nadaptation",
            "Header line\nmore text",
        ];
        let t = tokens(&pages);
        assert_eq!(t, vec!["adaptation", "here", "adaptation", "more", "text"]);
        let order = Counts::compare(&["a b c d"], &["c d a b"]);
        assert!(order.order() < 1.0 && order.recall() == 1.0);
    }
}
