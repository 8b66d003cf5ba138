//! `paramx run`: PDFs -> questions on a shared paper prefix -> supported, grounded rows.
//!
//! Flow: [`job::JobConfig`] -> discover PDFs -> `crate::pdf` text (in parallel) -> per paper:
//! [`experiments::detect`] and [`question::sentences`] -> [`question::questions_for`] each
//! experiment and field group -> [`prompt::pack`] the paper under the token budget (room kept
//! for the longest question) -> `Generator::generate_shared` with a [`constrain::Constraint`]
//! per question -> [`question::read_answer`] -> [`question::ground`] (each value checked by
//! [`evidence::support`]) -> one [`record::PaperRecord`] saved atomically by
//! [`store::RecordStore`] -> at the end the table, JSONL, evidence report and manifest are
//! derived from the records ([`output`]).

pub mod answer;
pub mod constrain;
pub mod driver;
pub mod evidence;
pub mod experiments;
pub mod hashes;
pub mod job;
pub mod layout;
pub mod locate;
pub mod lockstep;
pub mod manifest;
pub mod merge;
pub mod output;
pub mod progress;
pub mod prompt;
pub mod question;
pub mod record;
pub mod shard;
pub mod store;
pub mod tables;

use crate::generate::{GenerateParams, LogitsMask, Sampling};
use crate::model::chat::ChatMessage;
use crate::model::LoadedModel;
use crate::pdf::{self, Document};
use crate::schema::Schema;
use anyhow::{Context, Result};
use lockstep::Lockstep;
pub use lockstep::Role;
use progress::Progress;
use record::{Outcome, PaperRecord, PaperResult, Stage, Timing};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use store::{RecordKey, RecordStore};

/// Lists the PDFs named by `inputs` (files as given, folders searched recursively for `*.pdf`),
/// sorted and without duplicates, so every run sees the same order.
pub fn discover(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let rd =
            std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for e in rd {
            let p = e
                .with_context(|| format!("cannot list {}", dir.display()))?
                .path();
            let hidden = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                continue;
            }
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("pdf")) {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for i in inputs {
        if i.is_dir() {
            walk(i, &mut out)?;
        } else if i.exists() {
            out.push(i.clone());
        } else {
            anyhow::bail!("input {} does not exist", i.display());
        }
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        anyhow::bail!("no PDF files found in the inputs");
    }
    Ok(out)
}

/// Set by the SIGUSR1/SIGTERM handlers ([`install_stop_handlers`]): the batch in flight is
/// abandoned at its next prefill chunk or decode step (its papers are redone by the next run),
/// records already written stay, and the run ends with the requeue exit code.
pub static STOP_REQUESTED: std::sync::LazyLock<std::sync::Arc<AtomicBool>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(AtomicBool::new(false)));

/// SIGUSR1 (SLURM's warning before the time limit, `--signal=B:USR1@...`) and SIGTERM (scancel,
/// preemption) ask a run to stop cleanly: see `run::STOP_REQUESTED`.
pub fn install_stop_handlers() {
    for sig in [signal_hook::consts::SIGUSR1, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, crate::run::STOP_REQUESTED.clone()) {
            eprintln!("paramx: warning: cannot install the handler for signal {sig}: {e}");
        }
    }
}

/// Whether a stop signal has arrived.
pub fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::SeqCst)
}

/// One grammar per sequence of a batch, as the generator's logits hook; also where a decode
/// step asks whether to stop.
struct GrammarMask<'r> {
    constraints: Vec<constrain::Constraint>,
    lockstep: &'r Lockstep,
    /// The sequence masked last. The generator masks the live sequences of a step in increasing
    /// order, so a sequence at or below it starts a new step: the stop vote is taken once per
    /// step, at the same step on every rank (they all have the same live sequences).
    last_seq: Option<usize>,
}

impl LogitsMask for GrammarMask<'_> {
    fn mask(&mut self, seq: usize, logits: &mut [f32]) -> Result<()> {
        let new_step = self.last_seq.is_none_or(|last| seq <= last);
        self.last_seq = Some(seq);
        if new_step && self.lockstep.stop_vote()? {
            anyhow::bail!("stopped by signal");
        }
        self.constraints[seq].mask_logits(logits)
    }
    fn commit(&mut self, seq: usize, token: u32) -> Result<()> {
        self.constraints[seq].commit(token)
    }
    fn is_finished(&self, seq: usize) -> bool {
        self.constraints[seq].is_finished()
    }
    fn forced(&mut self, seq: usize) -> Result<Vec<u32>> {
        Ok(self.constraints[seq].forced())
    }
    /// The stop vote before every prefill chunk too (every rank prefills the same chunks, so
    /// they vote at the same points): a stop is honoured within one chunk.
    fn before_chunk(&mut self) -> Result<()> {
        if self.lockstep.stop_vote()? {
            anyhow::bail!("stopped by signal");
        }
        Ok(())
    }
}

/// One run: its counts (the same type the manifest records), timings and job hash.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RunSummary {
    pub counts: manifest::Counts,
    pub model_secs: f64,
    /// Of `model_secs`, the decode steps after each answer's first token, and the answer
    /// grammar's share of them (see [`record::Timing::grammar_secs`]).
    pub decode_secs: f64,
    pub grammar_secs: f64,
    pub wall_secs: f64,
    /// The hash that keys this job's records (see [`Runner::new`]).
    pub job_hash: String,
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Everything fixed for a run: model, schema, grammar, limits, and the link to the other ranks.
pub struct Runner<'a> {
    pub job: &'a job::JobConfig,
    pub schema: &'a Schema,
    pub model: &'a LoadedModel,
    pub grammar: constrain::GrammarEnv,
    pub job_hash: String,
    pub lockstep: Lockstep,
}

impl<'a> Runner<'a> {
    pub fn new(
        job: &'a job::JobConfig,
        schema: &'a Schema,
        model: &'a LoadedModel,
        model_hash: &str,
    ) -> Result<Self> {
        Self::with_job_hash(
            job,
            schema,
            model,
            hashes::job_hash(job, schema, model_hash)?,
        )
    }

    /// A runner for records keyed by `job_hash` (a follower rank gets it from the leader).
    pub fn with_job_hash(
        job: &'a job::JobConfig,
        schema: &'a Schema,
        model: &'a LoadedModel,
        job_hash: String,
    ) -> Result<Self> {
        let eos = *model
            .tokenizer
            .stop_tokens()
            .first()
            .context("the model declares no stop token")?;
        let grammar = constrain::GrammarEnv::new(
            model.tokenizer.inner(),
            model.model.config().vocab_size,
            eos,
        )?;
        Ok(Runner {
            job,
            schema,
            model,
            grammar,
            job_hash,
            lockstep: Lockstep::new(&model.model),
        })
    }

    fn count_tokens(&self, system: &str, user: &str) -> Result<usize> {
        let rendered = self.render(system, user)?;
        Ok(self.model.tokenizer.encode(&rendered)?.len())
    }

    /// The prompt as the model receives it: the chat template applied to system + user.
    pub fn render(&self, system: &str, user: &str) -> Result<String> {
        let tpl = self
            .model
            .tokenizer
            .chat_template()
            .context("the model has no chat template")?;
        tpl.render(
            &[ChatMessage::system(system), ChatMessage::user(user)],
            true,
        )
    }

    fn params(&self) -> GenerateParams {
        let d = &self.job.decoding;
        GenerateParams {
            max_new_tokens: self.job.limits.max_new_tokens,
            sampling: if d.temperature > 0.0 {
                Sampling::TopP {
                    temperature: d.temperature as f32,
                    top_p: d.top_p.unwrap_or(1.0) as f32,
                    seed: d.seed,
                }
            } else {
                Sampling::Greedy
            },
            prefill_chunk: self.job.limits.prefill_chunk,
            stop_tokens: None,
        }
    }

    /// Runs one batch of papers whose text is ready; returns one record per paper, in order.
    /// Each paper is asked its questions on its own shared prefix ([`Runner::extract_paper`]).
    /// A paper whose prompt, grammar or answer fails becomes an error record (these steps are
    /// deterministic, so every rank records the same). A failure inside the model with several
    /// ranks is an `Err` ending the run: a rank that failed inside the model leaves its peers
    /// waiting in a collective, and going on would pair collectives that do not belong
    /// together. A batch cut short by a stop vote gives error records
    /// (`self.lockstep.stopped()` tells the caller).
    pub fn extract_batch(
        &self,
        docs: &[&Document],
        keys: &[RecordKey],
    ) -> Result<Vec<PaperRecord>> {
        let mut out = Vec::with_capacity(docs.len());
        for (doc, key) in docs.iter().zip(keys) {
            if self.lockstep.stopped() {
                out.push(error_record(
                    doc,
                    key,
                    Stage::Generate,
                    &anyhow::anyhow!("stopped by signal"),
                ));
                continue;
            }
            out.push(self.extract_paper(doc, key)?);
        }
        Ok(out)
    }

    /// The questions of one paper, the prefix they share, and their token ids.
    pub fn prepare(&self, doc: &Document) -> Result<Prepared> {
        let experiments = experiments::detect(&doc.text, &self.schema.experiments);
        let all = question::with_table_rows(doc, self.schema.lexicon(), question::sentences(doc));
        // Questions within the per-question token bound the plan counts: with a tokenizer
        // that spends many tokens per character (byte-level ones), fewer sentences are shown.
        let mut max_sentences = question::MAX_SENTENCES;
        let (questions, longest) = loop {
            let questions: Vec<question::Question> = experiments
                .iter()
                .flat_map(|e| {
                    question::questions_for(self.schema, &all, e, &experiments, max_sentences)
                })
                .collect();
            // The longest question in tokens (not characters: a line of degrees and digits
            // takes more tokens per character than prose), for which the packer keeps room.
            let (mut longest, mut longest_tokens) = (0, 0);
            for (i, q) in questions.iter().enumerate() {
                let n = self.model.tokenizer.encode(&q.text)?.len();
                if n > longest_tokens {
                    (longest, longest_tokens) = (i, n);
                }
            }
            if longest_tokens + QUESTION_MARKUP_TOKENS <= question::MAX_QUESTION_TOKENS
                || max_sentences == 1
            {
                break (questions, longest);
            }
            max_sentences = (max_sentences / 2).max(1);
        };
        let longest = questions.get(longest).map_or("", |q| q.text.as_str());
        let pieces = pieces_of(doc);
        let packed = prompt::pack(
            longest,
            &pieces,
            self.job
                .limits
                .max_input_tokens
                .saturating_sub(SPLIT_MARGIN_TOKENS),
            &mut |s, u| self.count_tokens(s, u),
        )?;
        let block = prompt::paper_block(&packed.paper);
        let mut prefix_text: Option<String> = None;
        let mut suffixes = Vec::with_capacity(questions.len());
        for q in &questions {
            let rendered = self.render(&packed.system, &format!("{block}{SPLIT}{}", q.text))?;
            let (pre, suf) = rendered
                .split_once(SPLIT)
                .context("the chat template altered the question marker")?;
            match &prefix_text {
                Some(p) if p != pre => {
                    anyhow::bail!("the chat template renders the paper differently per question")
                }
                _ => prefix_text = Some(pre.to_string()),
            }
            let suffix = self.model.tokenizer.encode(suf)?;
            if suffix.len() > question::MAX_QUESTION_TOKENS {
                anyhow::bail!(
                    "the {} question of experiment {} has {} tokens, over the {} that the memory \
plan counts per question",
                    q.group,
                    q.experiment,
                    suffix.len(),
                    question::MAX_QUESTION_TOKENS
                );
            }
            suffixes.push(suffix);
        }
        let prefix = match prefix_text {
            Some(p) => self.model.tokenizer.encode(&p)?,
            None => Vec::new(),
        };
        Ok(Prepared {
            experiments,
            sentences: all,
            questions,
            packed,
            prefix,
            suffixes,
        })
    }

    /// Asks one paper its questions and grounds the answers.
    fn extract_paper(&self, doc: &Document, key: &RecordKey) -> Result<PaperRecord> {
        let prep = match self.prepare(doc) {
            Ok(p) => p,
            Err(e) => return Ok(error_record(doc, key, Stage::Prompt, &e)),
        };
        let constraints = match prep
            .questions
            .iter()
            .map(|q| self.grammar.lark_constraint(&q.grammar))
            .collect::<Result<Vec<_>>>()
        {
            Ok(c) => c,
            Err(e) => return Ok(error_record(doc, key, Stage::Prompt, &e)),
        };
        let start = Instant::now();
        let generated = if prep.questions.is_empty() {
            None
        } else {
            let mut mask = GrammarMask {
                constraints,
                lockstep: &self.lockstep,
                last_seq: None,
            };
            match self.model.generator().generate_shared(
                &prep.prefix,
                &prep.suffixes,
                self.job.limits.batch,
                &self.params(),
                Some(&mut mask),
            ) {
                Ok(out) => Some(out),
                Err(e) if self.lockstep.world_size() > 1 && !self.lockstep.stopped() => {
                    return Err(
                        e.context("generation failed (with tensor parallelism this ends the run)")
                    );
                }
                Err(e) => return Ok(error_record(doc, key, Stage::Generate, &e)),
            }
        };
        let secs = start.elapsed().as_secs_f64();
        let mut grounded = answer::Grounded::default();
        let mut asked = Vec::new();
        let mut answers: Vec<Vec<question::Answered>> = vec![Vec::new(); prep.experiments.len()];
        let (mut prompt_tokens, mut generated_tokens) = (prep.prefix.len(), 0);
        let mut cut = false;
        if let Some(out) = &generated {
            for (q, seq) in prep.questions.iter().zip(&out.rows.sequences) {
                prompt_tokens += seq.prompt_tokens;
                generated_tokens += seq.generated_tokens;
                cut |= seq.finish == crate::generate::FinishReason::Length;
                asked.push(record::AskedQuestion {
                    experiment: q.experiment,
                    group: q.group.clone(),
                    prompt: q.text.clone(),
                    answer: seq.text.clone(),
                    prompt_tokens: seq.prompt_tokens,
                    generated_tokens: seq.generated_tokens,
                    finish: format!("{:?}", seq.finish).to_lowercase(),
                });
                let idx = prep
                    .experiments
                    .iter()
                    .position(|e| e.number == q.experiment)
                    .unwrap_or(0);
                match question::read_answer(q, &seq.text) {
                    Ok(a) => answers[idx].extend(a),
                    // A cut or unreadable answer loses that question only, recorded as such.
                    Err(e) => grounded.dropped.push(answer::DroppedValue {
                        experiment: q.experiment,
                        field: q.group.clone(),
                        value: String::new(),
                        quote: String::new(),
                        reason: answer::DropReason::Unreadable,
                        detail: Some(format!("{e:#}")),
                    }),
                }
            }
        }
        for (exp, a) in prep.experiments.iter().zip(&answers) {
            question::ground(self.schema, doc, &prep.sentences, exp, a, &mut grounded);
        }
        question::inherit_repeated(self.schema, doc, &prep.experiments, &mut grounded);
        question::inherit_shared(self.schema, &mut grounded);
        let timing = generated.as_ref().map(|out| Timing {
            prefill_secs: out.prefix_secs + out.rows.prefill_secs,
            decode_secs: out.rows.decode_secs,
            grammar_secs: out.rows.mask_secs,
            batch_secs: secs,
            batch_size: 1,
        });
        Ok(PaperRecord::new(
            doc,
            key.clone(),
            Outcome::Ok(PaperResult {
                experiments: grounded.experiments,
                dropped: grounded.dropped,
                completeness: if cut {
                    answer::AnswerCompleteness::Truncated {
                        experiments_kept: prep.experiments.len(),
                    }
                } else {
                    answer::AnswerCompleteness::Complete
                },
                finish: if cut { "length" } else { "constraint" }.into(),
                prompt_tokens,
                generated_tokens,
                prefix_tokens: prep.prefix.len(),
                prompt_pieces: prep.packed.pieces.clone(),
                raw_answer: String::new(),
                questions: asked,
            }),
            timing,
        ))
    }
}

/// Marks where the shared paper ends and a question begins in a rendered prompt (a private-use
/// character that `prompt::sanitize`d paper text and questions never hold... checked: the
/// split must find it, and the prefix must be the same for every question).
const SPLIT: &str = "\u{E000}";

/// Tokens kept free when the paper is packed: tokenizing the prefix and a question apart can
/// differ by a token or two from tokenizing them together.
pub(crate) const SPLIT_MARGIN_TOKENS: usize = 8;
/// Tokens the chat template adds around a question (end of the user turn, the assistant's
/// header): room kept under `question::MAX_QUESTION_TOKENS`.
const QUESTION_MARKUP_TOKENS: usize = 32;

/// One paper made ready for the model.
pub struct Prepared {
    pub experiments: Vec<experiments::Experiment>,
    pub sentences: Vec<question::Sentence>,
    pub questions: Vec<question::Question>,
    /// The paper as the prefix shows it.
    pub packed: prompt::Packed,
    /// The shared prefix (system message, the paper) and each question's own tokens.
    pub prefix: Vec<u32>,
    pub suffixes: Vec<Vec<u32>>,
}

fn error_record(doc: &Document, key: &RecordKey, stage: Stage, e: &anyhow::Error) -> PaperRecord {
    PaperRecord::new(
        doc,
        key.clone(),
        Outcome::Error {
            stage,
            message: format!("{e:#}"),
        },
        None,
    )
}

/// The paper cut into pieces for the prompt: the text before the first heading (title, authors,
/// often the abstract), then each section; references and acknowledgements are left out.
pub fn pieces_of(doc: &Document) -> Vec<prompt::Piece<'_>> {
    let mut pieces = Vec::new();
    let first = doc.sections.first().map_or(doc.text.len(), |s| s.start);
    if first > 0 {
        // The title page holds the abstract (sample size, population, design) in its first
        // lines, and affiliations and journal boilerplate after: its head is worth a place
        // beside the Methods, the rest competes with the other sections.
        let head = floor_char_boundary(&doc.text[..first], TITLE_PAGE_HEAD_BYTES);
        pieces.push(prompt::Piece {
            heading: "Title page".into(),
            text: &doc.text[..head],
            priority: 0,
        });
        if head < first {
            pieces.push(prompt::Piece {
                heading: "Title page (cont.)".into(),
                text: &doc.text[head..first],
                priority: 2,
            });
        }
    }
    for s in &doc.sections {
        if let Some(priority) = prompt::priority_of(&s.kind) {
            if let Some(text) = doc.text.get(s.start..s.end) {
                pieces.push(prompt::Piece {
                    heading: s.heading.clone(),
                    text,
                    priority,
                });
            }
        }
    }
    pieces
}

/// Bytes of the title page that rank with the Methods (see [`pieces_of`]).
const TITLE_PAGE_HEAD_BYTES: usize = 2500;

/// Bumped whenever the prompt, the answer grammar or grounding change what a run produces, so
/// that records of an older paramx are redone rather than reused.
pub const PIPELINE_VERSION: u32 = 23;

fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut i = max.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// What the leader shares with the followers before any model work: everything that decides
/// which forward passes run (see [`lockstep`]).
#[derive(serde::Serialize, serde::Deserialize)]
struct Work {
    job_hash: String,
    /// The papers to run, in order, with their text.
    pending: Vec<(Document, RecordKey)>,
}

/// The leader's part before the model: text for every paper (in parallel: a broken PDF costs no
/// model time), finished records reused, broken PDFs recorded. Returns the work to share.
fn leader_prepare(
    job: &job::JobConfig,
    schema: &Schema,
    model_hash: &str,
    pdfs: &[PathBuf],
    store: &RecordStore,
    progress: &Progress,
    summary: &mut RunSummary,
) -> Result<Work> {
    let job_hash = hashes::job_hash(job, schema, model_hash)?;
    let opts = pdf::ExtractOptions {
        cache_dir: Some(layout::OutDir::new(&job.io.out_dir).text_cache()),
        ..Default::default()
    };
    let texts = pdf::extract_many(pdfs, &opts);
    let mut pending: Vec<(Document, RecordKey)> = Vec::new();
    for (path, res) in texts {
        match res {
            Ok(doc) => {
                let key = RecordKey {
                    sha256: doc.sha256.clone(),
                    job_hash: job_hash.clone(),
                };
                if let Some(rec) = store
                    .finished::<PaperRecord>(&key)
                    .filter(PaperRecord::is_ok)
                {
                    summary.counts.reused += 1;
                    summary.add(&rec);
                    progress.line(
                        summary.counts.reused + summary.counts.failed,
                        &format!("{}: already done", display_name(&path)),
                    );
                } else {
                    pending.push((doc, key));
                }
            }
            Err(e) => {
                summary.counts.failed += 1;
                let rec = PaperRecord::pdf_error(&path, &job_hash, &e.to_string());
                store.save(&rec)?;
                progress.line(
                    summary.counts.reused + summary.counts.failed,
                    &format!("{}: FAILED: {e}", display_name(&path)),
                );
            }
        }
    }
    Ok(Work { job_hash, pending })
}

/// Runs the whole job on this rank: text, extraction, records. Returns the summary; the caller
/// (the leader) writes the derived outputs with [`output::write_outputs`].
///
/// The leader ([`Role::Leader`]) does everything; a follower only receives the leader's work
/// and computes in step, writing nothing (see [`lockstep`] for how the ranks stay in step).
pub fn run(
    job: &job::JobConfig,
    schema: &Schema,
    model: &LoadedModel,
    role: Role<'_>,
    pdfs: &[PathBuf],
) -> Result<RunSummary> {
    run_observed(job, schema, model, role, pdfs, &mut |_| {})
}

/// [`run`], calling `saved(job_hash)` on the leader once the finished and failed papers found
/// at the start are recorded, and after every paper saved since (the review page is rewritten
/// there: a long run can be looked at mid-way).
pub fn run_observed(
    job: &job::JobConfig,
    schema: &Schema,
    model: &LoadedModel,
    role: Role<'_>,
    pdfs: &[PathBuf],
    saved: &mut dyn FnMut(&str),
) -> Result<RunSummary> {
    let wall = Instant::now();
    let lockstep = Lockstep::new(&model.model);
    let mut summary = RunSummary {
        counts: manifest::Counts {
            papers: pdfs.len(),
            ..Default::default()
        },
        ..Default::default()
    };
    // The leader's writer: the store and the progress lines. Followers have none.
    let writer = match role {
        Role::Leader { .. } => Some((
            RecordStore::new(&job.io.out_dir),
            Progress::new(pdfs.len(), std::io::stderr().is_terminal()),
        )),
        Role::Follower => None,
    };
    let work = match (role, &writer) {
        (Role::Leader { model_hash }, Some((store, progress))) => Some(leader_prepare(
            job,
            schema,
            model_hash,
            pdfs,
            store,
            progress,
            &mut summary,
        )?),
        _ => None,
    };
    let work: Work = lockstep.share(work)?;
    let runner = Runner::with_job_hash(job, schema, model, work.job_hash)?;
    summary.job_hash = runner.job_hash.clone();
    if let Some((_, progress)) = &writer {
        saved(&runner.job_hash);
        progress.model_starts();
    }
    let mut done = summary.counts.reused + summary.counts.failed;
    for batch in work.pending.chunks(job.limits.batch) {
        if runner.lockstep.stop_vote()? {
            summary.counts.interrupted = true;
            break;
        }
        let docs: Vec<&Document> = batch.iter().map(|(d, _)| d).collect();
        let keys: Vec<RecordKey> = batch.iter().map(|(_, k)| k.clone()).collect();
        let records = runner.extract_batch(&docs, &keys)?;
        if runner.lockstep.stopped() {
            // The batch was cut short: its papers are not done, so nothing of it is saved.
            summary.counts.interrupted = true;
            break;
        }
        for rec in records {
            done += 1;
            if let Some((store, progress)) = &writer {
                store.save(&rec)?;
                progress.paper(done, &rec);
                saved(&runner.job_hash);
            }
            if rec.is_ok() {
                summary.counts.done += 1;
            } else {
                summary.counts.failed += 1;
            }
            summary.add(&rec);
        }
    }
    if let Some((_, progress)) = &writer {
        progress.finish();
    }
    summary.wall_secs = wall.elapsed().as_secs_f64();
    Ok(summary)
}

impl RunSummary {
    fn add(&mut self, rec: &PaperRecord) {
        if let Outcome::Ok(r) = &rec.outcome {
            self.counts.experiments += r.experiments.len();
            self.counts.values += r.experiments.iter().map(|e| e.values.len()).sum::<usize>();
            self.counts.dropped += r.dropped.len();
            self.counts.prompt_tokens += r.prompt_tokens;
            self.counts.generated_tokens += r.generated_tokens;
        }
        if let Some(t) = &rec.timing {
            self.model_secs += t.prefill_secs + t.decode_secs;
            self.decode_secs += t.decode_secs;
            self.grammar_secs += t.grammar_secs;
        }
    }
}
