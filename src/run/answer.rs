//! The model's answer: its JSON Schema, reading it back, and grounding every value in the paper.
//!
//! The answer format is derived from the parameter schema (one optional property per design
//! parameter, each `{value, quote}`), so adding a column to `configs/schema.toml` changes the
//! prompt, the grammar and the table together. Grounding is where "right by construction" is
//! enforced: a value survives only if its quote is found in the paper's text; everything else is
//! dropped *and recorded*, so the run reports how much the model made up.

use crate::run::locate::{QuoteIndex, Span, MIN_QUOTE_CHARS};
use crate::schema::{Role, Schema};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest value and quote the grammar lets the model write: bounds the answer's length (and so
/// the run's time) and stops a small model from looping inside one string.
const MAX_VALUE_CHARS: usize = 120;
const MAX_QUOTE_CHARS: usize = 240;
const MAX_EXPERIMENTS: usize = 12;
const MAX_LABEL_CHARS: usize = 60;

/// The fields the model is asked for: design parameters (identity columns come from the PDF).
pub fn asked_fields(schema: &Schema) -> impl Iterator<Item = &crate::schema::Field> {
    schema
        .fields()
        .iter()
        .filter(|f| f.role == Role::Parameter && f.scored)
}

/// A Lark literal (llguidance reads string literals as JSON strings).
fn lit(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The answer grammar (llguidance's Lark dialect): compact JSON of the shape
/// `{"experiments": [{"experiment": N, "label": "...", "<field>": {"value": "...", "quote": "..."}, ...}]}`
/// with the design parameters as optional keys in schema order, and every `quote` restricted to
/// a run of whole words of `source` (the paper text the prompt showed). The model therefore
/// *cannot* quote its instructions or invent a sentence: a small model that tries copies the
/// paper instead. `source` must hold no `"` or `\` (see `prompt::sanitize`), so a quote is always
/// a valid JSON string.
pub fn answer_grammar(schema: &Schema, source: &str) -> String {
    let mut g = String::new();
    g.push_str(&format!(
        "start: {} exp ({} exp){{0,{}}} {}\n",
        lit("{\"experiments\": ["),
        lit(", "),
        MAX_EXPERIMENTS - 1,
        lit("]}")
    ));
    g.push_str(&format!(
        "exp: {} NUM {} LABEL {}",
        lit("{\"experiment\": "),
        lit(", \"label\": \""),
        lit("\"")
    ));
    let fields: Vec<_> = asked_fields(schema).collect();
    for (i, _) in fields.iter().enumerate() {
        g.push_str(&format!(" f{i}?"));
    }
    g.push_str(&format!(" {}\n", lit("}")));
    for (i, f) in fields.iter().enumerate() {
        g.push_str(&format!(
            "f{i}: {} VALUE {} QUOTE {}\n",
            lit(&format!(", \"{}\": {{\"value\": \"", f.name)),
            lit("\", \"quote\": \""),
            lit("\"}")
        ));
    }
    g.push_str("NUM: /[1-9][0-9]?/\n");
    g.push_str(&format!(
        "LABEL: /[^\"\\\\\\x00-\\x1f]{{0,{MAX_LABEL_CHARS}}}/\n"
    ));
    // A value starts with a word or number, not with the list punctuation a small model likes to
    // lead with (`", 100"`).
    g.push_str(&format!(
        "VALUE: /[^\"\\\\\\x00-\\x1f ,;.][^\"\\\\\\x00-\\x1f]{{0,{}}}/\n",
        MAX_VALUE_CHARS - 1
    ));
    g.push_str(&format!(
        "QUOTE: %regex {{ \"substring_words\": {} }} & /[^\"\\\\\\x00-\\x1f]{{{MIN_QUOTE_CHARS},{MAX_QUOTE_CHARS}}}/\n",
        lit(source)
    ));
    g
}

/// One cell as the model wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawCell {
    pub value: String,
    pub quote: String,
}

/// One experiment as the model wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawExperiment {
    pub experiment: u32,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(flatten)]
    pub cells: BTreeMap<String, RawCell>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawAnswer {
    pub experiments: Vec<RawExperiment>,
}

/// How the answer text was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerCompleteness {
    /// The model closed the JSON document.
    Complete,
    /// Generation stopped at `max_new_tokens`; the experiments completed before the cut were kept.
    Truncated { experiments_kept: usize },
}

/// Reads the model's answer. A complete document parses as is; an answer cut by the token limit
/// keeps what was finished before the cut: whole experiments, and the finished fields of the
/// experiment in progress (the grammar guarantees everything before the cut is valid).
pub fn parse_answer(text: &str) -> Result<(RawAnswer, AnswerCompleteness)> {
    if let Ok(a) = serde_json::from_str::<RawAnswer>(text) {
        return Ok((a, AnswerCompleteness::Complete));
    }
    let Some((cut, closing)) = last_complete_cut(text) else {
        bail!(
            "the answer is not JSON and holds no complete value: {:?}",
            preview(text)
        );
    };
    let repaired = format!("{}{closing}", &text[..cut]);
    let a: RawAnswer = serde_json::from_str(&repaired)
        .with_context(|| format!("cannot read the answer: {:?}", preview(text)))?;
    let kept = a.experiments.len();
    Ok((
        a,
        AnswerCompleteness::Truncated {
            experiments_kept: kept,
        },
    ))
}

fn preview(text: &str) -> String {
    text.chars().take(200).collect()
}

/// The last place a prefix of `{"experiments": [{..., "f": {...}, ...}, ...` can be cut and
/// closed: just after a finished field (close with `}]}`) or a finished experiment (`]}`).
fn last_complete_cut(text: &str) -> Option<(usize, &'static str)> {
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    let mut last = None;
    for (i, b) in text.bytes().enumerate() {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                // depth 3: inside an experiment object; depth 2: inside the experiments array
                if b == b'}' && depth == 3 {
                    last = Some((i + 1, "}]}"));
                } else if b == b'}' && depth == 2 {
                    last = Some((i + 1, "]}"));
                }
            }
            _ => {}
        }
    }
    last
}

/// A value that survived grounding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundedValue {
    /// As the model wrote it.
    pub raw: String,
    /// Through the schema's vocabulary and units: what the table holds.
    pub value: String,
    pub quote: String,
    /// Where the quote stands in the paper's text (byte offsets) and its page (1-based).
    pub span: Span,
    pub page: Option<usize>,
    /// True when the quote stands outside the experiment's own text (shared methods, title
    /// page): the value is inherited by the experiment and keeps the quote it came from.
    #[serde(default)]
    pub inherited: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundedExperiment {
    pub experiment: u32,
    pub label: Option<String>,
    pub values: BTreeMap<String, GroundedValue>,
}

/// Why a value the model gave is not in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The quote is not in the paper (after folding whitespace, hyphenation, ligatures).
    QuoteNotInPaper,
    /// The value reads as "unknown" (`?`, `not reported`...).
    EmptyValue,
    /// The same experiment number appeared twice; the first one was kept.
    DuplicateExperiment,
    /// The quote does not state the value (see `run::evidence::support`); `detail` says why.
    Unsupported,
    /// A question's answer could not be read (cut by `max_new_tokens`); `field` names the
    /// question's group.
    Unreadable,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DroppedValue {
    pub experiment: u32,
    pub field: String,
    pub value: String,
    pub quote: String,
    pub reason: DropReason,
    /// What exactly failed (for `unsupported`: the number or item the quote lacks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Grounded {
    pub experiments: Vec<GroundedExperiment>,
    pub dropped: Vec<DroppedValue>,
}

/// Keeps the values whose quotes are in `text`, normalized through the schema. `page_starts`
/// holds each page's first byte offset in `text`, ascending (page `i + 1` starts at
/// `page_starts[i]`).
pub fn ground(answer: &RawAnswer, schema: &Schema, text: &str, page_starts: &[usize]) -> Grounded {
    let index = QuoteIndex::new(text);
    let mut out = Grounded::default();
    for exp in &answer.experiments {
        if out
            .experiments
            .iter()
            .any(|e| e.experiment == exp.experiment)
        {
            for (field, cell) in &exp.cells {
                out.dropped
                    .push(dropped(exp, field, cell, DropReason::DuplicateExperiment));
            }
            continue;
        }
        let mut values = BTreeMap::new();
        for (name, cell) in &exp.cells {
            // The grammar only admits schema fields; a hand-written answer file might not.
            let Some(field) = schema.field(name) else {
                continue;
            };
            let value = field.normalize(&cell.value);
            if value.is_empty() {
                out.dropped
                    .push(dropped(exp, name, cell, DropReason::EmptyValue));
                continue;
            }
            let Some(span) = index.locate(&cell.quote) else {
                out.dropped
                    .push(dropped(exp, name, cell, DropReason::QuoteNotInPaper));
                continue;
            };
            let page = page_of(page_starts, span.start);
            values.insert(
                name.clone(),
                GroundedValue {
                    raw: cell.value.clone(),
                    value,
                    quote: cell.quote.clone(),
                    span,
                    page,
                    inherited: false,
                },
            );
        }
        out.experiments.push(GroundedExperiment {
            experiment: exp.experiment,
            label: exp.label.clone().filter(|l| !l.trim().is_empty()),
            values,
        });
    }
    out.experiments.sort_by_key(|e| e.experiment);
    out
}

fn dropped(exp: &RawExperiment, field: &str, cell: &RawCell, reason: DropReason) -> DroppedValue {
    DroppedValue {
        experiment: exp.experiment,
        field: field.to_string(),
        value: cell.value.clone(),
        quote: cell.quote.clone(),
        reason,
        detail: None,
    }
}

pub fn page_of(page_starts: &[usize], offset: usize) -> Option<usize> {
    match page_starts.partition_point(|&s| s <= offset) {
        0 => None,
        n => Some(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::load_default().expect("default schema")
    }

    #[test]
    fn answer_grammar_lists_parameters_not_identity_columns() {
        let g = answer_grammar(&schema(), "Sixteen adults took part.");
        assert!(g.contains("\\\"n_total\\\""), "{g}");
        assert!(g.contains("\\\"perturbation_magnitude\\\""));
        assert!(!g.contains("\\\"study_id\\\""));
        assert!(!g.contains("\\\"doi_or_url\\\""));
        assert!(!g.contains("\\\"notes\\\""), "unscored column is not asked");
        assert!(g.contains("Sixteen adults took part."));
    }

    #[test]
    fn complete_answer_parses() -> Result<()> {
        let t = r#"{"experiments":[{"experiment":1,"n_total":{"value":"24","quote":"Twenty-four adults took part."}}]}"#;
        let (a, c) = parse_answer(t)?;
        assert_eq!(c, AnswerCompleteness::Complete);
        assert_eq!(a.experiments[0].cells["n_total"].value, "24");
        Ok(())
    }

    #[test]
    fn truncated_answer_keeps_finished_experiments() -> Result<()> {
        let t = r#"{"experiments":[{"experiment":1,"n_total":{"value":"24","quote":"a } quote"}},{"experiment":2,"n_total":{"value":"3"#;
        let (a, c) = parse_answer(t)?;
        assert_eq!(
            c,
            AnswerCompleteness::Truncated {
                experiments_kept: 1
            }
        );
        assert_eq!(a.experiments.len(), 1);
        assert!(parse_answer(r#"{"experiments":[{"experiment":1,"#).is_err());
        assert!(parse_answer("").is_err());
        Ok(())
    }

    #[test]
    fn grounding_keeps_found_quotes_drops_the_rest_and_normalizes() -> Result<()> {
        let text = "Page one.\nMethods. Twenty-four right-handed adults took part.\nFeedback was delayed by 500 ms or 2 s.";
        let pages = [0, 10];
        let t = r#"{"experiments":[{"experiment":1,
            "n_total":{"value":"24","quote":"Twenty-four right-handed adults took part."},
            "feedback_delay":{"value":"500ms, 2s","quote":"Feedback was delayed by 500 ms or 2 s"},
            "age_mean":{"value":"22","quote":"Mean age was 22 years."},
            "handedness":{"value":"?","quote":"right-handed adults"}}]}"#;
        let (a, _) = parse_answer(t)?;
        let g = ground(&a, &schema(), text, &pages);
        let e = &g.experiments[0];
        assert_eq!(e.values["n_total"].value, "24");
        assert_eq!(e.values["n_total"].page, Some(2));
        let span = e.values["n_total"].span;
        assert_eq!(
            &text[span.start..span.end],
            "Twenty-four right-handed adults took part."
        );
        assert_eq!(e.values["feedback_delay"].value, "0.5 s, 2 s");
        assert!(!e.values.contains_key("age_mean"));
        let reasons: Vec<_> = g
            .dropped
            .iter()
            .map(|d| (d.field.as_str(), d.reason))
            .collect();
        assert!(reasons.contains(&("age_mean", DropReason::QuoteNotInPaper)));
        assert!(reasons.contains(&("handedness", DropReason::EmptyValue)));
        Ok(())
    }

    #[test]
    fn duplicate_experiment_numbers_are_dropped_and_counted() -> Result<()> {
        let text = "Sixteen participants were tested in each experiment.";
        let q = "Sixteen participants were tested";
        let t = format!(
            r#"{{"experiments":[{{"experiment":1,"n_total":{{"value":"16","quote":"{q}"}}}},{{"experiment":1,"n_total":{{"value":"16","quote":"{q}"}}}}]}}"#
        );
        let (a, _) = parse_answer(&t)?;
        let g = ground(&a, &schema(), text, &[0]);
        assert_eq!(g.experiments.len(), 1);
        assert_eq!(g.dropped[0].reason, DropReason::DuplicateExperiment);
        Ok(())
    }
}
