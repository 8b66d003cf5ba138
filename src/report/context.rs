//! The passage around a quote, so that a reader sees the sentence where it stands.
//!
//! A value's quote is a sentence at exact byte offsets of the paper's text. The text itself is
//! not in the record (it would make every record as large as its paper) but in the run's text
//! cache (`OUT/text-cache/<sha256>.json`, `pdf::cache`). When the cached text is there and the
//! quote still stands at its offsets, the passage is the quote's paragraph, cut to a few hundred
//! bytes either side at sentence ends; otherwise the quote is shown alone.

use crate::pdf::Document;
use crate::run::locate::Span;
use serde::Serialize;

/// Bytes of context kept at most on each side of a quote.
const SIDE_BYTES: usize = 400;

/// A quote with the text before and after it in its paragraph (both may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Passage {
    pub before: String,
    pub quote: String,
    pub after: String,
}

impl Passage {
    /// The quote alone (no text to place it in).
    pub fn alone(quote: &str) -> Self {
        Passage {
            before: String::new(),
            quote: quote.to_string(),
            after: String::new(),
        }
    }

    /// The quote inside its paragraph of `doc`, when the text at `span` is the quote (after
    /// whitespace is collapsed); else the quote alone.
    pub fn around(doc: Option<&Document>, span: Span, quote: &str) -> Self {
        let Some(text) = doc.map(|d| d.text.as_str()) else {
            return Passage::alone(quote);
        };
        let Some(at) = text.get(span.start..span.end) else {
            return Passage::alone(quote);
        };
        if collapse(at) != collapse(quote) {
            return Passage::alone(quote);
        }
        let start = paragraph_start(text, span.start);
        let end = paragraph_end(text, span.end);
        Passage {
            before: one_line(&text[start..span.start]),
            quote: at.to_string(),
            after: one_line(&text[span.end..end]),
        }
    }
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn one_line(s: &str) -> String {
    let t = collapse(s);
    // Keep the separation from the quote the original had.
    let lead = if s.starts_with(char::is_whitespace) && !t.is_empty() {
        " "
    } else {
        ""
    };
    let trail = if s.ends_with(char::is_whitespace) && !t.is_empty() {
        " "
    } else {
        ""
    };
    format!("{lead}{t}{trail}")
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Start of the paragraph holding byte `at` (a blank line before it), at most [`SIDE_BYTES`]
/// back; a cut inside the paragraph starts after a sentence end.
fn paragraph_start(text: &str, at: usize) -> usize {
    let lo = ceil_boundary(text, at.saturating_sub(SIDE_BYTES));
    let window = &text[lo..at];
    if let Some(i) = window.rfind("\n\n") {
        return lo + i + 2;
    }
    if lo == 0 {
        return 0;
    }
    match window.find(". ") {
        Some(i) => lo + i + 2,
        None => lo,
    }
}

/// End of the paragraph holding byte `at`, at most [`SIDE_BYTES`] on; a cut inside the
/// paragraph ends after a sentence end.
fn paragraph_end(text: &str, at: usize) -> usize {
    let hi = floor_boundary(text, at + SIDE_BYTES);
    let window = &text[at..hi];
    if let Some(i) = window.find("\n\n") {
        return at + i;
    }
    if hi == text.len() {
        return hi;
    }
    match window.rfind(". ") {
        Some(i) => at + i + 1,
        None => hi,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Document {
        Document {
            path: "p.pdf".into(),
            sha256: "s".into(),
            pages: vec![],
            text: text.into(),
            sections: vec![],
            doi: None,
            title: None,
            authors: vec![],
            year: None,
            page_errors: vec![],
        }
    }

    #[test]
    fn quote_stands_in_its_paragraph() {
        let text = "Intro.\n\nWe tested people. Twenty participants took part.\nThey were right-handed.\n\nResults.";
        let q = "Twenty participants took part.";
        let start = text.find(q).unwrap();
        let d = doc(text);
        let p = Passage::around(
            Some(&d),
            Span {
                start,
                end: start + q.len(),
            },
            q,
        );
        assert_eq!(p.before, "We tested people. ");
        assert_eq!(p.quote, q);
        assert_eq!(p.after, " They were right-handed.");
    }

    #[test]
    fn a_quote_not_at_its_offsets_stands_alone() {
        let d = doc("Something else entirely, at these offsets.");
        let p = Passage::around(Some(&d), Span { start: 0, end: 9 }, "Twenty pa");
        assert_eq!(p, Passage::alone("Twenty pa"));
        let p = Passage::around(Some(&d), Span { start: 0, end: 999 }, "x");
        assert_eq!(p, Passage::alone("x"));
        assert_eq!(
            Passage::around(None, Span { start: 0, end: 1 }, "q"),
            Passage::alone("q")
        );
    }

    #[test]
    fn long_paragraphs_are_cut_at_sentence_ends() {
        let filler = "Words go here. ".repeat(60);
        let text = format!("{filler}The key sentence.{filler}");
        let q = "The key sentence.";
        let start = text.find(q).unwrap();
        let d = doc(&text);
        let p = Passage::around(
            Some(&d),
            Span {
                start,
                end: start + q.len(),
            },
            q,
        );
        assert!(
            p.before.len() <= SIDE_BYTES && p.before.starts_with("Words"),
            "{:?}",
            p.before
        );
        assert!(
            p.after.len() <= SIDE_BYTES && p.after.ends_with("here."),
            "{:?}",
            p.after
        );
    }
}
