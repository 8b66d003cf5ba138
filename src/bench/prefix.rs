//! The shared-prefix benchmark behind `paramx bench-prefix`: one paper-sized prefix and many
//! short questions, answered once on the shared prefix ([`Generator::generate_shared`]) and once
//! as separate prompts (`prefix ++ question`, each prefilled from scratch), in the same process,
//! with the answers compared token for token. A benchmark, not a test: nothing asserts a speed.

use crate::generate::{GenerateParams, Generator};
use anyhow::{bail, Result};
use serde::Serialize;
use std::time::Instant;

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct Shape {
    pub prefix_tokens: usize,
    pub questions: usize,
    pub question_tokens: usize,
    pub answer_tokens: usize,
    pub prefill_chunk: usize,
    /// Questions run together on the shared prefix.
    pub rows: usize,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub shape: Shape,
    pub shared_secs: f64,
    pub shared_prefix_secs: f64,
    pub separate_secs: f64,
    /// `separate_secs / shared_secs`.
    pub speedup: f64,
    /// Questions whose greedy answer is the same token for token both ways.
    pub same_answers: usize,
    pub shared_prompt_tokens: usize,
    pub separate_prompt_tokens: usize,
}

/// Cuts `text_tokens` into a prefix and `questions` distinct question windows taken from after
/// it (real text, so the model attends as it would to a paper and a question).
pub fn workload(text_tokens: &[u32], shape: &Shape) -> Result<(Vec<u32>, Vec<Vec<u32>>)> {
    let need = shape.prefix_tokens + shape.questions * shape.question_tokens;
    if text_tokens.len() < need {
        bail!(
            "the text has {} tokens; the shape needs {need} (prefix + questions)",
            text_tokens.len()
        );
    }
    let prefix = text_tokens[..shape.prefix_tokens].to_vec();
    let questions = (0..shape.questions)
        .map(|i| {
            let s = shape.prefix_tokens + i * shape.question_tokens;
            text_tokens[s..s + shape.question_tokens].to_vec()
        })
        .collect();
    Ok((prefix, questions))
}

/// Runs both ways, shared first.
pub fn run(
    gen: &Generator<'_>,
    prefix: &[u32],
    questions: &[Vec<u32>],
    shape: Shape,
) -> Result<Outcome> {
    let params = GenerateParams {
        max_new_tokens: shape.answer_tokens,
        prefill_chunk: shape.prefill_chunk,
        stop_tokens: Some(Vec::new()),
        ..Default::default()
    };
    let t = Instant::now();
    let shared = gen.generate_shared(prefix, questions, shape.rows, &params, None)?;
    let shared_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut same = 0;
    let mut separate_prompt_tokens = 0;
    for (i, q) in questions.iter().enumerate() {
        let whole: Vec<u32> = prefix.iter().chain(q).copied().collect();
        separate_prompt_tokens += whole.len();
        let alone = gen.generate(&[whole], &params, None)?;
        if alone.sequences[0].tokens == shared.rows.sequences[i].tokens {
            same += 1;
        }
    }
    let separate_secs = t.elapsed().as_secs_f64();
    Ok(Outcome {
        shared_secs,
        shared_prefix_secs: shared.prefix_secs,
        separate_secs,
        speedup: separate_secs / shared_secs.max(1e-9),
        same_answers: same,
        shared_prompt_tokens: prefix.len() + questions.iter().map(Vec::len).sum::<usize>(),
        separate_prompt_tokens,
        shape,
    })
}

impl Outcome {
    pub fn to_text(&self, machine: &str) -> String {
        format!(
            "shared prefix vs separate prompts ({machine})\n\
prefix {} tokens, {} questions of {} tokens ({} at a time), {} answer tokens each\n\
{:<22} {:>10} {:>14}\n{:<22} {:>10.1} {:>14}\n{:<22} {:>10.1} {:>14}\n\
speedup {:.2}x, same greedy answers {}/{} (prefix prefill {:.1} s)\n",
            self.shape.prefix_tokens,
            self.shape.questions,
            self.shape.question_tokens,
            self.shape.rows,
            self.shape.answer_tokens,
            "way",
            "wall s",
            "prompt tokens",
            "shared prefix",
            self.shared_secs,
            self.shared_prompt_tokens,
            "separate prompts",
            self.separate_secs,
            self.separate_prompt_tokens,
            self.speedup,
            self.same_answers,
            self.shape.questions,
            self.shared_prefix_secs,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_takes_distinct_windows_after_the_prefix() -> Result<()> {
        let text: Vec<u32> = (0..100).collect();
        let shape = Shape {
            prefix_tokens: 40,
            questions: 3,
            question_tokens: 5,
            answer_tokens: 2,
            prefill_chunk: 16,
            rows: 3,
        };
        let (p, q) = workload(&text, &shape)?;
        assert_eq!(p.len(), 40);
        assert_eq!(
            q,
            vec![
                (40..45).collect::<Vec<u32>>(),
                (45..50).collect(),
                (50..55).collect()
            ]
        );
        let big = Shape {
            prefix_tokens: 99,
            ..shape
        };
        assert!(workload(&text, &big).is_err());
        Ok(())
    }
}
