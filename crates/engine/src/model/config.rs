//! The shape of a Qwen2 model, read from an HF `config.json` or from GGUF metadata.
//!
//! Everything downstream (weights, KV cache, planning) is sized from this one struct, so the
//! invariants (heads divide the hidden size, query heads are a multiple of KV heads) are checked
//! here once, at construction.

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
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

    /// Parses the text of an HF `config.json`, through the plan's parser
    /// ([`paramx_plan::ModelConfig`]): one reading of the file, so the plan and the engine agree
    /// on every model they accept.
    pub fn from_hf_str(text: &str) -> Result<Self> {
        let c =
            paramx_plan::ModelConfig::from_json("model", text).context("parsing config.json")?;
        let whole = paramx_plan::RankShape::new(&c.shape, 1)?;
        Self::from_rank_shape(
            &whole,
            c.shape.max_position_embeddings,
            c.rope_theta,
            c.rms_norm_eps,
        )
        .validate()
    }

    /// The engine config of what one rank holds (`rank`'s heads, MLP width and vocabulary; the
    /// whole model's at tp = 1). The plan bounds every count far below `usize::MAX`.
    pub fn from_rank_shape(
        rank: &paramx_plan::RankShape,
        max_position_embeddings: u64,
        rope_theta: f64,
        rms_norm_eps: f64,
    ) -> Self {
        Self {
            vocab_size: rank.vocab as usize,
            hidden_size: rank.hidden as usize,
            intermediate_size: rank.intermediate as usize,
            num_hidden_layers: rank.layers as usize,
            num_attention_heads: rank.heads as usize,
            num_key_value_heads: rank.kv_heads as usize,
            head_dim: rank.head_dim as usize,
            max_position_embeddings: max_position_embeddings as usize,
            rope_theta,
            rms_norm_eps,
            tie_word_embeddings: rank.tied_embeddings,
        }
    }

    /// This model's shape as the plan counts it (Qwen2: biases on q/k/v).
    pub fn shape(&self) -> paramx_plan::ModelShape {
        paramx_plan::ModelShape {
            name: "model".into(),
            hidden: self.hidden_size as u64,
            intermediate: self.intermediate_size as u64,
            layers: self.num_hidden_layers as u64,
            heads: self.num_attention_heads as u64,
            kv_heads: self.num_key_value_heads as u64,
            head_dim: self.head_dim as u64,
            vocab: self.vocab_size as u64,
            tied_embeddings: self.tie_word_embeddings,
            qkv_bias: true,
            max_position_embeddings: self.max_position_embeddings as u64,
        }
    }

    /// What one of `world` tensor-parallel ranks holds, or why the model does not split so:
    /// the plan's own rule ([`paramx_plan::RankShape::new`]).
    pub fn rank_shape(&self, world: usize) -> Result<paramx_plan::RankShape> {
        Ok(paramx_plan::RankShape::new(&self.shape(), world as u64)?)
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

    /// The plan must refuse every job the engine would refuse at load, for the same
    /// `config.json`: else a GPU job is approved, queued, and dies after loading.
    #[test]
    fn the_plan_refuses_whatever_the_engine_refuses() {
        let mutations: [(&str, &str); 10] = [
            ("", ""),
            ("\"vocab_size\":151936", "\"vocab_size\":151937"),
            ("\"intermediate_size\":4864", "\"intermediate_size\":4865"),
            ("\"num_key_value_heads\":2", "\"num_key_value_heads\":3"),
            ("\"num_hidden_layers\":24", "\"num_hidden_layers\":0"),
            ("\"hidden_act\":\"silu\"", "\"hidden_act\":\"gelu\""),
            ("\"model_type\":\"qwen2\",", ""),
            ("\"model_type\":\"qwen2\"", "\"model_type\":\"llama\""),
            // 14 heads of 63: RoPE needs an even head size.
            ("\"hidden_size\":896", "\"hidden_size\":882"),
            (",\"max_position_embeddings\":32768", ""),
        ];
        let mut refused = 0;
        for (from, to) in mutations {
            let text = QWEN05.replacen(from, to, 1);
            for tp in [1usize, 2, 3, 4, 7, 8] {
                let engine = Qwen2Config::from_hf_str(&text).and_then(|c| c.rank_shape(tp));
                let plan = paramx_plan::ModelShape::from_config_json("m", &text)
                    .and_then(|s| Ok(paramx_plan::RankShape::new(&s, tp as u64)?));
                assert_eq!(
                    engine.is_ok(),
                    plan.is_ok(),
                    "{from:?} -> {to:?}, tp {tp}: engine {:?}, plan {:?}",
                    engine.as_ref().err(),
                    plan.as_ref().err()
                );
                refused += usize::from(engine.is_err());
            }
        }
        // Not a vacuous agreement: most of these cases are refusals.
        assert!(refused > 30, "{refused}");
    }

    #[test]
    fn rejects_bad_head_counts() {
        let text = QWEN05.replace("\"num_key_value_heads\":2", "\"num_key_value_heads\":3");
        assert!(Qwen2Config::from_hf_str(&text).is_err());
    }
}
