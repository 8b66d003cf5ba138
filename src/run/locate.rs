//! Finding a model's evidence quote in the paper's text.
//!
//! The model is asked to copy a sentence verbatim, but "verbatim" to a language model means "the
//! same words": it re-joins words that the PDF split at a line end, writes `fi` for the `ﬁ`
//! ligature, straight quotes for curly ones and `-` for a minus sign, and collapses whitespace.
//! We therefore compare both sides in a *folded* form and map the match back to byte offsets of
//! the original text, so that evidence can be shown exactly where it stands in the paper.
//!
//! Folding is deliberately narrow: it never drops letters, digits or signs that change meaning
//! (a `-45°` quote does not match `45°`), so a grounded quote really is in the paper.

use unicode_normalization::UnicodeNormalization;

/// Where a quote was found: byte offsets into the searched text (`text[start..end]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// Longest gap (in folded characters) allowed between the parts of a quote the model elided with
/// an ellipsis: the parts must come from one passage, not from anywhere in the paper.
const MAX_ELLIPSIS_GAP: usize = 400;

/// Shortest quote we accept: a two-character "quote" would be found anywhere and ground nothing.
pub const MIN_QUOTE_CHARS: usize = 8;

/// A text folded for matching, with the original byte offset of every folded character.
struct Folded {
    chars: Vec<char>,
    /// `offsets[i]` = byte offset in the original of the character that produced `chars[i]`;
    /// one extra entry at the end holds the original length.
    offsets: Vec<usize>,
    /// `ends[i]` = byte offset just past the original character that produced `chars[i]`.
    ends: Vec<usize>,
}

fn fold_char(c: char, out: &mut Vec<char>) {
    match c {
        // every dash and minus sign reads as '-'
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE63}' | '\u{FF0D}' => out.push('-'),
        '\u{2018}' | '\u{2019}' | '\u{201B}' | '\u{2032}' | '`' | '\u{00B4}' => out.push('\''),
        // double quotes read as single ones: the prompt shows the paper with `"` -> `'`
        '"' | '\u{201C}' | '\u{201D}' | '\u{201F}' | '\u{2033}' => out.push('\''),
        '\\' => out.push('/'),
        '\u{00B1}' => out.push('±'),
        c if c.is_whitespace() || c.is_control() => {}
        c => {
            // NFKC expands ligatures (ﬁ -> fi) and compatibility forms; lowercase because models
            // re-capitalise sentence starts.
            for n in c.nfkc() {
                for l in n.to_lowercase() {
                    if !l.is_whitespace() {
                        out.push(l);
                    }
                }
            }
        }
    }
}

impl Folded {
    fn new(text: &str) -> Self {
        let mut chars = Vec::with_capacity(text.len());
        let mut offsets = Vec::with_capacity(text.len() + 1);
        let mut ends = Vec::with_capacity(text.len());
        let mut buf = Vec::with_capacity(4);
        for (i, c) in text.char_indices() {
            // A hyphen at a line end (hyphen, then whitespace containing a newline) is a
            // typesetting artefact: "adapta-\ntion" reads "adaptation".
            if matches!(c, '-' | '\u{00AD}' | '\u{2010}') {
                let rest = &text[i + c.len_utf8()..];
                let ws: &str = &rest[..rest.len() - rest.trim_start().len()];
                if ws.contains('\n') || c == '\u{00AD}' {
                    continue;
                }
            }
            buf.clear();
            fold_char(c, &mut buf);
            let end = i + c.len_utf8();
            for &f in &buf {
                chars.push(f);
                offsets.push(i);
                ends.push(end);
            }
        }
        offsets.push(text.len());
        Folded {
            chars,
            offsets,
            ends,
        }
    }
}

fn find_from(hay: &[char], needle: &[char], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| hay[i..i + needle.len()] == *needle)
}

/// Pre-folded text to search many quotes in (fold once per paper, not once per quote).
pub struct QuoteIndex<'a> {
    text: &'a str,
    folded: Folded,
}

impl<'a> QuoteIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        QuoteIndex {
            text,
            folded: Folded::new(text),
        }
    }

    /// Locate `quote` in the text. Parts separated by an ellipsis (`...` or `…`) must appear in
    /// order within a short distance. Returns `None` when the quote is too short or absent.
    pub fn locate(&self, quote: &str) -> Option<Span> {
        let parts: Vec<Vec<char>> = quote
            .split("...")
            .flat_map(|p| p.split('…'))
            .map(|p| {
                let mut v = Vec::new();
                for c in p.chars() {
                    fold_char(c, &mut v);
                }
                v
            })
            .filter(|p| !p.is_empty())
            .collect();
        let total: usize = parts.iter().map(Vec::len).sum();
        if parts.is_empty() || total < MIN_QUOTE_CHARS {
            return None;
        }
        let hay = &self.folded.chars;
        let mut search_from = 0;
        // Try each occurrence of the first part until the rest follows it.
        while let Some(first) = find_from(hay, &parts[0], search_from) {
            let mut end = first + parts[0].len();
            let mut ok = true;
            for part in &parts[1..] {
                match find_from(hay, part, end) {
                    Some(p) if p - end <= MAX_ELLIPSIS_GAP => end = p + part.len(),
                    _ => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                let start = self.folded.offsets[first];
                let stop = self.folded.ends[end - 1];
                debug_assert!(
                    self.text.is_char_boundary(start) && self.text.is_char_boundary(stop)
                );
                return Some(Span { start, end: stop });
            }
            search_from = first + 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(text: &'a str, q: &str) -> Option<&'a str> {
        QuoteIndex::new(text)
            .locate(q)
            .map(|s| &text[s.start..s.end])
    }

    #[test]
    fn exact_quote_found_with_offsets() {
        let t = "Intro. Twenty participants (12 female) took part. End.";
        assert_eq!(
            find(t, "Twenty participants (12 female) took part."),
            Some("Twenty participants (12 female) took part.")
        );
    }

    #[test]
    fn whitespace_line_breaks_and_hyphenation_are_tolerated() {
        let t = "The rotation was\n introduced abruptly after adapta-\ntion trials began.";
        assert!(find(
            t,
            "The rotation was introduced abruptly after adaptation trials"
        )
        .is_some());
        // a real hyphen inside a line stays a hyphen
        let t2 = "a visuo-motor rotation";
        assert!(find(t2, "a visuo-motor rotation").is_some());
        assert!(find(t2, "a visuomotor rotation").is_none());
    }

    #[test]
    fn ligatures_quotes_and_minus_signs_fold() {
        let t = "We ﬁxed the “clamp” at \u{2212}45° for the ﬁrst block.";
        let got = find(t, "We fixed the \"clamp\" at -45° for the first block.");
        assert_eq!(got, Some(t.trim_end_matches(|c| c != '.')));
    }

    #[test]
    fn sign_is_not_dropped() {
        let t = "a rotation of 45° was applied";
        assert!(find(t, "a rotation of -45° was applied").is_none());
    }

    #[test]
    fn case_is_ignored() {
        let t = "participants were right-handed";
        assert!(find(t, "Participants were right-handed").is_some());
    }

    #[test]
    fn absent_or_trivial_quotes_are_rejected() {
        let t = "Participants (n = 24) were recruited.";
        assert!(find(t, "Participants (n = 32) were recruited.").is_none());
        assert!(
            find(t, "n = 24").is_none(),
            "shorter than MIN_QUOTE_CHARS folded"
        );
        assert!(find(t, "").is_none());
    }

    #[test]
    fn ellipsis_parts_must_be_close_and_in_order() {
        let t = "We tested 24 participants. They used a tablet. The rotation was 45 degrees.";
        assert!(find(t, "We tested 24 participants ... rotation was 45 degrees").is_some());
        assert!(find(t, "rotation was 45 degrees ... We tested 24 participants").is_none());
        let far = format!(
            "We tested 24 participants.{}The rotation was 45.",
            " word".repeat(200)
        );
        assert!(find(&far, "We tested 24 participants … The rotation was 45").is_none());
    }

    #[test]
    fn offsets_are_char_boundaries_with_multibyte_text() {
        let t = "Größe: ±15° and −30° rotations were used in Exp. 2.";
        let s = QuoteIndex::new(t)
            .locate("±15° and -30° rotations")
            .expect("found");
        assert_eq!(&t[s.start..s.end], "±15° and −30° rotations");
    }
}
