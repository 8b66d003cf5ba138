//! The per-rank memory formulas: KV cache, activation peak, fixed runtime costs.
//!
//! Every function here is plain arithmetic on a [`RankShape`]; no allocation is observed. The
//! assumptions behind each term are written next to it so that the engine and the plan can be
//! kept in step: when the engine keeps a tensor alive that is not listed here, the plan is wrong.

use super::model::{DType, RankShape};
use serde::Serialize;

const MIB: u64 = 1 << 20;

/// Live copies of the hidden state (tokens x hidden) during a layer: the residual stream, its
/// RMS-normed input, the sublayer output (the row-parallel partial sum, all-reduced in place)
/// and the residual sum being formed.
pub const HIDDEN_COPIES: u64 = 4;

/// Score buffers per attention-score element counted, in the compute dtype. The engine's fused
/// path (`model::fused::masked_softmax_`) turns a block's scores into probabilities in place, so
/// a block holds one buffer; the stream-ordered memory pool holds more: each query block attends
/// over more keys than the one before, so the pool cannot hand the previous blocks' freed
/// buffers to it. Measured on an H100 (`paramx bench-gpu`, 72B rank 0): a 16k-token prompt in
/// 2048-token chunks and 512-query blocks took 1.68 GiB beyond the weights, runtime and KV
/// cache, which is three copies (1.5 GiB) plus the other terms (0.19 GiB); two copies left the
/// 30k prompt at 0.999 of the plan. (The plain candle path, `Kernels::Plain`, keeps three f32
/// copies, 12 bytes per element: the plan describes the fused engine `paramx run` uses.)
pub const SCORE_COPIES: u64 = 3;

/// Fixed costs per GPU that do not depend on the job. Defaults come from measurements on the
/// project's GPU test machine where there is one, and from NCCL's documented buffer sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Overheads {
    /// CUDA context, loaded kernel modules and the runtime's own state. Measured: 527 MiB used on
    /// an idle H100 and H200 right after context creation (driver 580, CUDA 13), and 1.46 GiB
    /// beyond the weights once the 72B rank-0 model is loaded and idle (candle's PTX modules,
    /// its random-number state and the memory pool's reserve; cuBLAS counted separately below):
    /// 1.34 GiB.
    pub cuda_context: u64,
    /// cuBLAS/cuBLASLt workspace and handle state. Measured: 68 MiB after the first bf16 GEMM on
    /// H100 and H200; 128 MiB to cover a second stream's workspace.
    pub cublas_workspace: u64,
    /// NCCL communicator buffers, only when more than one rank: per channel and peer NCCL keeps
    /// a 4 MiB SIMPLE buffer, a ~4.5 MiB LL128 buffer and a 256 KiB LL buffer for each direction;
    /// 32 channels x 2 directions x ~9 MiB is ~576 MiB, rounded up to 640 MiB.
    pub nccl_buffers: u64,
    /// Allocator slack (fragmentation, the stream-ordered pool keeping freed blocks): this share
    /// of the KV cache plus reserved activations, in per mille ...
    pub slack_per_mille: u64,
    /// ... but at least this many bytes.
    pub slack_min: u64,
}

impl Default for Overheads {
    fn default() -> Self {
        Self {
            cuda_context: 1344 * MIB,
            cublas_workspace: 128 * MIB,
            nccl_buffers: 640 * MIB,
            slack_per_mille: 50,
            slack_min: 256 * MIB,
        }
    }
}

impl Overheads {
    /// NCCL buffers for a run of `tp` ranks: none for one rank (no communicator is created).
    pub fn nccl_for(&self, tp: u64) -> u64 {
        if tp > 1 {
            self.nccl_buffers
        } else {
            0
        }
    }

    /// Slack for `dynamic` bytes of KV cache and activations.
    pub fn slack_for(&self, dynamic: u64) -> u64 {
        (dynamic * self.slack_per_mille / 1000).max(self.slack_min)
    }
}

/// KV cache of one rank: K and V of every layer for `batch` sequences of `context` tokens each,
/// allocated once for the whole job (the cache never grows past `max_input + max_new`).
pub fn kv_cache_bytes(rank: &RankShape, dtype: DType, batch: u64, context: u64) -> u64 {
    rank.kv_elems_per_token() * dtype.bytes() * batch * context
}

/// Rotary sin and cos tables, `max_position_embeddings x head_dim / 2` each, kept for the run.
pub fn rope_table_bytes(rank: &RankShape, dtype: DType, max_positions: u64) -> u64 {
    2 * max_positions * (rank.head_dim / 2) * dtype.bytes()
}

/// One step of work whose transient memory is counted: `seqs` sequences each bringing
/// `new_tokens` tokens, attending over `keys` tokens (cached plus new), queries taken in blocks of
/// `query_block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Step {
    pub seqs: u64,
    pub new_tokens: u64,
    pub keys: u64,
    pub query_block: u64,
}

/// The transient tensors of one step on one rank, in bytes.
///
/// With `n = seqs x new_tokens`, `s` the dtype size, `q` / `kv` the rank's query and key widths,
/// `h_r` its query heads, `i_r` its MLP width and `v_r` its vocabulary rows:
/// - `hidden    = HIDDEN_COPIES x n x hidden x s`
/// - `qkv       = n x (2 q + 2 kv) x s`: the packed `q | k | v` projection and the rotated
///   queries (keys and values go straight into the KV cache: no copies, no `repeat_kv`)
/// - `scores    = seqs x h_r x min(query_block, new_tokens) x keys x SCORE_COPIES x s`: the
///   blocked attention scores, the term that chunking and query blocks keep bounded
/// - `attn_out  = 2 x n x q x s`: the attention output and its re-laid-out copy for o_proj
/// - `mlp       = 3 x n x i_r x s`: the packed `gate | up` projection and silu(gate) x up
/// - `logits    = seqs x v_r x (s + 4)`: the last position only, in dtype and in f32
///
/// A layer's peak is `hidden + max(attention, mlp)` (attention = qkv + scores + attn_out),
/// since the attention temporaries are freed before the MLP runs. The step's
/// peak is the larger of that and `hidden + logits` (the final projection runs after the last
/// layer's temporaries are gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ActivationTerms {
    pub hidden: u64,
    pub qkv: u64,
    pub scores: u64,
    pub attn_out: u64,
    pub mlp: u64,
    pub logits: u64,
}

impl ActivationTerms {
    pub fn of(rank: &RankShape, dtype: DType, step: Step) -> Self {
        let s = dtype.bytes();
        let n = step.seqs * step.new_tokens;
        let (q, kv) = (rank.q_width(), rank.kv_width());
        let block = step.query_block.min(step.new_tokens);
        Self {
            hidden: HIDDEN_COPIES * n * rank.hidden * s,
            qkv: n * (2 * q + 2 * kv) * s,
            scores: step.seqs * rank.heads * block * step.keys * SCORE_COPIES * s,
            attn_out: 2 * n * q * s,
            mlp: 3 * n * rank.intermediate * s,
            logits: step.seqs * rank.vocab * (s + 4),
        }
    }

    pub fn attention(&self) -> u64 {
        self.qkv + self.scores + self.attn_out
    }

    /// The step's peak, see the type's documentation.
    pub fn peak(&self) -> u64 {
        self.hidden + self.attention().max(self.mlp).max(self.logits)
    }

    /// The terms by name, largest first: what an over-headroom message points at.
    pub fn named(&self) -> Vec<(&'static str, u64)> {
        let mut v = vec![
            ("hidden copies", self.hidden),
            ("q/k/v projections", self.qkv),
            ("attention scores", self.scores),
            ("attention output", self.attn_out),
            ("MLP intermediates", self.mlp),
            ("last-position logits", self.logits),
        ];
        v.sort_by_key(|t| std::cmp::Reverse(t.1));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelShape;

    const KIB: u64 = 1024;
    const GIB: u64 = 1 << 30;

    fn rank72(tp: u64) -> RankShape {
        let m = ModelShape::from_config_json(
            "72b",
            include_str!("../../../configs/models/qwen2.5-72b-instruct.json"),
        )
        .unwrap();
        RankShape::new(&m, tp).unwrap()
    }

    #[test]
    fn kv_cache_matches_memory_md() {
        let r = rank72(2);
        // 160 KiB per token per rank; 1 GiB holds 6,553 tokens; a 16k paper needs 2.5 GiB.
        assert_eq!(kv_cache_bytes(&r, DType::Bf16, 1, 1), 160 * KIB);
        assert_eq!(GIB / kv_cache_bytes(&r, DType::Bf16, 1, 1), 6553);
        assert_eq!(kv_cache_bytes(&r, DType::Bf16, 1, 16384), 5 * GIB / 2);
        assert_eq!(kv_cache_bytes(&r, DType::Bf16, 3, 16384), 15 * GIB / 2);
    }

    #[test]
    fn activation_terms_match_memory_md() {
        let r = rank72(2);
        // Naive attention, C = 2048 queries at once against T = 16384 keys: memory.md's
        // 32 heads x C x T x 4 bytes = 4 GiB for one f32 copy; the fused engine keeps bf16
        // scores (2 GiB) and we count three (in place softmax, plus the pool's unreusable
        // buffers of earlier blocks: see SCORE_COPIES).
        let naive = Step {
            seqs: 1,
            new_tokens: 2048,
            keys: 16384,
            query_block: 2048,
        };
        let t = ActivationTerms::of(&r, DType::Bf16, naive);
        assert_eq!(t.scores, 3 * 2 * GIB);
        // Hidden state: 16 KiB per token per live copy.
        assert_eq!(t.hidden, HIDDEN_COPIES * 2048 * 16 * KIB);
        // MLP ~87 KiB per token (3 x 14784 x 2 bytes = 86.6 KiB).
        assert_eq!(t.mlp, 2048 * 3 * 14784 * 2);
        assert_eq!((t.mlp as f64 / 2048.0 / 1024.0 * 10.0).round(), 866.0);
        // Query blocks of 512 cut the scores by 4.
        let blocked = ActivationTerms::of(
            &r,
            DType::Bf16,
            Step {
                query_block: 512,
                ..naive
            },
        );
        assert_eq!(blocked.scores, 3 * GIB / 2);
        assert_eq!(blocked.attention(), t.attention() - 9 * GIB / 2);
        // Everything but the scores is identical.
        assert_eq!(
            (blocked.mlp, blocked.qkv, blocked.logits),
            (t.mlp, t.qkv, t.logits)
        );
        // Last-position logits: 76032 rows x (2 + 4) bytes per sequence.
        assert_eq!(t.logits, 76032 * 6);
        assert_eq!(t.peak(), t.hidden + t.attention());
        assert_eq!(t.named()[0], ("attention scores", 6 * GIB));
    }

    #[test]
    fn hand_computed_prefill_peak() {
        let r = rank72(2);
        let t = ActivationTerms::of(
            &r,
            DType::Bf16,
            Step {
                seqs: 1,
                new_tokens: 2048,
                keys: 16384,
                query_block: 512,
            },
        );
        let hidden = 4 * 2048 * 8192 * 2; // 128 MiB
        let qkv = 2048 * (2 * 4096 + 2 * 512) * 2; // 36 MiB
        let scores = 32 * 512 * 16384 * 2 * 3; // 1.5 GiB
        let attn_out = 2 * 2048 * 4096 * 2; // 32 MiB
        assert_eq!(t.peak(), hidden + qkv + scores + attn_out);
        assert_eq!(t.peak(), GIB + 708 * MIB);
    }

    #[test]
    fn overheads_depend_on_rank_count_and_dynamic_size() {
        let o = Overheads::default();
        assert_eq!(o.nccl_for(1), 0);
        assert_eq!(o.nccl_for(2), 640 * MIB);
        assert_eq!(o.slack_for(0), 256 * MIB);
        assert_eq!(o.slack_for(20 * GIB), GIB);
    }
}
