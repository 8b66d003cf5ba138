//! The paper as the model reads it: its most relevant sections, packed with a question under
//! the job's `max_input_tokens` as counted by the model's own tokenizer and chat template.
//!
//! Invariant (checked at the end of [`pack`], not assumed): the rendered prompt's token count is
//! at most the budget. What did not fit is reported section by section, never silently lost.

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// One piece of the paper offered to the packer, in the order of the paper.
#[derive(Debug, Clone)]
pub struct Piece<'a> {
    pub heading: String,
    pub text: &'a str,
    /// Lower = more relevant; pieces are offered to the budget (and shown) in this order.
    pub priority: u8,
}

/// Priority of a section heading kind for parameter extraction. `None` = never included.
pub fn priority_of(kind: &crate::pdf::SectionKind) -> Option<u8> {
    use crate::pdf::SectionKind::*;
    match kind {
        Abstract | Methods | Participants | Procedure => Some(0),
        Other(_) => Some(2),
        Results => Some(3),
        Introduction => Some(4),
        Discussion | Conclusion => Some(5),
        Acknowledgments | References => None,
    }
}

/// What happened to one piece of the paper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PieceUse {
    pub heading: String,
    /// Characters of the piece included in the prompt (== total when whole).
    pub chars_kept: usize,
    pub chars_total: usize,
}

/// A packed prompt ready for the chat template.
#[derive(Debug, Clone, Serialize)]
pub struct Packed {
    pub system: String,
    pub user: String,
    /// The paper's text as the prompt shows it (sanitized): the answer grammar only lets the
    /// model quote runs of words of this text.
    pub paper: String,
    pub prompt_tokens: usize,
    pub pieces: Vec<PieceUse>,
}

impl Packed {
    /// True when some of the paper was left out.
    pub fn was_cut(&self) -> bool {
        self.pieces.iter().any(|p| p.chars_kept < p.chars_total)
    }
}

pub const SYSTEM: &str = "You are a meticulous research assistant. You read scientific papers on \
motor adaptation and record their experimental design parameters exactly as the paper states \
them. You answer with JSON only.";

/// Tokens of paper that a prompt must have room for at least, beside its instructions: a job
/// whose window holds less is refused before its model loads (see [`check_fits`]).
pub const MIN_PAPER_TOKENS: usize = 256;

/// Refuses, before any weight is read, a window of `max_input_tokens` that cannot hold the
/// system message, the chat template and the longest question's fixed text (`instructions`,
/// each counted as the model will see it) plus [`MIN_PAPER_TOKENS`] of paper and `margin`.
/// Every paper would otherwise fail one by one after the load.
pub fn check_fits(
    tokenizer: &crate::model::tokenizer::Tokenizer,
    instructions: &[String],
    max_input_tokens: usize,
    margin: usize,
) -> Result<()> {
    let tpl = tokenizer
        .chat_template()
        .context("the model has no chat template")?;
    let mut fixed = 0;
    for instr in instructions {
        let rendered = tpl.render(
            &[
                crate::model::chat::ChatMessage::system(SYSTEM),
                crate::model::chat::ChatMessage::user(user_message(instr, "")),
            ],
            true,
        )?;
        fixed = fixed.max(tokenizer.encode(&rendered)?.len());
    }
    let need = fixed + MIN_PAPER_TOKENS + margin;
    if max_input_tokens < need {
        bail!(
            "limits.max_input_tokens = {max_input_tokens} is too small for this model and schema: the instructions, chat template and longest question take {fixed} tokens, and a prompt needs room for at least {MIN_PAPER_TOKENS} tokens of paper; use at least {need}"
        );
    }
    Ok(())
}

/// The paper first, the task after it: small models follow instructions that come last, and
/// they cannot mistake the parameter descriptions for the paper's text.
fn user_message(instructions: &str, body: &str) -> String {
    format!("{}{instructions}", paper_block(body))
}

/// The paper part of the user message: what questions on a shared prefix all start with.
pub fn paper_block(body: &str) -> String {
    format!("PAPER (most relevant sections first; some parts may be omitted):\n{body}\n\n")
}

/// Text as the model sees it: whitespace (line breaks included) collapsed to single spaces, and
/// `"` and `\` replaced by `'` and `/`, so that any run of its words is a valid JSON string
/// (the answer grammar relies on it; `locate` folds the same characters back).
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            out.push(match c {
                '"' => '\'',
                '\\' => '/',
                c if c.is_control() => ' ',
                c => c,
            });
        }
    }
    out
}

fn piece_text(heading: &str, text: &str) -> String {
    format!("\n### {heading}\n{}\n", sanitize(text))
}

/// Longest prefix of `text` of at most `max_chars` characters that ends at a sentence or line
/// end when one is near (so a cut piece does not end mid-word).
fn cut_at_boundary(text: &str, max_chars: usize) -> &str {
    let end = text
        .char_indices()
        .nth(max_chars)
        .map_or(text.len(), |(i, _)| i);
    let head = &text[..end];
    if end == text.len() {
        return head;
    }
    let floor = head.len() * 3 / 4;
    match head.rfind(['.', '\n']) {
        Some(i) if i >= floor => &head[..=i],
        _ => head,
    }
}

/// Packs `pieces` under `max_tokens` with `instr` after the paper: the packed paper plus
/// `instr` fits. `count` renders a complete user message through the chat template (system
/// message included) and returns its token count. Questions on a shared prefix pass their
/// longest question, so that the paper and any one question fit the budget together.
pub fn pack(
    instr: &str,
    pieces: &[Piece<'_>],
    max_tokens: usize,
    count: &mut dyn FnMut(&str, &str) -> Result<usize>,
) -> Result<Packed> {
    let instr = instr.to_string();
    let fixed = count(SYSTEM, &user_message(&instr, ""))?;
    if fixed >= max_tokens {
        bail!(
            "max_input_tokens = {max_tokens} leaves no room for the paper: the instructions and \
chat template alone take {fixed} tokens"
        );
    }
    let mut order: Vec<usize> = (0..pieces.len()).collect();
    order.sort_by_key(|&i| (pieces[i].priority, i));
    let mut body = String::new();
    let mut used = vec![0usize; pieces.len()];
    let mut tokens = fixed;
    for &i in &order {
        let p = &pieces[i];
        let whole = piece_text(&p.heading, p.text);
        let with = count(SYSTEM, &user_message(&instr, &format!("{body}{whole}")))?;
        if with <= max_tokens {
            body.push_str(&whole);
            used[i] = p.text.trim().chars().count();
            tokens = with;
            continue;
        }
        // Does not fit whole: binary-search the longest boundary-cut prefix that fits.
        let total = p.text.trim().chars().count();
        let (mut lo, mut hi) = (0usize, total);
        let mut best: Option<(String, usize, usize)> = None;
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            let part = cut_at_boundary(p.text.trim(), mid);
            let cand = piece_text(&p.heading, part);
            let n = count(SYSTEM, &user_message(&instr, &format!("{body}{cand}")))?;
            if n <= max_tokens {
                best = Some((cand, part.chars().count(), n));
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        if let Some((cand, kept, n)) = best.filter(|b| b.1 >= 200) {
            body.push_str(&cand);
            used[i] = kept;
            tokens = n;
        }
    }
    let user = user_message(&instr, &body);
    let paper = body;
    // The invariant, re-checked on the final text.
    let final_tokens = count(SYSTEM, &user)?;
    if final_tokens > max_tokens {
        bail!("internal: packed prompt has {final_tokens} tokens > budget {max_tokens}");
    }
    debug_assert!(tokens == final_tokens || tokens >= fixed);
    let pieces = pieces
        .iter()
        .zip(used)
        .map(|(p, kept)| PieceUse {
            heading: p.heading.clone(),
            chars_kept: kept,
            chars_total: p.text.trim().chars().count(),
        })
        .collect();
    Ok(Packed {
        system: SYSTEM.to_string(),
        user,
        paper,
        prompt_tokens: final_tokens,
        pieces,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whitespace words as "tokens": a stand-in counter with the same monotonic behaviour as a
    /// real tokenizer, so the packing logic is tested on its own.
    fn words(system: &str, user: &str) -> Result<usize> {
        Ok(system.split_whitespace().count() + user.split_whitespace().count() + 5)
    }

    /// Stands for a question after the paper.
    const TASK: &str = "QUESTION about the experiment. For EVERY parameter, answer.";

    #[test]
    fn relevant_sections_come_first_and_references_are_skipped_by_caller() -> Result<()> {
        let methods = "Twenty participants reached to eight targets. ".repeat(5);
        let intro = "Motor adaptation is studied widely. ".repeat(5);
        let pieces = [
            Piece {
                heading: "Introduction".into(),
                text: &intro,
                priority: 4,
            },
            Piece {
                heading: "Methods".into(),
                text: &methods,
                priority: 0,
            },
        ];
        let p = pack(TASK, &pieces, 100_000, &mut words)?;
        let m = p.user.find("### Methods").expect("methods in prompt");
        assert!(p.user.ends_with(TASK), "the question comes after the paper");
        let i = p.user.find("### Introduction").expect("intro in prompt");
        assert!(m < i, "methods first");
        assert!(p
            .user
            .contains("Twenty participants reached to eight targets."));
        assert!(!p.was_cut());
        Ok(())
    }

    #[test]
    fn budget_is_respected_and_cuts_are_reported() -> Result<()> {
        let methods = "Sixteen right-handed adults were tested on a tablet. ".repeat(200);
        let intro = "Background sentence here. ".repeat(200);
        let pieces = [
            Piece {
                heading: "Methods".into(),
                text: &methods,
                priority: 0,
            },
            Piece {
                heading: "Introduction".into(),
                text: &intro,
                priority: 4,
            },
        ];
        let fixed = words(SYSTEM, TASK)?;
        let budget = fixed + 900;
        let p = pack(TASK, &pieces, budget, &mut words)?;
        assert!(p.prompt_tokens <= budget);
        assert_eq!(p.prompt_tokens, words(&p.system, &p.user)?);
        assert!(p.was_cut());
        assert!(p.pieces[0].chars_kept > 0 && p.pieces[0].chars_kept < p.pieces[0].chars_total);
        assert_eq!(
            p.pieces[1].chars_kept, 0,
            "no room left for the introduction"
        );
        // the cut ends at a sentence boundary
        let body = &p.user[p.user.find("### Methods").expect("methods")..];
        let body = &body[..body.find("QUESTION").unwrap_or(body.len())];
        assert!(
            body.trim_end().ends_with('.'),
            "{}",
            &body[body.len() - 40..]
        );
        Ok(())
    }

    #[test]
    fn a_budget_smaller_than_the_instructions_is_an_error() {
        let pieces = [Piece {
            heading: "Methods".into(),
            text: "x",
            priority: 0,
        }];
        let err = pack(TASK, &pieces, 10, &mut words).expect_err("too small");
        assert!(format!("{err:#}").contains("max_input_tokens"));
    }

    #[test]
    fn sanitized_text_is_json_safe_single_line() {
        let s = sanitize("A \"quoted\"  word\nand a back\\slash\t end");
        assert_eq!(s, "A 'quoted' word and a back/slash end");
    }
}
