//! The shape of a Qwen2 model, read from an HF `config.json` or from GGUF metadata.
//!
//! Everything downstream (weights, KV cache, planning) is sized from this one struct, so the
//! invariants (heads divide the hidden size, query heads are a multiple of KV heads) are checked
//! here once, at construction.

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
use serde::Deserialize;
use std::path::Path;

/// Hyper-parameters of a Qwen2 decoder (Qwen2 / Qwen2.5 / Qwen2.5-Coder all share them).
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen2Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub tie_word_embeddings: bool,
}

/// The subset of HF `config.json` we read; unknown keys are ignored.
#[derive(Deserialize)]
struct HfConfig {
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    hidden_act: Option<String>,
}

fn default_max_pos() -> usize {
    32768
}
fn default_theta() -> f64 {
    1_000_000.0
}
fn default_eps() -> f64 {
    1e-6
}

impl Qwen2Config {
    /// Checks the invariants the model code relies on.
    pub fn validate(self) -> Result<Self> {
        let c = &self;
        if c.num_attention_heads == 0 || c.num_key_value_heads == 0 || c.num_hidden_layers == 0 {
            bail!("config has zero heads or layers: {c:?}");
        }
        if !c.num_attention_heads.is_multiple_of(c.num_key_value_heads) {
            bail!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                c.num_attention_heads,
                c.num_key_value_heads
            );
        }
        if c.head_dim == 0 || !c.head_dim.is_multiple_of(2) {
            bail!(
                "head_dim {} must be even and non-zero (RoPE rotates pairs)",
                c.head_dim
            );
        }
        Ok(self)
    }

    /// Reads an HF `config.json`, refusing architectures other than Qwen2.
    pub fn from_hf_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading model config {}", path.display()))?;
        Self::from_hf_str(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses the text of an HF `config.json`.
    pub fn from_hf_str(text: &str) -> Result<Self> {
        let hf: HfConfig = serde_json::from_str(text).context("parsing config.json")?;
        let is_qwen2 = hf.model_type.as_deref() == Some("qwen2")
            || hf.architectures.iter().any(|a| a == "Qwen2ForCausalLM");
        if !is_qwen2 {
            bail!(
                "unsupported architecture (model_type {:?}, architectures {:?}): only Qwen2 is supported",
                hf.model_type,
                hf.architectures
            );
        }
        if let Some(act) = hf.hidden_act.as_deref() {
            if act != "silu" {
                bail!("unsupported hidden_act {act:?}: Qwen2 uses silu");
            }
        }
        let num_key_value_heads = hf.num_key_value_heads.unwrap_or(hf.num_attention_heads);
        if hf.num_attention_heads == 0 || !hf.hidden_size.is_multiple_of(hf.num_attention_heads) {
            bail!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                hf.hidden_size,
                hf.num_attention_heads
            );
        }
        Self {
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: hf.num_attention_heads,
            num_key_value_heads,
            head_dim: hf.hidden_size / hf.num_attention_heads,
            max_position_embeddings: hf.max_position_embeddings,
            rope_theta: hf.rope_theta,
            rms_norm_eps: hf.rms_norm_eps,
            tie_word_embeddings: hf.tie_word_embeddings,
        }
        .validate()
    }

    /// Reads the `qwen2.*` metadata of a GGUF file. `vocab_size` comes from the embedding
    /// tensor's shape (the metadata has no reliable vocabulary size key).
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        let arch = md_str(ct, "general.architecture")?;
        if arch != "qwen2" {
            bail!("unsupported architecture {arch:?} in GGUF metadata: only qwen2 is supported");
        }
        let u = |k: &str| -> Result<usize> {
            let v = ct
                .metadata
                .get(k)
                .with_context(|| format!("GGUF metadata lacks {k}"))?;
            Ok(v.to_u32().or_else(|_| v.to_u64().map(|x| x as u32))? as usize)
        };
        let f = |k: &str| -> Option<f64> {
            ct.metadata
                .get(k)
                .and_then(|v| v.to_f32().map(f64::from).or_else(|_| v.to_f64()).ok())
        };
        let hidden = u("qwen2.embedding_length")?;
        let heads = u("qwen2.attention.head_count")?;
        let kv_heads = u("qwen2.attention.head_count_kv")?;
        let emb = ct
            .tensor_infos
            .get("token_embd.weight")
            .context("GGUF has no token_embd.weight tensor")?;
        let dims = emb.shape.dims();
        // candle reports GGUF shapes outermost first, as HF does: (vocab, hidden).
        let vocab = *dims
            .first()
            .context("token_embd.weight has no dimensions")?;
        if heads == 0 || hidden % heads != 0 {
            bail!("embedding_length {hidden} is not a multiple of head_count {heads}");
        }
        Self {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: u("qwen2.feed_forward_length")?,
            num_hidden_layers: u("qwen2.block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim: hidden / heads,
            max_position_embeddings: u("qwen2.context_length").unwrap_or(32768),
            rope_theta: f("qwen2.rope.freq_base").unwrap_or(1_000_000.0),
            rms_norm_eps: f("qwen2.attention.layer_norm_rms_epsilon").unwrap_or(1e-6),
            tie_word_embeddings: !ct.tensor_infos.contains_key("output.weight"),
        }
        .validate()
    }

    /// Query heads that share one KV head.
    pub fn group_size(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }
}

pub(crate) fn md_str<'a>(ct: &'a gguf_file::Content, key: &str) -> Result<&'a str> {
    let v = ct
        .metadata
        .get(key)
        .with_context(|| format!("GGUF metadata lacks {key}"))?;
    Ok(v.to_string()
        .with_context(|| format!("GGUF metadata {key} is not a string"))?
        .as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const QWEN05: &str = r#"{"architectures":["Qwen2ForCausalLM"],"hidden_size":896,
      "intermediate_size":4864,"max_position_embeddings":32768,"model_type":"qwen2",
      "num_attention_heads":14,"num_hidden_layers":24,"num_key_value_heads":2,
      "rms_norm_eps":1e-06,"rope_theta":1000000.0,"tie_word_embeddings":true,"vocab_size":151936,
      "hidden_act":"silu","torch_dtype":"bfloat16"}"#;

    #[test]
    fn parses_qwen_config() {
        let c = Qwen2Config::from_hf_str(QWEN05).unwrap();
        assert_eq!(c.head_dim, 64);
        assert_eq!(c.group_size(), 7);
        assert!(c.tie_word_embeddings);
    }

    #[test]
    fn rejects_other_architectures() {
        let text = QWEN05
            .replace("qwen2", "llama")
            .replace("Qwen2ForCausalLM", "LlamaForCausalLM");
        let err = Qwen2Config::from_hf_str(&text).unwrap_err();
        assert!(
            format!("{err:#}").contains("unsupported architecture"),
            "{err:#}"
        );
    }

    #[test]
    fn rejects_bad_head_counts() {
        let text = QWEN05.replace("\"num_key_value_heads\":2", "\"num_key_value_heads\":3");
        assert!(Qwen2Config::from_hf_str(&text).is_err());
    }
}
