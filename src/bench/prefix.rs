//! The shared-prefix benchmark behind `paramx bench-prefix`: one paper-sized prefix and many
//! short questions, answered once on the shared prefix ([`Generator::generate_shared`]) and once
//! as separate prompts (`prefix ++ question`, each prefilled from scratch), in the same process,
//! with the answers compared token for token. A benchmark, not a test: nothing asserts a speed.

use crate::bench::peak;
use crate::generate::{GenerateParams, Generator};
use anyhow::{bail, Result};
use candle_core::Device;
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

/// A workload of pseudo-random token ids in `0..vocab` (for random weights, where text means
/// nothing): a prefix and distinct questions, deterministic for a seed.
pub fn random_workload(
    vocab: usize,
    shape: &Shape,
    seed: u64,
) -> Result<(Vec<u32>, Vec<Vec<u32>>)> {
    let n = shape.prefix_tokens + shape.questions * shape.question_tokens;
    workload(
        &crate::model::load::random::token_ids(n, vocab, seed),
        shape,
    )
}

/// One way of answering the questions, measured.
#[derive(Debug, Clone, Serialize)]
pub struct Way {
    pub secs: f64,
    /// Prompt tokens the way prefills (the shared prefix once, or once per question).
    pub prompt_tokens: usize,
    /// Decode milliseconds per step (the batch's step for a batched way; for separate prompts,
    /// the median over the questions of one row's step).
    pub decode_ms_per_step: f64,
    /// Peak device memory in use during the way (`None` on the CPU).
    pub peak_bytes: Option<u64>,
    /// Questions whose greedy answer equals the shared way's, token for token.
    pub same_answers: usize,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub shape: Shape,
    /// The questions on one shared prefix, `rows` at a time.
    pub shared: Way,
    pub shared_prefix_secs: f64,
    /// Each question as its own prompt (`prefix ++ question`), one after another.
    pub separate: Way,
    /// All questions as one batch of whole prompts: the prefix's K/V copied once per row.
    pub copies: Option<Way>,
    /// Why that way failed (e.g. out of device memory: the point of not copying).
    pub copies_error: Option<String>,
    /// `separate.secs / shared.secs`.
    pub speedup: f64,
    /// Each question whose separate answer parts from the shared one: where, and how close.
    pub divergences: Vec<Divergence>,
}

/// Where a question's answer as a separate prompt parts from its answer on the shared prefix.
#[derive(Debug, Clone, Serialize)]
pub struct Divergence {
    pub question: usize,
    /// The first answer token that differs (0-based).
    pub step: usize,
    /// The two tokens there: the separate prompt's and the shared prefix's.
    pub separate_token: u32,
    pub shared_token: u32,
    /// `|logit(separate) - logit(shared)|` in the separate prompt's own logits at that step,
    /// divided by the spread of those logits (max - min): near 0 is a near tie.
    pub gap_of_spread: f64,
}

/// Runs the ways in the order shared, separate, copies (each later one uses more memory, so a
/// pool that keeps freed blocks does not inflate an earlier peak). `device` is the model's
/// (for synchronising and peak memory); `copies` adds the batch of whole prompts.
pub fn run(
    gen: &Generator<'_>,
    device: &Device,
    prefix: &[u32],
    questions: &[Vec<u32>],
    shape: Shape,
    copies: bool,
) -> Result<Outcome> {
    let params = GenerateParams {
        max_new_tokens: shape.answer_tokens,
        prefill_chunk: shape.prefill_chunk,
        stop_tokens: Some(Vec::new()),
        ..Default::default()
    };
    let per_step = |secs: f64, steps: usize| 1e3 * secs / steps.max(1) as f64;
    device.synchronize()?;
    let t = Instant::now();
    let (out, peak_bytes) = peak::with_peak(device, || {
        gen.generate_shared(prefix, questions, shape.rows, &params, None)
    })?;
    let shared_answers: Vec<Vec<u32>> = out
        .rows
        .sequences
        .iter()
        .map(|s| s.tokens.clone())
        .collect();
    let shared = Way {
        secs: t.elapsed().as_secs_f64(),
        prompt_tokens: prefix.len() + questions.iter().map(Vec::len).sum::<usize>(),
        decode_ms_per_step: per_step(out.rows.decode_secs, out.rows.decode_steps),
        peak_bytes,
        same_answers: questions.len(),
    };
    let wholes: Vec<Vec<u32>> = questions
        .iter()
        .map(|q| prefix.iter().chain(q).copied().collect())
        .collect();
    let t = Instant::now();
    let (alone, peak_bytes) = peak::with_peak(device, || {
        wholes
            .iter()
            .map(|w| gen.generate(std::slice::from_ref(w), &params, None))
            .collect::<Result<Vec<_>>>()
    })?;
    let mut steps: Vec<f64> = alone
        .iter()
        .map(|o| per_step(o.decode_secs, o.decode_steps))
        .collect();
    steps.sort_by(f64::total_cmp);
    let separate = Way {
        secs: t.elapsed().as_secs_f64(),
        prompt_tokens: wholes.iter().map(Vec::len).sum(),
        decode_ms_per_step: steps.get(steps.len() / 2).copied().unwrap_or(0.0),
        peak_bytes,
        same_answers: alone
            .iter()
            .zip(&shared_answers)
            .filter(|(o, s)| o.sequences[0].tokens == **s)
            .count(),
    };
    let mut divergences = Vec::new();
    for (i, (o, s)) in alone.iter().zip(&shared_answers).enumerate() {
        let a = &o.sequences[0].tokens;
        let Some(step) = a.iter().zip(s).position(|(x, y)| x != y) else {
            continue;
        };
        let ids: Vec<u32> = wholes[i].iter().chain(&a[..step]).copied().collect();
        let logits = gen.next_logits(&ids, shape.prefill_chunk)?;
        let (lo, hi) = logits
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let at = |t: u32| logits.get(t as usize).copied().unwrap_or(f32::NAN);
        divergences.push(Divergence {
            question: i,
            step,
            separate_token: a[step],
            shared_token: s[step],
            gap_of_spread: ((at(a[step]) - at(s[step])).abs() / (hi - lo).max(1e-9)) as f64,
        });
    }
    let mut copies_error = None;
    let copies = if copies {
        let t = Instant::now();
        match peak::with_peak(device, || gen.generate(&wholes, &params, None)) {
            Err(e) => {
                copies_error = Some(format!("{e:#}"));
                None
            }
            Ok((out, peak_bytes)) => Some(Way {
                secs: t.elapsed().as_secs_f64(),
                prompt_tokens: wholes.iter().map(Vec::len).sum(),
                decode_ms_per_step: per_step(out.decode_secs, out.decode_steps),
                peak_bytes,
                same_answers: out
                    .sequences
                    .iter()
                    .zip(&shared_answers)
                    .filter(|(o, s)| o.tokens == **s)
                    .count(),
            }),
        }
    } else {
        None
    };
    Ok(Outcome {
        speedup: separate.secs / shared.secs.max(1e-9),
        shared_prefix_secs: out.prefix_secs,
        shared,
        separate,
        copies,
        copies_error,
        divergences,
        shape,
    })
}

fn gib(b: Option<u64>) -> String {
    b.map_or("n/a".into(), |b| {
        format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
    })
}

impl Outcome {
    pub fn to_text(&self, machine: &str) -> String {
        let s = &self.shape;
        let mut t = format!(
            "shared prefix vs separate prompts ({machine})\n\
prefix {} tokens, {} questions of {} tokens ({} at a time), {} answer tokens each\n\n\
| way | wall s | prompt tokens | decode ms/step | peak memory | same answers |\n\
|---|---|---|---|---|---|\n",
            s.prefix_tokens, s.questions, s.question_tokens, s.rows, s.answer_tokens
        );
        let mut row = |name: &str, w: &Way| {
            t.push_str(&format!(
                "| {name} | {:.2} | {} | {:.2} | {} | {}/{} |\n",
                w.secs,
                w.prompt_tokens,
                w.decode_ms_per_step,
                gib(w.peak_bytes),
                w.same_answers,
                s.questions
            ));
        };
        row("shared prefix", &self.shared);
        row("separate prompts", &self.separate);
        if let Some(c) = &self.copies {
            row("one batch, K/V copied per row", c);
        }
        if let Some(e) = &self.copies_error {
            t.push_str(&format!(
                "| one batch, K/V copied per row | failed: {e} | | | | |\n"
            ));
        }
        for d in &self.divergences {
            t.push_str(&format!(
                "question {}: parts at answer token {} ({} alone, {} shared), the two logits \
{:.2e} of the spread apart\n",
                d.question, d.step, d.separate_token, d.shared_token, d.gap_of_spread
            ));
        }
        t.push_str(&format!(
            "\nspeedup over separate prompts {:.2}x (prefix prefill {:.2} s); shared decode step \
{:.2}x the batch-1 step at the same context\n",
            self.speedup,
            self.shared_prefix_secs,
            self.shared.decode_ms_per_step / self.separate.decode_ms_per_step.max(1e-9)
        ));
        t
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
