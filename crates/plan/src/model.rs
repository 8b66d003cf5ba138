//! The model's shape, read from a Hugging Face `config.json`, and how tensor parallelism cuts it.
//!
//! This is the one parser of `config.json` and the one rule of what splits over ranks: the
//! engine builds its `Qwen2Config` from [`ModelConfig`] and checks its split with
//! [`RankShape::new`], so a job the plan approves is a job the engine loads.
//!
//! Only the numbers that decide memory are kept. Everything is counted in elements here; bytes
//! come from [`DType::bytes`] in the caller, so the same counts serve bf16, f16 and f32.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// Errors in a model config or in how it splits over ranks.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShapeError {
    #[error("{field} is 0 in the model config")]
    Zero { field: &'static str },
    #[error("hidden_size {hidden} is not num_attention_heads {heads} x head_dim {head_dim}")]
    HeadDim {
        hidden: u64,
        heads: u64,
        head_dim: u64,
    },
    #[error(
        "num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads} \
         (grouped-query attention needs whole groups)"
    )]
    KvGroups { heads: u64, kv_heads: u64 },
    #[error(
        "{what} = {count} cannot be split evenly over {tp} ranks; choose a tensor-parallel size \
         that divides it"
    )]
    Indivisible {
        what: &'static str,
        count: u64,
        tp: u64,
    },
    #[error(
        "unsupported architecture (model_type {model_type:?}, architectures {architectures:?}): \
         paramx runs Qwen2 models (model_type \"qwen2\")"
    )]
    Architecture {
        model_type: Option<String>,
        architectures: Vec<String>,
    },
    #[error("hidden_act {0:?} is not supported: Qwen2 uses silu")]
    HiddenAct(String),
    #[error("head_dim {0} is odd: rotary position embeddings rotate pairs of dimensions")]
    OddHeadDim(u64),
    #[error("{field} = {value} is beyond any real model (at most {max}): the config is damaged")]
    Absurd {
        field: &'static str,
        value: u64,
        max: u64,
    },
}

/// Upper bounds far beyond any real transformer (the largest published models are ~20x below
/// each): they keep every byte count of the plan within u64, so a damaged config is refused
/// with its reason instead of overflowing into "fits".
const LIMITS: [(&str, u64); 7] = [
    ("hidden_size", 1 << 20),
    ("intermediate_size", 1 << 22),
    ("num_hidden_layers", 1 << 12),
    ("num_attention_heads", 1 << 12),
    ("num_key_value_heads", 1 << 12),
    ("vocab_size", 1 << 24),
    ("max_position_embeddings", 1 << 24),
];

/// Element type of weights, KV cache and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    Bf16,
    F16,
    F32,
}

impl DType {
    pub fn bytes(self) -> u64 {
        match self {
            DType::Bf16 | DType::F16 => 2,
            DType::F32 => 4,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::Bf16 => "bf16",
            DType::F16 => "f16",
            DType::F32 => "f32",
        })
    }
}

/// The fields of a Qwen2 `config.json` that memory depends on. Unknown fields are ignored, so a
/// config straight from the Hugging Face hub deserialises as is.
#[derive(Debug, Clone, Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    hidden_act: Option<String>,
    hidden_size: u64,
    intermediate_size: u64,
    num_hidden_layers: u64,
    num_attention_heads: u64,
    num_key_value_heads: Option<u64>,
    vocab_size: u64,
    head_dim: Option<u64>,
    #[serde(default)]
    tie_word_embeddings: bool,
    /// Absent: Qwen2's 32768.
    #[serde(default = "default_max_positions")]
    max_position_embeddings: u64,
    #[serde(default = "default_rope_theta")]
    rope_theta: f64,
    #[serde(default = "default_rms_norm_eps")]
    rms_norm_eps: f64,
    /// Qwen2 has biases on q/k/v and none on o_proj; the HF config does not say so, Llama-style
    /// configs do (`attention_bias`). Absent means the Qwen2 default, true.
    attention_bias: Option<bool>,
}

fn default_max_positions() -> u64 {
    32768
}
fn default_rope_theta() -> f64 {
    1_000_000.0
}
fn default_rms_norm_eps() -> f64 {
    1e-6
}

/// A parsed and validated `config.json`: the shape, which decides memory, and the two numbers
/// the engine needs beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub shape: ModelShape,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
}

impl ModelConfig {
    /// Parses and validates the text of a `config.json`; `name` labels the shape in tables.
    pub fn from_json(name: &str, json: &str) -> anyhow::Result<Self> {
        let raw: RawConfig = serde_json::from_str(json)?;
        let (rope_theta, rms_norm_eps) = (raw.rope_theta, raw.rms_norm_eps);
        Ok(Self {
            shape: ModelShape::from_raw(name, raw)?,
            rope_theta,
            rms_norm_eps,
        })
    }
}

/// A validated model shape: every count is non-zero and the head layout is consistent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelShape {
    /// A label for tables (the config's file stem, e.g. `qwen2.5-72b-instruct`).
    pub name: String,
    pub hidden: u64,
    pub intermediate: u64,
    pub layers: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub vocab: u64,
    pub tied_embeddings: bool,
    pub qkv_bias: bool,
    pub max_position_embeddings: u64,
}

impl ModelShape {
    /// Reads and validates a Hugging Face `config.json`.
    pub fn from_config_file(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read model config {}", path.display()))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".to_string());
        Self::from_config_json(&name, &text)
            .with_context(|| format!("bad model config {}", path.display()))
    }

    /// Parses and validates the text of a `config.json`.
    pub fn from_config_json(name: &str, json: &str) -> anyhow::Result<Self> {
        Ok(ModelConfig::from_json(name, json)?.shape)
    }

    fn from_raw(name: &str, raw: RawConfig) -> Result<Self, ShapeError> {
        // Qwen2 by its model_type, or by its class name when model_type is absent.
        let qwen2 = match raw.model_type.as_deref() {
            Some(t) => t == "qwen2",
            None => raw.architectures.iter().any(|a| a == "Qwen2ForCausalLM"),
        };
        if !qwen2 {
            return Err(ShapeError::Architecture {
                model_type: raw.model_type,
                architectures: raw.architectures,
            });
        }
        if let Some(act) = raw.hidden_act.filter(|a| a != "silu") {
            return Err(ShapeError::HiddenAct(act));
        }
        let kv_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        for (field, v) in [
            ("hidden_size", raw.hidden_size),
            ("intermediate_size", raw.intermediate_size),
            ("num_hidden_layers", raw.num_hidden_layers),
            ("num_attention_heads", raw.num_attention_heads),
            ("num_key_value_heads", kv_heads),
            ("vocab_size", raw.vocab_size),
            ("max_position_embeddings", raw.max_position_embeddings),
        ] {
            if v == 0 {
                return Err(ShapeError::Zero { field });
            }
            if let Some(&(_, max)) = LIMITS.iter().find(|(f, _)| *f == field) {
                if v > max {
                    return Err(ShapeError::Absurd {
                        field,
                        value: v,
                        max,
                    });
                }
            }
        }
        let head_dim = raw
            .head_dim
            .unwrap_or(raw.hidden_size / raw.num_attention_heads);
        if head_dim == 0 || head_dim * raw.num_attention_heads != raw.hidden_size {
            return Err(ShapeError::HeadDim {
                hidden: raw.hidden_size,
                heads: raw.num_attention_heads,
                head_dim,
            });
        }
        if !head_dim.is_multiple_of(2) {
            return Err(ShapeError::OddHeadDim(head_dim));
        }
        if !raw.num_attention_heads.is_multiple_of(kv_heads) {
            return Err(ShapeError::KvGroups {
                heads: raw.num_attention_heads,
                kv_heads,
            });
        }
        Ok(Self {
            name: name.to_string(),
            hidden: raw.hidden_size,
            intermediate: raw.intermediate_size,
            layers: raw.num_hidden_layers,
            heads: raw.num_attention_heads,
            kv_heads,
            head_dim,
            vocab: raw.vocab_size,
            tied_embeddings: raw.tie_word_embeddings,
            qkv_bias: raw.attention_bias.unwrap_or(true),
            max_position_embeddings: raw.max_position_embeddings,
        })
    }

    /// Parameters of the whole (unsplit) model.
    pub fn total_params(&self) -> u64 {
        RankShape::new(self, 1)
            .map(|r| r.params().total())
            .unwrap_or(0)
    }
}

/// What one rank holds when the model is split Megatron-style over `tp` ranks.
///
/// q/k/v, gate and up are split by output (column parallel), o_proj and down by input (row
/// parallel), embedding and lm_head by vocabulary row. Everything splits evenly: a rank holds
/// whole heads and whole KV groups, and equal parts of the MLP width and of the vocabulary (the
/// engine's logits and (max, argmax) gathers concatenate equal-sized parts). The engine checks
/// its split with this same function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RankShape {
    pub tp: u64,
    pub hidden: u64,
    pub layers: u64,
    pub head_dim: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub intermediate: u64,
    pub vocab: u64,
    pub tied_embeddings: bool,
    pub qkv_bias: bool,
}

impl RankShape {
    pub fn new(model: &ModelShape, tp: u64) -> Result<Self, ShapeError> {
        if tp == 0 {
            return Err(ShapeError::Zero {
                field: "tensor-parallel size",
            });
        }
        for (what, count) in [
            ("num_attention_heads", model.heads),
            ("num_key_value_heads", model.kv_heads),
            ("intermediate_size", model.intermediate),
            ("vocab_size", model.vocab),
        ] {
            if !count.is_multiple_of(tp) {
                return Err(ShapeError::Indivisible { what, count, tp });
            }
        }
        Ok(Self {
            tp,
            hidden: model.hidden,
            layers: model.layers,
            head_dim: model.head_dim,
            heads: model.heads / tp,
            kv_heads: model.kv_heads / tp,
            intermediate: model.intermediate / tp,
            vocab: model.vocab / tp,
            tied_embeddings: model.tied_embeddings,
            qkv_bias: model.qkv_bias,
        })
    }

    /// Width of this rank's query projection output (`heads x head_dim`).
    pub fn q_width(&self) -> u64 {
        self.heads * self.head_dim
    }

    /// Width of this rank's key (or value) projection output.
    pub fn kv_width(&self) -> u64 {
        self.kv_heads * self.head_dim
    }

    /// Parameter counts of this rank's shard, by group.
    pub fn params(&self) -> RankParams {
        let h = self.hidden;
        let bias = |n: u64| if self.qkv_bias { n } else { 0 };
        let attention = h * self.q_width()
            + bias(self.q_width())
            + 2 * (h * self.kv_width() + bias(self.kv_width()))
            + self.q_width() * h;
        let mlp = 3 * h * self.intermediate;
        // input_layernorm and post_attention_layernorm: replicated on every rank.
        let norms = 2 * h;
        RankParams {
            per_layer: attention + mlp + norms,
            layers: self.layers,
            embedding: self.vocab * h,
            lm_head: if self.tied_embeddings {
                0
            } else {
                self.vocab * h
            },
            final_norm: h,
        }
    }

    /// KV-cache elements per cached token on this rank: K and V, every layer.
    pub fn kv_elems_per_token(&self) -> u64 {
        2 * self.layers * self.kv_width()
    }
}

/// Parameter counts of one rank's shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RankParams {
    pub per_layer: u64,
    pub layers: u64,
    pub embedding: u64,
    /// 0 when the embedding is tied (the one matrix serves both).
    pub lm_head: u64,
    pub final_norm: u64,
}

impl RankParams {
    pub fn total(&self) -> u64 {
        self.per_layer * self.layers + self.embedding + self.lm_head + self.final_norm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q72: &str = include_str!("../../../configs/models/qwen2.5-72b-instruct.json");
    const Q05: &str = include_str!("../../../configs/models/qwen2.5-0.5b-instruct.json");

    fn q72() -> ModelShape {
        ModelShape::from_config_json("72b", Q72).unwrap()
    }

    #[test]
    fn qwen72b_full_counts_match_memory_md() {
        let m = q72();
        assert_eq!((m.heads, m.kv_heads, m.head_dim), (64, 8, 128));
        let full = RankShape::new(&m, 1).unwrap().params();
        // memory.md: 877,684,736 parameters per layer; 80 layers = 70.21 B.
        assert_eq!(full.per_layer, 877_684_736);
        assert_eq!(full.per_layer * 80, 70_214_778_880);
        // Embedding and lm_head: 152064 x 8192 = 1.246 B each.
        assert_eq!(full.embedding, 1_245_708_288);
        assert_eq!(full.lm_head, 1_245_708_288);
        // Total 72.71 B = 145.4 GB = 135.4 GiB in bf16.
        assert_eq!(m.total_params(), 72_706_203_648);
        assert_eq!(((m.total_params() * 2) as f64 / 1e9 * 10.0).round(), 1454.0);
        assert_eq!(
            ((m.total_params() * 2) as f64 / (1u64 << 30) as f64 * 10.0).round(),
            1354.0
        );
    }

    #[test]
    fn qwen72b_tp2_rank_shape_matches_memory_md() {
        let r = RankShape::new(&q72(), 2).unwrap();
        assert_eq!((r.heads, r.kv_heads), (32, 4));
        assert_eq!(r.intermediate, 14784);
        assert_eq!(r.vocab, 76032);
        let p = r.params();
        // 36.35 B parameters per rank = 72.7 GB = 67.7 GiB.
        assert_eq!((p.total() as f64 / 1e7).round(), 3635.0);
        assert_eq!(((p.total() * 2) as f64 / 1e8).round(), 727.0);
        assert_eq!(
            ((p.total() * 2) as f64 / (1u64 << 30) as f64 * 10.0).round(),
            677.0
        );
        // 160 KiB of KV cache per token per rank in bf16.
        assert_eq!(r.kv_elems_per_token() * 2, 160 * 1024);
    }

    #[test]
    fn tied_small_model_has_no_lm_head() {
        let m = ModelShape::from_config_json("05b", Q05).unwrap();
        assert!(m.tied_embeddings);
        let r = RankShape::new(&m, 2).unwrap();
        assert_eq!((r.heads, r.kv_heads), (7, 1));
        assert_eq!(r.params().lm_head, 0);
        // Qwen2.5-0.5B has 494 M parameters (HF model card: 0.49 B).
        assert_eq!((m.total_params() as f64 / 1e6).round(), 494.0);
    }

    #[test]
    fn uneven_splits_are_refused() {
        let m = q72();
        let err = RankShape::new(&m, 3).unwrap_err();
        assert_eq!(
            err,
            ShapeError::Indivisible {
                what: "num_attention_heads",
                count: 64,
                tp: 3
            }
        );
        assert!(err
            .to_string()
            .contains("cannot be split evenly over 3 ranks"));
        // KV heads (8) cap TP at 8.
        assert!(matches!(
            RankShape::new(&m, 16),
            Err(ShapeError::Indivisible {
                what: "num_key_value_heads",
                ..
            })
        ));
        let mut odd = m.clone();
        odd.vocab = 152065;
        assert_eq!(
            RankShape::new(&odd, 2).unwrap_err(),
            ShapeError::Indivisible {
                what: "vocab_size",
                count: 152065,
                tp: 2
            }
        );
        assert_eq!(RankShape::new(&odd, 1).unwrap().vocab, 152065);
    }

    #[test]
    fn bad_configs_are_rejected_with_the_reason() {
        let e = ModelShape::from_config_json("x", "{").unwrap_err();
        assert!(e.to_string().contains("EOF"), "{e}");
        let llama = Q72.replace("\"qwen2\"", "\"llama\"");
        let e = ModelShape::from_config_json("x", &llama).unwrap_err();
        assert!(e.to_string().contains("unsupported architecture"), "{e}");
        let zero = Q72.replace("\"num_hidden_layers\": 80", "\"num_hidden_layers\": 0");
        let e = ModelShape::from_config_json("x", &zero).unwrap_err();
        assert!(e.to_string().contains("num_hidden_layers is 0"), "{e}");
        let missing = Q72.replace("\"vocab_size\": 152064", "\"vocab\": 1");
        let e = ModelShape::from_config_json("x", &missing).unwrap_err();
        assert!(e.to_string().contains("vocab_size"), "{e}");
        // 2^62 layers would overflow every byte count into a plan that "fits".
        let huge = Q72.replace(
            "\"num_hidden_layers\": 80",
            "\"num_hidden_layers\": 4611686018427387904",
        );
        let e = ModelShape::from_config_json("x", &huge).unwrap_err();
        assert!(
            e.to_string()
                .contains("num_hidden_layers = 4611686018427387904 is beyond"),
            "{e}"
        );
    }
}
