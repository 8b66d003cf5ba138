//! One paper's result, as stored on disk: the unit the run writes, resumes from and merges.

use crate::pdf::Document;
use crate::run::answer::{AnswerCompleteness, DroppedValue, GroundedExperiment};
use crate::run::prompt::PieceUse;
use crate::run::store::{HasKey, RecordKey};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Where a paper failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Reading the PDF's text.
    Text,
    /// Building the prompt (e.g. the budget cannot hold the instructions).
    Prompt,
    /// Running the model.
    Generate,
    /// Reading the model's answer.
    Answer,
}

/// What the model produced for a paper, after grounding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaperResult {
    pub experiments: Vec<GroundedExperiment>,
    pub dropped: Vec<DroppedValue>,
    pub completeness: AnswerCompleteness,
    /// Why generation ended: `stop`, `constraint` (the JSON was complete) or `length`.
    pub finish: String,
    /// Tokens the model read (the shared prefix once, plus every question) and wrote.
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Tokens of the shared prefix (the paper): each question's prompt is the prefix plus its
    /// own `prompt_tokens`.
    #[serde(default)]
    pub prefix_tokens: usize,
    /// Which parts of the paper the prompt held (and how much of each).
    pub prompt_pieces: Vec<PieceUse>,
    /// The model's answer, verbatim, when one answer covered the paper (older records);
    /// empty when the paper was asked [`Self::questions`].
    #[serde(default)]
    pub raw_answer: String,
    /// Every question asked of the paper, with its prompt and the model's verbatim answer:
    /// the evidence behind every grounded and dropped value.
    #[serde(default)]
    pub questions: Vec<AskedQuestion>,
}

/// One question asked of a paper and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AskedQuestion {
    pub experiment: u32,
    pub group: String,
    /// The question as the model read it after the paper.
    pub prompt: String,
    pub answer: String,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// `stop`, `constraint` (the JSON was complete) or `length`.
    pub finish: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Ok(PaperResult),
    Error { stage: Stage, message: String },
}

/// Wall-clock figures: kept apart from the result so that the result is reproducible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// This paper's share of the batch's prefill and decode time.
    pub prefill_secs: f64,
    pub decode_secs: f64,
    /// Of `decode_secs`, the seconds the answer grammar took on the critical path (token
    /// masks, commits, forced tokens): `decode_secs - grammar_secs` is the same decode
    /// unconstrained. 0 in records written before it was measured.
    #[serde(default)]
    pub grammar_secs: f64,
    pub batch_secs: f64,
    pub batch_size: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaperRecord {
    pub key: RecordKey,
    /// The PDF's file name (what a reader recognises); the sha256 identifies it.
    pub source_file: String,
    pub doi: Option<String>,
    pub title: Option<String>,
    /// Authors' surnames, in order, and the year, as page 1 gives them.
    #[serde(default)]
    pub authors: Vec<String>,
    #[serde(default)]
    pub year: Option<u32>,
    pub pages: usize,
    pub outcome: Outcome,
    pub timing: Option<Timing>,
}

impl HasKey for PaperRecord {
    fn key(&self) -> &RecordKey {
        &self.key
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

impl PaperRecord {
    pub fn new(doc: &Document, key: RecordKey, outcome: Outcome, timing: Option<Timing>) -> Self {
        PaperRecord {
            key,
            source_file: file_name(&doc.path),
            doi: doc.doi.clone(),
            title: doc.title.clone(),
            authors: doc.authors.clone(),
            year: doc.year,
            pages: doc.pages.len(),
            outcome,
            timing,
        }
    }

    /// A PDF whose text could not be read. Keyed by the file's sha256 when its bytes can be
    /// read, else by the sha256 of its path (so the error is still recorded once).
    pub fn pdf_error(path: &Path, job_hash: &str, message: &str) -> Self {
        let sha256 = match std::fs::read(path) {
            Ok(bytes) => crate::pdf::sha256_hex(&bytes),
            Err(_) => crate::pdf::sha256_hex(path.to_string_lossy().as_bytes()),
        };
        PaperRecord {
            key: RecordKey {
                sha256,
                job_hash: job_hash.to_string(),
            },
            source_file: file_name(path),
            doi: None,
            title: None,
            authors: Vec::new(),
            year: None,
            pages: 0,
            outcome: Outcome::Error {
                stage: Stage::Text,
                message: message.to_string(),
            },
            timing: None,
        }
    }

    /// The row id the gold uses: first author's surname and year (`Butcher2018`), plus `EXPn`
    /// when the paper has several experiments. `None` without a surname and a year.
    pub fn study_id(&self, experiment: u32, experiments: usize) -> Option<String> {
        let surname: String = self
            .authors
            .first()?
            .chars()
            .filter(|c| c.is_alphabetic())
            .collect();
        let year = self.year?;
        Some(if experiments > 1 {
            format!("{surname}{year}EXP{experiment}")
        } else {
            format!("{surname}{year}")
        })
    }

    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok(_))
    }

    /// One line for the progress display / log.
    pub fn progress_line(&self) -> String {
        match &self.outcome {
            Outcome::Ok(r) => {
                let values: usize = r.experiments.iter().map(|e| e.values.len()).sum();
                let secs = self
                    .timing
                    .as_ref()
                    .map_or(0.0, |t| t.prefill_secs + t.decode_secs);
                format!(
                    "{}: {} experiment(s), {values} value(s), {} dropped, {}+{} tokens, {secs:.1} s{}",
                    self.source_file,
                    r.experiments.len(),
                    r.dropped.len(),
                    r.prompt_tokens,
                    r.generated_tokens,
                    if matches!(r.completeness, AnswerCompleteness::Truncated { .. }) {
                        " (answer cut at max_new_tokens)"
                    } else {
                        ""
                    }
                )
            }
            Outcome::Error { stage, message } => {
                format!("{}: FAILED at {stage:?}: {message}", self.source_file)
            }
        }
    }
}
