//! What the table holds for a paper: grounded values with their evidence, and what was
//! dropped with the reason. The values come from the questions of `run::question`; every one
//! carries its quote (the sentence it was read from), the quote's byte offsets in the paper's
//! text and its page, so a reader can check it where it stands.

use crate::run::locate::Span;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How the answer text was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerCompleteness {
    /// The model closed the JSON document.
    Complete,
    /// Some question's answer stopped at `max_new_tokens`; its values were not kept.
    Truncated { experiments_kept: usize },
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
    /// True when the model wrote null and the value is the one every sentence shown for the
    /// field states (see `run::question::read_answer`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sole_offer: bool,
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
    /// The quote is not in the paper (records of paramx before pipeline version 3, whose
    /// answers held free quotes; read so that old records still merge).
    QuoteNotInPaper,
    /// The value reads as "unknown" (`?`, `not reported`...).
    EmptyValue,
    /// The same experiment number appeared twice (records before pipeline version 3).
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

/// The 1-based page of byte `offset`, given each page's first byte offset in ascending order.
pub fn page_of(page_starts: &[usize], offset: usize) -> Option<usize> {
    match page_starts.partition_point(|&s| s <= offset) {
        0 => None,
        n => Some(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_of_offsets() {
        let starts = [0, 10, 25];
        assert_eq!(page_of(&starts, 0), Some(1));
        assert_eq!(page_of(&starts, 10), Some(2));
        assert_eq!(page_of(&starts, 99), Some(3));
        assert_eq!(page_of(&[5], 0), None);
    }
}
