//! The memory plan: will this job fit on these GPUs, and by how much does it miss if not?
//!
//! Computed before anything is loaded, from the model's `config.json`, the GPU size, the
//! tensor-parallel size and the job's token limits. The run command refuses to start when
//! [`Plan::check`] fails; there is no CPU offload to fall back on, by design (a model that spills
//! to the CPU runs two orders of magnitude slower and in the reference project produced empty
//! "successful" output).
//!
//! Everything is per GPU, for rank 0, which holds the largest shard (see [`RankShape`]).

pub mod gpu;
pub mod memory;
pub mod model;
mod render;

pub use gpu::{GpuMemory, GpuPreset};
pub use memory::{ActivationTerms, Overheads, Step};
pub use model::{DType, ModelConfig, ModelShape, RankParams, RankShape, ShapeError};

use serde::Serialize;
use std::fmt;

/// The job's limits, as plain numbers: what the run command takes from its job config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct JobLimits {
    /// Longest prompt (paper text plus instructions), in tokens.
    pub max_input_tokens: u64,
    /// Most tokens generated per sequence.
    pub max_new_tokens: u64,
    /// Sequences decoded together (and prefilled together).
    pub batch: u64,
    /// Prompt tokens per prefill step; the prompt is processed in chunks of this size.
    pub prefill_chunk: u64,
    /// Query rows per attention block inside a prefill chunk.
    pub query_block: u64,
    /// Bytes reserved per GPU for activations. `None`: reserve exactly the computed peak.
    pub activation_headroom: Option<u64>,
    pub dtype: DType,
    /// `Some(q)`: the job asks questions of at most `q` tokens on one shared prefix (the
    /// paper, up to `max_input_tokens`), `batch` questions at a time
    /// (the engine's `Generator::generate_shared`): the prefix's K/V is stored once and
    /// each row holds only its question and answer. `None`: every sequence is a whole prompt.
    pub question_tokens: Option<u64>,
}

impl Default for JobLimits {
    /// A single paper of up to 16k tokens, a 1k-token answer, bf16, 2k-token prefill chunks in
    /// 512-row attention blocks, 4 GiB of activation headroom.
    fn default() -> Self {
        Self {
            max_input_tokens: 16384,
            max_new_tokens: 1024,
            batch: 1,
            prefill_chunk: 2048,
            query_block: 512,
            activation_headroom: Some(4 << 30),
            dtype: DType::Bf16,
            question_tokens: None,
        }
    }
}

/// A request that cannot be planned at all (as opposed to one that is planned and does not fit).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error("{0} must be at least 1")]
    Zero(&'static str),
}

/// Everything a plan depends on, validated: non-zero limits and a model that splits over `tp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanRequest {
    model: ModelShape,
    rank: RankShape,
    gpu: GpuMemory,
    job: JobLimits,
    overheads: Overheads,
}

impl PlanRequest {
    /// Validates the numbers and cuts the model for `tp` ranks. Uses the default [`Overheads`].
    pub fn new(
        model: ModelShape,
        gpu: GpuMemory,
        tp: u64,
        job: JobLimits,
    ) -> Result<Self, PlanError> {
        for (name, v) in [
            ("max_input_tokens", job.max_input_tokens),
            ("max_new_tokens", job.max_new_tokens),
            ("batch", job.batch),
            ("prefill_chunk", job.prefill_chunk),
            ("query_block", job.query_block),
            ("GPU memory", gpu.usable_bytes),
            ("question_tokens", job.question_tokens.unwrap_or(1)),
        ] {
            if v == 0 {
                return Err(PlanError::Zero(name));
            }
        }
        let rank = RankShape::new(&model, tp)?;
        Ok(Self {
            model,
            rank,
            gpu,
            job,
            overheads: Overheads::default(),
        })
    }

    /// Replaces the default fixed costs (e.g. measured ones for a particular cluster).
    pub fn with_overheads(mut self, overheads: Overheads) -> Self {
        self.overheads = overheads;
        self
    }

    pub fn model(&self) -> &ModelShape {
        &self.model
    }
    pub fn rank(&self) -> &RankShape {
        &self.rank
    }
    pub fn gpu(&self) -> &GpuMemory {
        &self.gpu
    }
    pub fn job(&self) -> &JobLimits {
        &self.job
    }
    pub fn tp(&self) -> u64 {
        self.rank.tp
    }

    /// The plan, including the largest batch and context that would fit.
    pub fn plan(&self) -> Plan {
        Plan {
            request: self.clone(),
            budget: Budget::of(self),
            largest: Largest {
                within_headroom: self.largest(false),
                raising_headroom: self.largest(true),
            },
        }
    }

    /// Largest batch (at this context) and context (at this batch) that fit in memory; with
    /// `raise_headroom`, the activation reservation may grow to whatever peak they need.
    fn largest(&self, raise_headroom: bool) -> Edges {
        let fits = |job: JobLimits| {
            let job = if raise_headroom {
                let peak = Budget::of(&self.with_job(job)).activation_peak;
                let floor = self.job.activation_headroom.unwrap_or(0);
                JobLimits {
                    activation_headroom: Some(peak.max(floor)),
                    ..job
                }
            } else {
                job
            };
            Budget::of(&self.with_job(job)).fits_memory()
        };
        let new = self.job.max_new_tokens;
        Edges {
            batch: largest(1, 1 << 16, |batch| fits(JobLimits { batch, ..self.job })),
            context: largest(new + 1, 1 << 24, |ctx| {
                fits(JobLimits {
                    max_input_tokens: ctx - new,
                    ..self.job
                })
            }),
        }
    }

    fn with_job(&self, job: JobLimits) -> Self {
        Self {
            job,
            ..self.clone()
        }
    }
}

/// The largest `x` in `lo..=hi` for which `fits` holds, assuming `fits` is monotone (true up to
/// some point, false after); `None` when even `lo` does not fit.
fn largest(lo: u64, hi: u64, fits: impl Fn(u64) -> bool) -> Option<u64> {
    if !fits(lo) {
        return None;
    }
    let (mut ok, mut bad) = (lo, hi + 1);
    while bad - ok > 1 {
        let mid = ok + (bad - ok) / 2;
        if fits(mid) {
            ok = mid;
        } else {
            bad = mid;
        }
    }
    Some(ok)
}

/// Which step of the job sets the activation peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The last prefill chunk, attending over the whole prompt.
    Prefill,
    /// A decode step at full context.
    Decode,
}

/// The per-GPU bytes of one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Budget {
    pub params: RankParams,
    pub weights: u64,
    pub kv_cache: u64,
    pub rope_tables: u64,
    pub activation_peak: u64,
    pub peak_phase: Phase,
    pub peak_step: Step,
    pub peak_terms: ActivationTerms,
    /// What is set aside for activations: the job's headroom, or the peak when none is given.
    pub activation_reserved: u64,
    pub cuda_context: u64,
    pub cublas_workspace: u64,
    pub nccl_buffers: u64,
    pub allocator_slack: u64,
    pub total: u64,
    pub usable: u64,
    /// Context length per sequence: `max_input_tokens + max_new_tokens`.
    pub context: u64,
}

impl Budget {
    fn of(req: &PlanRequest) -> Self {
        let (rank, job, o) = (&req.rank, &req.job, &req.overheads);
        let s = job.dtype.bytes();
        let params = rank.params();
        let weights = params.total() * s;
        // A question continues the prefix: its positions come after the prefix's.
        let context = job.max_input_tokens + job.question_tokens.unwrap_or(0) + job.max_new_tokens;
        let decode = Step {
            seqs: job.batch,
            new_tokens: 1,
            keys: context,
            query_block: job.query_block,
        };
        // Prefill: the last chunk of the longest prompt sees every prompt token. With a shared
        // prefix, the prefix is prefilled once as one sequence, then the questions' own tokens
        // for the whole batch, attending to the prefix and themselves.
        let (kv_cache, prefills) = match job.question_tokens {
            None => (
                memory::kv_cache_bytes(rank, job.dtype, job.batch, context),
                vec![Step {
                    seqs: job.batch,
                    new_tokens: job.prefill_chunk.min(job.max_input_tokens),
                    keys: job.max_input_tokens,
                    query_block: job.query_block,
                }],
            ),
            Some(q) => (
                memory::kv_cache_bytes(rank, job.dtype, 1, job.max_input_tokens)
                    + memory::kv_cache_bytes(rank, job.dtype, job.batch, q + job.max_new_tokens),
                vec![
                    Step {
                        seqs: 1,
                        new_tokens: job.prefill_chunk.min(job.max_input_tokens),
                        keys: job.max_input_tokens,
                        query_block: job.query_block,
                    },
                    Step {
                        seqs: job.batch,
                        new_tokens: job.prefill_chunk.min(q),
                        keys: job.max_input_tokens + q,
                        query_block: job.query_block,
                    },
                ],
            ),
        };
        let rope_tables =
            memory::rope_table_bytes(rank, job.dtype, req.model.max_position_embeddings);
        let mut peak = (
            Phase::Decode,
            decode,
            ActivationTerms::of(rank, job.dtype, decode),
        );
        for step in prefills {
            let t = ActivationTerms::of(rank, job.dtype, step);
            if t.peak() >= peak.2.peak() {
                peak = (Phase::Prefill, step, t);
            }
        }
        let (peak_phase, peak_step, peak_terms) = peak;
        let activation_peak = peak_terms.peak();
        let activation_reserved = job.activation_headroom.unwrap_or(activation_peak);
        let allocator_slack = o.slack_for(kv_cache + activation_reserved);
        let nccl_buffers = o.nccl_for(rank.tp);
        let total = weights
            + kv_cache
            + rope_tables
            + activation_reserved
            + o.cuda_context
            + o.cublas_workspace
            + nccl_buffers
            + allocator_slack;
        Self {
            params,
            weights,
            kv_cache,
            rope_tables,
            activation_peak,
            peak_phase,
            peak_step,
            peak_terms,
            activation_reserved,
            cuda_context: o.cuda_context,
            cublas_workspace: o.cublas_workspace,
            nccl_buffers,
            allocator_slack,
            total,
            usable: req.gpu.usable_bytes,
            context,
        }
    }

    /// Bytes left after everything is counted (0 when over).
    pub fn free(&self) -> u64 {
        self.usable.saturating_sub(self.total)
    }

    /// The memory constraints only (not the model's position limit): total within the card and
    /// the activation peak within its reservation.
    fn fits_memory(&self) -> bool {
        self.total <= self.usable && self.activation_peak <= self.activation_reserved
    }

    /// Every per-GPU line by name, in table order.
    pub fn lines(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("weights", self.weights),
            ("KV cache", self.kv_cache),
            ("activations (reserved)", self.activation_reserved),
            ("rope tables", self.rope_tables),
            ("CUDA context", self.cuda_context),
            ("cuBLAS workspace", self.cublas_workspace),
            ("NCCL buffers", self.nccl_buffers),
            ("allocator slack", self.allocator_slack),
        ]
    }
}

/// A computed plan: the per-GPU budget plus the largest batch and context that would fit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub request: PlanRequest,
    pub budget: Budget,
    pub largest: Largest,
}

/// How far the job could grow on these GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Largest {
    /// Keeping the job's activation headroom as it is.
    pub within_headroom: Edges,
    /// Letting the activation reservation grow to the peak the larger job needs (never below the
    /// job's headroom): the memory limit proper.
    pub raising_headroom: Edges,
}

/// The largest batch and context that fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Edges {
    /// Largest batch at the job's context (`None`: not even one sequence).
    pub batch: Option<u64>,
    /// Largest `max_input_tokens + max_new_tokens` at the job's batch, ignoring the model's
    /// `max_position_embeddings` (shown beside it). `None`: not even one input token.
    pub context: Option<u64>,
}

impl Plan {
    /// `Ok` when the job fits; otherwise every violated constraint with its overrun.
    pub fn check(&self) -> Result<(), Infeasible> {
        let b = &self.budget;
        let mut overruns = Vec::new();
        if b.total > b.usable {
            overruns.push(Overrun::Memory {
                needed: b.total,
                usable: b.usable,
                over: b.total - b.usable,
                terms: b
                    .lines()
                    .into_iter()
                    .map(|(n, v)| (n.to_string(), v))
                    .collect(),
            });
        }
        if b.activation_peak > b.activation_reserved {
            let (name, bytes) = b.peak_terms.named()[0];
            overruns.push(Overrun::ActivationHeadroom {
                peak: b.activation_peak,
                headroom: b.activation_reserved,
                over: b.activation_peak - b.activation_reserved,
                phase: b.peak_phase,
                largest_term: (name.to_string(), bytes),
            });
        }
        let limit = self.request.model.max_position_embeddings;
        if b.context > limit {
            overruns.push(Overrun::Context {
                requested: b.context,
                limit,
                over: b.context - limit,
            });
        }
        if overruns.is_empty() {
            Ok(())
        } else {
            Err(Infeasible {
                gpu: self.request.gpu.name.clone(),
                tp: self.request.tp(),
                overruns,
            })
        }
    }

    /// The plan as an aligned terminal table.
    pub fn table(&self) -> String {
        render::table(self)
    }
}

/// Why a job does not fit: each violated constraint, with its size and overrun.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct Infeasible {
    pub gpu: String,
    pub tp: u64,
    pub overruns: Vec<Overrun>,
}

/// One violated constraint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "constraint", rename_all = "snake_case")]
pub enum Overrun {
    /// Everything together is larger than the card.
    Memory {
        needed: u64,
        usable: u64,
        over: u64,
        terms: Vec<(String, u64)>,
    },
    /// The activation peak is larger than the job's reserved headroom.
    ActivationHeadroom {
        peak: u64,
        headroom: u64,
        over: u64,
        phase: Phase,
        largest_term: (String, u64),
    },
    /// `max_input_tokens + max_new_tokens` is beyond the model's position limit.
    Context {
        requested: u64,
        limit: u64,
        over: u64,
    },
}

/// Bytes as GiB with two decimals, the unit every plan line uses.
pub fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

impl fmt::Display for Infeasible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the job does not fit on {} with {} rank(s), per GPU:",
            self.gpu, self.tp
        )?;
        for o in &self.overruns {
            match o {
                Overrun::Memory {
                    needed,
                    usable,
                    over,
                    terms,
                } => {
                    write!(
                        f,
                        "\n  - memory: needs {} of {} usable, over by {} (",
                        gib(*needed),
                        gib(*usable),
                        gib(*over)
                    )?;
                    for (i, (name, v)) in terms.iter().enumerate() {
                        let sep = if i == 0 { "" } else { ", " };
                        write!(f, "{sep}{name} {}", gib(*v))?;
                    }
                    write!(
                        f,
                        "); lower batch, max_input_tokens or max_new_tokens, or add GPUs"
                    )?;
                }
                Overrun::ActivationHeadroom {
                    peak,
                    headroom,
                    over,
                    phase,
                    largest_term: (name, bytes),
                } => write!(
                    f,
                    "\n  - activations: the {} peak {} exceeds the reserved activation_headroom \
                     {} by {} (largest term: {name} {}); lower prefill_chunk or query_block, or \
                     raise activation_headroom",
                    match phase {
                        Phase::Prefill => "prefill",
                        Phase::Decode => "decode",
                    },
                    gib(*peak),
                    gib(*headroom),
                    gib(*over),
                    gib(*bytes)
                )?,
                Overrun::Context {
                    requested,
                    limit,
                    over,
                } => write!(
                    f,
                    "\n  - context: max_input_tokens + max_new_tokens = {requested} tokens exceeds \
                     the model's max_position_embeddings {limit} by {over}"
                )?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    fn q72() -> ModelShape {
        ModelShape::from_config_json(
            "qwen2.5-72b-instruct",
            include_str!("../../../configs/models/qwen2.5-72b-instruct.json"),
        )
        .unwrap()
    }

    fn plan(gpu: GpuPreset, job: JobLimits) -> Plan {
        PlanRequest::new(q72(), gpu.memory(), 2, job)
            .unwrap()
            .plan()
    }

    #[test]
    fn default_job_fits_on_two_h100s_with_hand_checked_lines() {
        let p = plan(GpuPreset::H100_80gb, JobLimits::default());
        let b = &p.budget;
        // 36.35 B parameters x 2 bytes = 67.7 GiB, by hand from the rank shapes.
        let per_layer =
            8192 * 4096 + 4096 + 2 * (8192 * 512 + 512) + 4096 * 8192 + 3 * 8192 * 14784 + 2 * 8192;
        let params = 80 * per_layer + 2 * 76032 * 8192 + 8192;
        assert_eq!(params, 36_353_761_280);
        assert_eq!(b.weights, params * 2);
        assert_eq!(gib(b.weights), "67.71 GiB");
        // 17408 tokens x 160 KiB = 2.66 GiB.
        assert_eq!(b.kv_cache, 17408 * 160 * 1024);
        // Prefill: 2048-token chunk, 512-row blocks, 16384 keys (see memory.rs hand test).
        assert_eq!(b.peak_phase, Phase::Prefill);
        assert_eq!(b.activation_peak, GIB + 708 * MIB);
        assert_eq!(b.activation_reserved, 4 * GIB);
        // rope: 2 x 32768 x 64 x 2 bytes = 8 MiB.
        assert_eq!(b.rope_tables, 8 * MIB);
        // slack: 5% of (2.66 + 4) GiB.
        assert_eq!(b.allocator_slack, (b.kv_cache + 4 * GIB) / 20);
        let fixed = (1344 + 128 + 640) * MIB;
        assert_eq!(
            b.total,
            b.weights + b.kv_cache + 4 * GIB + 8 * MIB + fixed + b.allocator_slack
        );
        assert_eq!(b.usable - b.total, b.free());
        assert!(p.check().is_ok(), "{:?}", p.check());
        // memory.md: ~11 GiB remain after the weights on an 80 GB card.
        let after_weights = (b.usable - b.weights) as f64 / GIB as f64;
        assert!((after_weights - 11.46).abs() < 0.01, "{after_weights}");
    }

    #[test]
    fn largest_batch_and_context_are_the_edges_of_feasibility() {
        let job = JobLimits::default();
        let p = plan(GpuPreset::H100_80gb, job);
        let lb = p.largest.within_headroom.batch.unwrap();
        let fits = |b| {
            plan(GpuPreset::H100_80gb, JobLimits { batch: b, ..job })
                .check()
                .is_ok()
        };
        assert!(fits(lb));
        assert!(!fits(lb + 1));
        let lc = p.largest.within_headroom.context.unwrap();
        let fits_ctx = |c: u64| {
            let p = plan(
                GpuPreset::H100_80gb,
                JobLimits {
                    max_input_tokens: c - job.max_new_tokens,
                    ..job
                },
            );
            p.budget.fits_memory()
        };
        assert!(fits_ctx(lc));
        assert!(!fits_ctx(lc + 1));
        // With a fixed 4 GiB headroom an H100's context is limited by its memory (the KV cache
        // must fit beside 67.7 GiB of weights), an H200's by the headroom: it holds more.
        let h200 = plan(GpuPreset::H200, job);
        let (hw, pw) = (h200.largest.within_headroom, p.largest.within_headroom);
        assert!(
            hw.context.unwrap() > pw.context.unwrap(),
            "{hw:?} vs {pw:?}"
        );
        assert!(hw.batch.unwrap() >= pw.batch.unwrap(), "{hw:?} vs {pw:?}");
        let (h, r) = (h200.largest.raising_headroom, p.largest.raising_headroom);
        assert!(h.batch.unwrap() > r.batch.unwrap());
        assert!(h.context.unwrap() > r.context.unwrap());
        assert!(r.batch.unwrap() >= lb && r.context.unwrap() >= lc);
        // The raised edge is a feasible job once max(peak, 4 GiB) is reserved; one more is not.
        let raised = |batch| {
            let peak = plan(GpuPreset::H200, JobLimits { batch, ..job })
                .budget
                .activation_peak;
            let headroom = Some(peak.max(4 * GIB));
            plan(
                GpuPreset::H200,
                JobLimits {
                    batch,
                    activation_headroom: headroom,
                    ..job
                },
            )
        };
        assert!(raised(h.batch.unwrap()).check().is_ok());
        assert!(raised(h.batch.unwrap() + 1).check().is_err());
    }

    #[test]
    fn infeasible_job_names_each_term_and_the_overrun() {
        let job = JobLimits {
            max_input_tokens: 40_000,
            max_new_tokens: 2_000,
            batch: 4,
            prefill_chunk: 4096,
            query_block: 4096,
            activation_headroom: Some(2 * GIB),
            dtype: DType::Bf16,
            question_tokens: None,
        };
        let p = plan(GpuPreset::A100_80gb, job);
        let err = p.check().unwrap_err();
        assert_eq!(err.overruns.len(), 3);
        let msg = err.to_string();
        assert!(
            msg.starts_with("the job does not fit on a100-80gb with 2 rank(s)"),
            "{msg}"
        );
        // KV alone: 4 x 42000 x 160 KiB = 25.63 GiB.
        assert!(msg.contains("KV cache 25.63 GiB"), "{msg}");
        assert!(msg.contains("weights 67.71 GiB"), "{msg}");
        let Overrun::Memory {
            needed,
            usable,
            over,
            ..
        } = &err.overruns[0]
        else {
            panic!("{msg}")
        };
        assert_eq!(needed - usable, *over);
        assert!(msg.contains(&format!("over by {}", gib(*over))), "{msg}");
        assert!(
            msg.contains("exceeds the reserved activation_headroom 2.00 GiB"),
            "{msg}"
        );
        assert!(msg.contains("largest term: attention scores"), "{msg}");
        assert!(
            msg.contains("42000 tokens exceeds the model's max_position_embeddings 32768 by 9232")
        );
    }

    #[test]
    fn a_shared_prefix_is_stored_once() {
        let copies = JobLimits {
            max_input_tokens: 16384,
            max_new_tokens: 64,
            batch: 16,
            ..JobLimits::default()
        };
        let shared = JobLimits {
            question_tokens: Some(128),
            ..copies
        };
        let (c, s) = (
            plan(GpuPreset::H200, copies).budget,
            plan(GpuPreset::H200, shared).budget,
        );
        let per_token = 160 * 1024; // 72B rank 0 of TP=2, bf16 (memory.md)
        assert_eq!(c.kv_cache, 16 * (16384 + 64) * per_token);
        assert_eq!(s.kv_cache, (16384 + 16 * (128 + 64)) * per_token);
        assert_eq!(s.context, 16384 + 128 + 64);
        // The questions' prefill (16 rows x 128 tokens against 16k keys) and the prefix's
        // (one row, a 2k chunk) are both counted; the larger sets the peak.
        assert!(s.activation_peak > 0 && s.activation_peak < c.activation_peak);
        // 16 questions prefilled together against 16k keys need 6.2 GiB of scores: over the
        // default 4 GiB headroom (refused before loading), inside 8 GiB.
        assert!(plan(GpuPreset::H200, shared).check().is_err());
        let roomy = JobLimits {
            activation_headroom: Some(8 << 30),
            ..shared
        };
        assert!(plan(GpuPreset::H200, roomy).check().is_ok());
    }

    #[test]
    fn no_headroom_reserves_the_peak() {
        let p = plan(
            GpuPreset::H200,
            JobLimits {
                activation_headroom: None,
                ..JobLimits::default()
            },
        );
        assert_eq!(p.budget.activation_reserved, p.budget.activation_peak);
        assert!(p.check().is_ok());
    }

    #[test]
    fn one_rank_of_72b_does_not_fit_on_80gb() {
        let p = PlanRequest::new(
            q72(),
            GpuPreset::H100_80gb.memory(),
            1,
            JobLimits::default(),
        )
        .unwrap()
        .plan();
        assert_eq!(p.budget.nccl_buffers, 0);
        let none = Edges {
            batch: None,
            context: None,
        };
        assert_eq!(p.largest.within_headroom, none);
        assert_eq!(p.largest.raising_headroom, none);
        assert!(p.check().is_err());
    }

    #[test]
    fn zero_limits_and_bad_splits_are_refused() {
        let gpu = GpuPreset::H200.memory();
        let e = PlanRequest::new(
            q72(),
            gpu.clone(),
            2,
            JobLimits {
                batch: 0,
                ..JobLimits::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "batch must be at least 1");
        let e = PlanRequest::new(q72(), gpu, 3, JobLimits::default()).unwrap_err();
        assert!(matches!(e, PlanError::Shape(_)));
    }

    #[test]
    fn largest_finds_the_edge() {
        assert_eq!(largest(1, 100, |x| x <= 37), Some(37));
        assert_eq!(largest(1, 100, |_| true), Some(100));
        assert_eq!(largest(1, 100, |_| false), None);
    }
}
