//! The model a benchmark rank runs: one rank's shard of a TP model, as a one-rank config.
//!
//! Why a one-rank config: a rank of TP=N runs exactly the layers of a model whose head counts,
//! MLP width and vocabulary are the rank's share, minus the all-reduces. Building that model with
//! [`crate::tp::SingleRank`] runs the real code path at the real shapes on one GPU. The shares
//! come from [`paramx_plan::RankShape`], so the benchmark and the memory plan cannot disagree on
//! what a rank holds.

use crate::model::Qwen2Config;
use anyhow::Result;
use paramx_plan::{ModelShape, RankShape};

/// Qwen2.5-72B-Instruct's `config.json` (also in `configs/models/`).
pub const QWEN25_72B_CONFIG: &str =
    include_str!("../../../../configs/models/qwen2.5-72b-instruct.json");

/// The full model's shape and rank 0's shape under `tp` ranks.
pub fn qwen25_72b(tp: u64) -> Result<(ModelShape, RankShape)> {
    let model = ModelShape::from_config_json("qwen2.5-72b-instruct", QWEN25_72B_CONFIG)?;
    let rank = RankShape::new(&model, tp)?;
    Ok((model, rank))
}

/// A one-rank engine config with `rank`'s shapes (heads, KV heads, MLP width and vocabulary of
/// the shard; hidden size, head size and everything else of the full model).
pub fn rank_config(model: &ModelShape, rank: &RankShape) -> Qwen2Config {
    // Qwen2.5's RoPE base and norm epsilon (its config.json's values).
    Qwen2Config::from_rank_shape(rank, model.max_position_embeddings, 1_000_000.0, 1e-6)
}

/// A tiny rank-like model for CPU checks of the benchmark itself (head size 16, 2 layers).
pub fn tiny() -> Qwen2Config {
    Qwen2Config {
        vocab_size: 300,
        hidden_size: 64,
        intermediate_size: 96,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 16,
        max_position_embeddings: 4096,
        rope_theta: 1_000_000.0,
        rms_norm_eps: 1e-6,
        tie_word_embeddings: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank0_of_72b_tp2_has_the_documented_shapes() {
        let (model, rank) = qwen25_72b(2).unwrap();
        let cfg = rank_config(&model, &rank);
        // memory.md: 32 query heads, 4 KV heads, 14784 MLP columns, 76032 vocabulary rows.
        assert_eq!(
            (
                cfg.num_attention_heads,
                cfg.num_key_value_heads,
                cfg.intermediate_size,
                cfg.vocab_size,
                cfg.num_hidden_layers,
                cfg.hidden_size,
                cfg.head_dim
            ),
            (32, 4, 14784, 76032, 80, 8192, 128)
        );
        // 36.35 B parameters per rank (memory.md), counted by the plan's own formula.
        let p = cfg.rank_shape(1).unwrap().params().total();
        assert_eq!(p, rank.params().total());
        assert!((p as f64 / 1e9 - 36.35).abs() < 0.01, "{p}");
    }
}
