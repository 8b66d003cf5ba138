//! Bytes that must move and FLOPs that must be done per step of a one-rank Qwen2: the floors a
//! measured time is compared against (METHOD: "two numbers first").
//!
//! Counts are the *useful* minimum: every weight read once per forward pass, the KV cache read
//! once per decode step, causal attention counted over the visible keys only. An engine that
//! reads more (re-reads, f32 copies, masked-out scores) shows up as a gap, not as a bigger floor.

use crate::model::Qwen2Config;

/// Per-step floors of one forward pass.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct StepCost {
    pub bytes: f64,
    pub flops: f64,
}

/// Elements of the matrices multiplied per token: q/k/v/o, gate/up/down of every layer, and the
/// lm_head (applied to one position per sequence).
fn layer_matmul_params(c: &Qwen2Config) -> f64 {
    let (h, q, kv) = (
        c.hidden_size as f64,
        (c.num_attention_heads * c.head_dim) as f64,
        (c.num_key_value_heads * c.head_dim) as f64,
    );
    let per_layer = h * q + 2.0 * h * kv + q * h + 3.0 * h * c.intermediate_size as f64;
    per_layer * c.num_hidden_layers as f64
}

fn lm_head_params(c: &Qwen2Config) -> f64 {
    (c.vocab_size * c.hidden_size) as f64
}

/// Everything but the embedding table (of which a step reads only one row per token): projection
/// weights, biases, norm weights and the lm_head.
pub fn weight_bytes_read(c: &Qwen2Config, dtype_bytes: f64) -> f64 {
    let (q, kv, h) = (
        (c.num_attention_heads * c.head_dim) as f64,
        (c.num_key_value_heads * c.head_dim) as f64,
        c.hidden_size as f64,
    );
    let small = c.num_hidden_layers as f64 * (q + 2.0 * kv + 2.0 * h) + h;
    (layer_matmul_params(c) + lm_head_params(c) + small) * dtype_bytes
}

/// KV bytes per cached token (K and V, every layer).
fn kv_bytes_per_token(c: &Qwen2Config, dtype_bytes: f64) -> f64 {
    2.0 * (c.num_hidden_layers * c.num_key_value_heads * c.head_dim) as f64 * dtype_bytes
}

/// One decode step of `batch` sequences whose caches hold `context` tokens (the new one
/// included): weights once, every sequence's KV once, attention 4·d FLOPs per (head, key).
pub fn decode_step(c: &Qwen2Config, dtype_bytes: f64, batch: usize, context: usize) -> StepCost {
    let b = batch as f64;
    let attn =
        4.0 * (c.num_hidden_layers * c.num_attention_heads * c.head_dim) as f64 * context as f64;
    StepCost {
        bytes: weight_bytes_read(c, dtype_bytes)
            + b * context as f64 * kv_bytes_per_token(c, dtype_bytes),
        flops: b * (2.0 * (layer_matmul_params(c) + lm_head_params(c)) + attn),
    }
}

/// A whole prefill of one `prompt`-token sequence processed in chunks of `chunk` tokens, ending
/// with the lm_head on the last position: weights read once per chunk, causal attention over the
/// `prompt·(prompt+1)/2` visible (query, key) pairs.
pub fn prefill(c: &Qwen2Config, dtype_bytes: f64, prompt: usize, chunk: usize) -> StepCost {
    let p = prompt as f64;
    let chunks = prompt.div_ceil(chunk.max(1)) as f64;
    let pairs = p * (p + 1.0) / 2.0;
    let attn = 4.0 * (c.num_hidden_layers * c.num_attention_heads * c.head_dim) as f64 * pairs;
    StepCost {
        bytes: chunks * weight_bytes_read(c, dtype_bytes) + p * kv_bytes_per_token(c, dtype_bytes),
        flops: 2.0 * p * layer_matmul_params(c) + 2.0 * lm_head_params(c) + attn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank0_72b_decode_floor_matches_memory_md() {
        let (model, rank) = crate::model::shapes::qwen25_72b(2).unwrap();
        let c = crate::model::shapes::rank_config(&model, &rank);
        // memory.md: each rank reads ~72.7 GB of weights per step; minus the embedding table
        // (76032 x 8192 x 2 B = 1.246 GB) that a step only gathers rows from.
        let w = weight_bytes_read(&c, 2.0);
        assert!((w / 1e9 - (72.7 - 1.246)).abs() < 0.05, "{w}");
        // KV: 160 KiB per token per rank (memory.md).
        assert_eq!(kv_bytes_per_token(&c, 2.0), 160.0 * 1024.0);
        let d = decode_step(&c, 2.0, 4, 1000);
        assert_eq!(d.bytes, w + 4.0 * 1000.0 * 160.0 * 1024.0);
        // Prefill: ~2 x 36.35 GFLOP per token minus the embedding and lm_head, which run once.
        let p = prefill(&c, 2.0, 1, 1);
        let per_token = 2.0 * (36.35e9 - 2.0 * 76032.0 * 8192.0);
        assert!((p.flops - 2.0 * 76032.0 * 8192.0) / per_token - 1.0 < 1e-3);
    }
}
