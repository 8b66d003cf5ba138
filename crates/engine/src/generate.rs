//! The decoding loop: prompts in, tokens and text out, for a batch of sequences at once.
//!
//! A batch is left-padded to its longest prompt, prefilled in chunks of `prefill_chunk` tokens
//! (bounding activation memory), then decoded one token per step for all rows together, so the
//! weights are read once per step for the whole batch. Greedy decoding (the default) is
//! deterministic and independent of what else is in the batch: padding is masked out of
//! attention and positions count from each row's first real token.
//!
//! A [`LogitsMask`] sees every row's logits before each choice, which is where a grammar
//! (constrained decoding) plugs in.

use crate::model::chat::ChatMessage;
use crate::model::kv_cache::KvCache;
use crate::model::tokenizer::Tokenizer;
use crate::model::{LoadedModel, Qwen2};
use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use paramx_rng::SplitMix64;
use std::time::Instant;

/// Lives here rather than in `model`, so that `model` never names `generate`: the arrows between
/// the two modules point one way.
impl LoadedModel {
    pub fn generator(&self) -> Generator<'_> {
        Generator::new(&self.model, &self.tokenizer)
    }
}

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// The most likely token (ties: lowest id). Deterministic.
    Greedy,
    /// Nucleus sampling at `temperature` over the smallest set of tokens whose probability
    /// reaches `top_p`, from a generator seeded per sequence with `seed + sequence index`.
    TopP {
        temperature: f32,
        top_p: f32,
        seed: u64,
    },
}

#[derive(Debug, Clone)]
pub struct GenerateParams {
    /// Hard limit on generated tokens per sequence (the stop token is not counted).
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// Prompt tokens per prefill forward pass.
    pub prefill_chunk: usize,
    /// Tokens that end a sequence; `None`: the tokenizer's stop tokens.
    pub stop_tokens: Option<Vec<u32>>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 512,
            sampling: Sampling::Greedy,
            prefill_chunk: 512,
            stop_tokens: None,
        }
    }
}

/// Constrained decoding hook, called for every live sequence at every step.
pub trait LogitsMask {
    /// Set the logits of forbidden tokens of sequence `seq` to `f32::NEG_INFINITY`.
    fn mask(&mut self, seq: usize, logits: &mut [f32]) -> Result<()>;
    /// The token chosen for `seq` (so a grammar can advance its state).
    fn commit(&mut self, _seq: usize, _token: u32) -> Result<()> {
        Ok(())
    }
    /// `true` once `seq` must stop (e.g. the grammar accepted a complete document).
    fn is_finished(&self, _seq: usize) -> bool {
        false
    }
    /// Tokens that are now the only possible continuation of `seq` (a grammar's fixed text,
    /// such as the next field's name), already committed to the mask's state. The generator
    /// appends them and computes them in one multi-token forward pass instead of one decode
    /// step each ("jump-forward" decoding). Default: none.
    fn forced(&mut self, _seq: usize) -> Result<Vec<u32>> {
        Ok(Vec::new())
    }
    /// Called before each prefill chunk. An error ends the generation there: the hook through
    /// which a run stops within one chunk's time. Without it a stop signal waits for the first
    /// decode step, after the whole prompt: minutes for a 4k-token paper on a CPU, more than the
    /// 120 s a SLURM job gets between its warning and its time limit. Default: go on.
    fn before_chunk(&mut self) -> Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token was produced (it is not part of `tokens`).
    Stop,
    /// `max_new_tokens` was reached.
    Length,
    /// The [`LogitsMask`] declared the sequence finished.
    Constraint,
}

#[derive(Debug, Clone)]
pub struct SequenceOutput {
    pub tokens: Vec<u32>,
    pub text: String,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub finish: FinishReason,
}

#[derive(Debug, Clone)]
pub struct BatchOutput {
    pub sequences: Vec<SequenceOutput>,
    /// Seconds to prefill all prompts and choose each row's first token.
    pub prefill_secs: f64,
    /// Seconds for all later decode steps.
    pub decode_secs: f64,
    /// Decode forward passes run (each advances every still-running sequence by one token).
    pub decode_steps: usize,
    /// Tokens computed by those passes (finished sequences leave the batch), forced tokens
    /// included.
    pub decode_tokens: usize,
    /// Generated tokens that were forced by the mask ([`LogitsMask::forced`]) and computed
    /// together with the token before them.
    pub forced_tokens: usize,
    /// Seconds the logits mask took after the first token (its masks, commits and forced
    /// tokens), inside `decode_secs`: the grammar's cost on the critical path, so that
    /// `decode_secs - mask_secs` is what the same steps take unconstrained.
    pub mask_secs: f64,
}

/// The answers to questions asked on one shared prefix ([`Generator::generate_shared`]).
#[derive(Debug, Clone)]
pub struct SharedOutput {
    pub prefix_tokens: usize,
    /// Seconds to prefill the prefix (once).
    pub prefix_secs: f64,
    /// One sequence per question; `prompt_tokens` counts the question's own tokens, and
    /// `prefill_secs` the questions' prefills (each up to its first token).
    pub rows: BatchOutput,
}

/// What the decode loop accumulates per sequence.
struct DecodeState {
    out: Vec<Vec<u32>>,
    finish: Vec<Option<FinishReason>>,
    rngs: Vec<SplitMix64>,
    steps: usize,
    decode_tokens: usize,
    forced_tokens: usize,
    /// Seconds in the mask's calls after the first token (see [`BatchOutput::mask_secs`]).
    mask_secs: f64,
}

impl DecodeState {
    fn new(b: usize, params: &GenerateParams) -> Self {
        DecodeState {
            out: vec![Vec::new(); b],
            finish: vec![None; b],
            rngs: (0..b)
                .map(|i| match params.sampling {
                    Sampling::TopP { seed, .. } => SplitMix64::new(seed.wrapping_add(i as u64)),
                    Sampling::Greedy => SplitMix64::new(0),
                })
                .collect(),
            steps: 0,
            decode_tokens: 0,
            forced_tokens: 0,
            mask_secs: 0.0,
        }
    }
}

/// Runs a [`Qwen2`] with its [`Tokenizer`].
pub struct Generator<'m> {
    model: &'m Qwen2,
    tokenizer: &'m Tokenizer,
}

impl<'m> Generator<'m> {
    pub fn new(model: &'m Qwen2, tokenizer: &'m Tokenizer) -> Self {
        Self { model, tokenizer }
    }

    /// Renders each conversation with the model's chat template (generation prompt added),
    /// then generates.
    pub fn chat(
        &self,
        conversations: &[Vec<ChatMessage>],
        params: &GenerateParams,
        mask: Option<&mut dyn LogitsMask>,
    ) -> Result<BatchOutput> {
        let template = self
            .tokenizer
            .chat_template()
            .context("the model has no chat template")?;
        let prompts = conversations
            .iter()
            .map(|c| self.tokenizer.encode(&template.render(c, true)?))
            .collect::<Result<Vec<_>>>()?;
        self.generate(&prompts, params, mask)
    }

    /// Generates a continuation of every prompt (token ids) in one batch.
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        params: &GenerateParams,
        mut mask: Option<&mut dyn LogitsMask>,
    ) -> Result<BatchOutput> {
        if prompts.is_empty() {
            bail!("generate: no prompts");
        }
        if let Some(i) = prompts.iter().position(|p| p.is_empty()) {
            bail!("generate: prompt {i} is empty");
        }
        let vocab = self.model.config().vocab_size;
        if let Some(&bad) = prompts.iter().flatten().find(|&&t| t as usize >= vocab) {
            bail!("generate: token id {bad} is outside the vocabulary ({vocab})");
        }
        let stops: Vec<u32> = params
            .stop_tokens
            .clone()
            .unwrap_or_else(|| self.tokenizer.stop_tokens().to_vec());
        let b = prompts.len();
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let capacity = longest + params.max_new_tokens;
        if capacity > self.model.max_positions() {
            bail!(
                "prompt of {longest} tokens + {} new tokens exceeds the model's {} positions",
                params.max_new_tokens,
                self.model.max_positions()
            );
        }
        let pad: Vec<usize> = prompts.iter().map(|p| longest - p.len()).collect();
        let mut cache = self.model.new_cache(pad.clone(), capacity.max(1))?;
        let start = Instant::now();
        let last = self.prefill(
            &mut cache,
            None,
            prompts,
            &pad,
            params.prefill_chunk,
            &mut mask,
        )?;
        let mut state = DecodeState::new(b, params);
        let live: Vec<usize> = (0..b).collect();
        let (prefill_secs, decode_secs) = self.decode(
            &mut cache, None, last, live, params, &stops, &mut mask, &mut state, start,
        )?;
        self.finish(state, prompts, prefill_secs, decode_secs)
    }

    /// Generates one answer for each of `suffixes`, every one continuing the same `prefix`
    /// (token ids), whose keys and values are computed once and stored once: each row runs as
    /// if its prompt were `prefix ++ suffix` alone, but the prefix costs one prefill for all
    /// rows and lives once in memory. Up to `rows` questions run together as one batch (their
    /// suffixes left-padded to the longest): every layer reads the prefix's K/V once for the
    /// whole batch (`attention::attention_shared`), and the weights once per decode step. This
    /// is what a paper asked many short questions needs: the paper is the prefix, each question
    /// a suffix with its own grammar (`mask` sees question `i` as sequence `i`). A row that
    /// finishes early leaves the batch without disturbing the others.
    pub fn generate_shared(
        &self,
        prefix: &[u32],
        suffixes: &[Vec<u32>],
        rows: usize,
        params: &GenerateParams,
        mut mask: Option<&mut dyn LogitsMask>,
    ) -> Result<SharedOutput> {
        if prefix.is_empty() {
            bail!("generate: the shared prefix is empty");
        }
        if suffixes.is_empty() {
            bail!("generate: no questions on the shared prefix");
        }
        if let Some(i) = suffixes.iter().position(|p| p.is_empty()) {
            bail!("generate: question {i} is empty");
        }
        let vocab = self.model.config().vocab_size;
        if let Some(&bad) = prefix
            .iter()
            .chain(suffixes.iter().flatten())
            .find(|&&t| t as usize >= vocab)
        {
            bail!("generate: token id {bad} is outside the vocabulary ({vocab})");
        }
        let stops: Vec<u32> = params
            .stop_tokens
            .clone()
            .unwrap_or_else(|| self.tokenizer.stop_tokens().to_vec());
        let longest = suffixes.iter().map(Vec::len).max().unwrap_or(0);
        if prefix.len() + longest + params.max_new_tokens > self.model.max_positions() {
            bail!(
                "prefix of {} tokens + question of {longest} + {} new tokens exceeds the model's {} positions",
                prefix.len(),
                params.max_new_tokens,
                self.model.max_positions()
            );
        }
        let start = Instant::now();
        let mut shared = self.model.new_cache(vec![0], prefix.len())?;
        self.prefill(
            &mut shared,
            None,
            &[prefix.to_vec()],
            &[0],
            params.prefill_chunk,
            &mut mask,
        )?;
        let prefix_secs = start.elapsed().as_secs_f64();
        let mut state = DecodeState::new(suffixes.len(), params);
        let (mut prefill_secs, mut decode_secs) = (0.0, 0.0);
        let order: Vec<usize> = (0..suffixes.len()).collect();
        for group in order.chunks(rows.max(1)) {
            let prompts: Vec<Vec<u32>> = group.iter().map(|&i| suffixes[i].clone()).collect();
            let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
            let pad: Vec<usize> = prompts.iter().map(|p| longest - p.len()).collect();
            let mut cache = self
                .model
                .new_cache(pad.clone(), longest + params.max_new_tokens)?
                .continue_after(prefix.len());
            let t0 = Instant::now();
            let last = self.prefill(
                &mut cache,
                Some(&shared),
                &prompts,
                &pad,
                params.prefill_chunk,
                &mut mask,
            )?;
            let (p, d) = self.decode(
                &mut cache,
                Some(&shared),
                last,
                group.to_vec(),
                params,
                &stops,
                &mut mask,
                &mut state,
                t0,
            )?;
            prefill_secs += p;
            decode_secs += d;
        }
        let rows = self.finish(state, suffixes, prefill_secs, decode_secs)?;
        Ok(SharedOutput {
            prefix_tokens: prefix.len(),
            prefix_secs,
            rows,
        })
    }

    /// The logits of the token after `prompt`, from one plain prefill (no cache kept, no
    /// sampling). Why: where two greedy answers to the same prompt part, these say how close
    /// the two tokens were (a near tie that summation order may flip, or a real difference).
    pub fn next_logits(&self, prompt: &[u32], prefill_chunk: usize) -> Result<Vec<f32>> {
        if prompt.is_empty() {
            bail!("generate: the prompt is empty");
        }
        let mut cache = self.model.new_cache(vec![0], prompt.len())?;
        let last = self.prefill(
            &mut cache,
            None,
            &[prompt.to_vec()],
            &[0],
            prefill_chunk,
            &mut None,
        )?;
        let mut rows = self.model.logits(&last)?.to_vec2::<f32>()?;
        rows.pop().context("generate: no logits")
    }

    /// Prefills `prompts` (left-padded by `pad`) into `cache`, chunk by chunk, asking `mask`
    /// before each chunk whether to go on ([`LogitsMask::before_chunk`]); returns each row's
    /// last hidden state.
    fn prefill(
        &self,
        cache: &mut KvCache,
        prefix: Option<&KvCache>,
        prompts: &[Vec<u32>],
        pad: &[usize],
        prefill_chunk: usize,
        mask: &mut Option<&mut dyn LogitsMask>,
    ) -> Result<Tensor> {
        let b = prompts.len();
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let dev = self.model.device().clone();
        // Chunks over the padded prompt matrix (padding uses token 0; it is masked out of
        // attention). Equal chunks (never a 1-token tail): a row then takes the same kind of
        // matmul (multi-token) whatever the batch's padded length, which keeps greedy
        // batch-invariant.
        let n_chunks = longest.div_ceil(prefill_chunk.max(1));
        let chunk = longest.div_ceil(n_chunks.max(1));
        let mut hidden = None;
        let mut c0 = 0;
        while c0 < longest {
            if let Some(m) = mask.as_deref_mut() {
                m.before_chunk()?;
            }
            let n = chunk.min(longest - c0);
            let mut ids = Vec::with_capacity(b * n);
            for (p, &pd) in prompts.iter().zip(pad) {
                ids.extend((c0..c0 + n).map(|s| if s < pd { 0 } else { p[s - pd] }));
            }
            let ids = Tensor::from_vec(ids, (b, n), &dev)?;
            hidden = Some(self.model.forward_after(&ids, prefix, cache)?);
            c0 += n;
        }
        let hidden = hidden.context("generate: nothing to prefill")?;
        Qwen2::last_hidden(&hidden)
    }

    /// Decodes the rows of `cache` (row `r` is sequence `live[r]`) from their last hidden
    /// states until each stops, recording tokens into `state`. Returns (seconds to the first
    /// token counted from `start`, seconds of the later steps).
    #[allow(clippy::too_many_arguments)]
    fn decode(
        &self,
        cache: &mut KvCache,
        prefix: Option<&KvCache>,
        mut last: Tensor,
        mut live: Vec<usize>,
        params: &GenerateParams,
        stops: &[u32],
        mask: &mut Option<&mut dyn LogitsMask>,
        state: &mut DecodeState,
        start: Instant,
    ) -> Result<(f64, f64)> {
        let dev = self.model.device().clone();
        let mut prefill_secs = None;
        let mut decode_start = Instant::now();
        let mut steps = 0;
        if params.max_new_tokens == 0 {
            for &i in &live {
                state.finish[i] = Some(FinishReason::Length);
            }
        }
        // Finished sequences are dropped from the batch so that later steps only compute the
        // ones still running.
        while !live.is_empty() && live.iter().any(|&i| state.finish[i].is_none()) {
            let mut mask_secs = 0.0;
            let mut next = self.choose(
                &last,
                params.sampling,
                &live,
                &mut state.rngs,
                mask,
                &mut mask_secs,
            )?;
            if prefill_secs.is_none() {
                prefill_secs = Some(start.elapsed().as_secs_f64());
                decode_start = Instant::now();
            } else {
                state.mask_secs += mask_secs;
            }
            let grammar_start = Instant::now();
            // With one row, the tokens a grammar forces after the chosen one are computed in
            // the same forward pass; with several, rows would need ragged chunks, so each
            // forced token takes its own step (the mask simply allows only it).
            let mut forced: Vec<u32> = Vec::new();
            for (r, &tok) in next.iter().enumerate() {
                let i = live[r];
                if stops.contains(&tok) {
                    state.finish[i] = Some(FinishReason::Stop);
                    continue;
                }
                if let Some(m) = mask.as_mut() {
                    m.commit(i, tok)?;
                }
                state.out[i].push(tok);
                if mask.as_ref().is_some_and(|m| m.is_finished(i)) {
                    state.finish[i] = Some(FinishReason::Constraint);
                } else if state.out[i].len() >= params.max_new_tokens {
                    state.finish[i] = Some(FinishReason::Length);
                } else if live.len() == 1 {
                    if let Some(m) = mask.as_mut() {
                        forced = m.forced(i)?;
                        let room = params.max_new_tokens - state.out[i].len();
                        forced.truncate(room);
                        if let Some(at) = forced.iter().position(|t| stops.contains(t)) {
                            forced.truncate(at);
                            state.finish[i] = Some(FinishReason::Stop);
                        }
                        state.out[i].extend_from_slice(&forced);
                        state.forced_tokens += forced.len();
                        if state.finish[i].is_some() {
                        } else if m.is_finished(i) {
                            state.finish[i] = Some(FinishReason::Constraint);
                        } else if state.out[i].len() >= params.max_new_tokens {
                            state.finish[i] = Some(FinishReason::Length);
                        }
                    }
                }
            }
            if mask.is_some() && steps > 0 {
                state.mask_secs += grammar_start.elapsed().as_secs_f64();
            }
            let keep: Vec<usize> = (0..live.len())
                .filter(|&r| state.finish[live[r]].is_none())
                .collect();
            if keep.is_empty() {
                break;
            }
            if keep.len() < live.len() {
                cache.retain(&keep)?;
                next = keep.iter().map(|&r| next[r]).collect();
                live = keep.iter().map(|&r| live[r]).collect();
            }
            let width = 1 + forced.len();
            let mut ids_v = next;
            ids_v.extend_from_slice(&forced);
            let ids = Tensor::from_vec(ids_v, (live.len(), width), &dev)?;
            let hidden = self.model.forward_after(&ids, prefix, cache)?;
            last = Qwen2::last_hidden(&hidden)?;
            steps += 1;
            state.steps += 1;
            state.decode_tokens += live.len() * width;
        }
        let prefill_secs = prefill_secs.unwrap_or_else(|| start.elapsed().as_secs_f64());
        let decode_secs = if steps > 0 {
            decode_start.elapsed().as_secs_f64()
        } else {
            0.0
        };
        Ok((prefill_secs, decode_secs))
    }

    /// The batch's outputs from the decode state (`prompts[i]` is sequence `i`'s own prompt).
    fn finish(
        &self,
        state: DecodeState,
        prompts: &[Vec<u32>],
        prefill_secs: f64,
        decode_secs: f64,
    ) -> Result<BatchOutput> {
        let sequences = state
            .out
            .into_iter()
            .zip(state.finish)
            .zip(prompts)
            .map(|((tokens, f), p)| {
                Ok(SequenceOutput {
                    text: self.tokenizer.decode(&tokens)?,
                    generated_tokens: tokens.len(),
                    prompt_tokens: p.len(),
                    tokens,
                    finish: f.unwrap_or(FinishReason::Length),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(BatchOutput {
            sequences,
            prefill_secs,
            decode_secs,
            decode_steps: state.steps,
            decode_tokens: state.decode_tokens,
            forced_tokens: state.forced_tokens,
            mask_secs: state.mask_secs,
        })
    }

    /// The next token of every live row (sequence `live[r]`) from its last hidden state.
    fn choose(
        &self,
        last: &Tensor,
        sampling: Sampling,
        live: &[usize],
        rngs: &mut [SplitMix64],
        mask: &mut Option<&mut dyn LogitsMask>,
        mask_secs: &mut f64,
    ) -> Result<Vec<u32>> {
        if sampling == Sampling::Greedy && mask.is_none() {
            // Only (max, argmax) pairs cross ranks: no full-vocabulary gather.
            return self.model.greedy(last);
        }
        let logits = self.model.logits(last)?.to_vec2::<f32>()?;
        let mut next = Vec::with_capacity(logits.len());
        for (r, mut row) in logits.into_iter().enumerate() {
            let i = live[r];
            if let Some(m) = mask.as_mut() {
                let t = Instant::now();
                m.mask(i, &mut row)?;
                *mask_secs += t.elapsed().as_secs_f64();
                if row.iter().all(|v| *v == f32::NEG_INFINITY) {
                    bail!("the logits mask forbade every token of sequence {i}");
                }
            }
            next.push(match sampling {
                Sampling::Greedy => argmax(&row),
                Sampling::TopP {
                    temperature, top_p, ..
                } => sample_top_p(&row, temperature, top_p, &mut rngs[i]),
            });
        }
        Ok(next)
    }
}

/// Index of the largest value; ties go to the lowest index.
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn sample_top_p(logits: &[f32], temperature: f32, top_p: f32, rng: &mut SplitMix64) -> u32 {
    if temperature <= 0.0 {
        return argmax(logits);
    }
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, ((l - max) / temperature).exp()))
        .filter(|(_, p)| *p > 0.0)
        .collect();
    // Highest first; ties by id, so the order (and the sample) is reproducible.
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let total: f32 = probs.iter().map(|p| p.1).sum();
    let mut kept = 0.0;
    let mut cut = probs.len();
    for (i, p) in probs.iter().enumerate() {
        kept += p.1 / total;
        if kept >= top_p {
            cut = i + 1;
            break;
        }
    }
    let probs = &probs[..cut];
    let mass: f32 = probs.iter().map(|p| p.1).sum();
    let mut r = rng.next_f32() * mass;
    for p in probs {
        r -= p.1;
        if r <= 0.0 {
            return p.0;
        }
    }
    probs.last().map_or(0, |p| p.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_prefers_lowest_index_on_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus_and_is_reproducible() {
        let logits = [10.0f32, 9.9, -10.0, -10.0];
        let draw = |seed| {
            let mut r = SplitMix64::new(seed);
            (0..50)
                .map(|_| sample_top_p(&logits, 1.0, 0.9, &mut r))
                .collect::<Vec<_>>()
        };
        let a = draw(7);
        assert!(
            a.iter().all(|&t| t < 2),
            "tokens outside the nucleus: {a:?}"
        );
        assert!(a.contains(&0) && a.contains(&1));
        assert_eq!(a, draw(7));
    }
}
