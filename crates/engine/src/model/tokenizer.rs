//! Text <-> token ids, for HF directories (`tokenizer.json`) and GGUF files (vocabulary, merges
//! and special tokens in the metadata), plus the model's stop tokens and chat template.
//!
//! From GGUF we rebuild exactly the pipeline of Qwen2's `tokenizer.json`: NFC normalisation,
//! the Qwen2 pre-tokenizer regex, byte-level BPE, byte-level decoding; control tokens
//! (`<|im_start|>` ...) become special added tokens so that they are matched whole in prompts
//! and skipped when decoding.

use super::chat::ChatTemplate;
use super::config::md_str;
use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
use std::collections::BTreeSet;
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

/// Qwen2's pre-tokenizer pattern (from its `tokenizer.json`; llama.cpp's `qwen2` pre-type).
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF token types (llama.cpp's `llama_token_type`).
const TOKEN_CONTROL: i32 = 3;
const TOKEN_USER_DEFINED: i32 = 4;

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    stop_tokens: Vec<u32>,
    chat: Option<ChatTemplate>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab", &self.inner.get_vocab_size(true))
            .field("stop_tokens", &self.stop_tokens)
            .finish()
    }
}

fn tk_err(e: tokenizers::Error) -> anyhow::Error {
    anyhow::anyhow!("tokenizer: {e}")
}

impl Tokenizer {
    /// Builds the tokenizer from GGUF metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`).
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        let model = md_str(ct, "tokenizer.ggml.model")?;
        if model != "gpt2" {
            bail!("unsupported GGUF tokenizer model {model:?} (expected byte-level BPE, \"gpt2\")");
        }
        if let Ok(pre) = md_str(ct, "tokenizer.ggml.pre") {
            if pre != "qwen2" {
                bail!("unsupported GGUF pre-tokenizer {pre:?} (expected \"qwen2\")");
            }
        }
        let arr = |k: &str| -> Result<&Vec<gguf_file::Value>> {
            ct.metadata
                .get(k)
                .with_context(|| format!("GGUF metadata lacks {k}"))?
                .to_vec()
                .with_context(|| format!("GGUF metadata {k} is not an array"))
        };
        let tokens = arr("tokenizer.ggml.tokens")?
            .iter()
            .map(|v| v.to_string().cloned())
            .collect::<candle_core::Result<Vec<String>>>()?;
        let types: Vec<i32> = match ct.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()?
                .iter()
                .map(|t| t.to_i32())
                .collect::<candle_core::Result<_>>()?,
            None => vec![1; tokens.len()],
        };
        let merges = arr("tokenizer.ggml.merges")?
            .iter()
            .map(|v| {
                let s = v.to_string()?;
                s.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| candle_core::Error::Msg(format!("bad merge {s:?}")))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(tk_err)?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        let split = Split::new(
            SplitPattern::Regex(QWEN2_PATTERN.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(tk_err)?;
        inner
            .with_normalizer(Some(NFC))
            .map_err(tk_err)?
            .with_pre_tokenizer(Some(Sequence::new(vec![
                split.into(),
                ByteLevel::new(false, false, false).into(),
            ])))
            .with_decoder(Some(ByteLevelDecoder::default()));
        let added = |ty: i32, special: bool| -> Vec<AddedToken> {
            tokens
                .iter()
                .zip(&types)
                .filter(|(_, &t)| t == ty)
                .map(|(s, _)| AddedToken::from(s.clone(), special).normalized(false))
                .collect()
        };
        inner
            .add_special_tokens(added(TOKEN_CONTROL, true))
            .map_err(tk_err)?;
        inner
            .add_tokens(added(TOKEN_USER_DEFINED, false))
            .map_err(tk_err)?;

        let id = |k: &str| ct.metadata.get(k).and_then(|v| v.to_u32().ok());
        let mut stops = BTreeSet::new();
        stops.extend(id("tokenizer.ggml.eos_token_id"));
        stops.extend(id("tokenizer.ggml.eot_token_id"));
        for name in ["<|im_end|>", "<|endoftext|>"] {
            stops.extend(inner.token_to_id(name));
        }
        let tok_str = |k: &str| id(k).and_then(|i| tokens.get(i as usize).cloned());
        let chat = match md_str(ct, "tokenizer.chat_template") {
            Ok(t) => Some(ChatTemplate::new(
                t,
                tok_str("tokenizer.ggml.bos_token_id"),
                tok_str("tokenizer.ggml.eos_token_id"),
            )?),
            Err(_) => None,
        };
        Ok(Self {
            inner,
            stop_tokens: stops.into_iter().collect(),
            chat,
        })
    }

    /// Reads `tokenizer.json`, `tokenizer_config.json` (chat template, eos) and
    /// `generation_config.json` (stop ids) from an HF model directory.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let read_json = |name: &str| -> Result<Option<serde_json::Value>> {
            let p = dir.join(name);
            if !p.exists() {
                return Ok(None);
            }
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            Ok(Some(
                serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?,
            ))
        };
        let tcfg = read_json("tokenizer_config.json")?;
        let gcfg = read_json("generation_config.json")?;
        let token_field = |v: Option<&serde_json::Value>| -> Option<String> {
            match v? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
                _ => None,
            }
        };
        let eos = token_field(tcfg.as_ref().and_then(|c| c.get("eos_token")));
        let bos = token_field(tcfg.as_ref().and_then(|c| c.get("bos_token")));
        let mut stops = BTreeSet::new();
        if let Some(e) = &eos {
            stops.extend(inner.token_to_id(e));
        }
        match gcfg.as_ref().and_then(|g| g.get("eos_token_id")) {
            Some(serde_json::Value::Number(n)) => stops.extend(n.as_u64().map(|x| x as u32)),
            Some(serde_json::Value::Array(a)) => {
                stops.extend(a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32))
            }
            _ => {}
        }
        for name in ["<|im_end|>", "<|endoftext|>"] {
            stops.extend(inner.token_to_id(name));
        }
        let chat = match tcfg
            .as_ref()
            .and_then(|c| c.get("chat_template"))
            .and_then(|t| t.as_str())
        {
            Some(t) => Some(ChatTemplate::new(t, bos, eos)?),
            None => None,
        };
        Ok(Self {
            inner,
            stop_tokens: stops.into_iter().collect(),
            chat,
        })
    }

    /// A stand-in vocabulary of `vocab` tokens named `t0`, `t1`, ... with no stop tokens and
    /// no chat template: what a model with random weights is run with by the benchmarks, where
    /// the ids are the workload and their text means nothing.
    pub fn placeholder(vocab: usize) -> Result<Self> {
        let words: std::collections::HashMap<String, u32> =
            (0..vocab as u32).map(|i| (format!("t{i}"), i)).collect();
        let model = tokenizers::models::wordlevel::WordLevel::builder()
            .vocab(words.into_iter().collect())
            .unk_token("t0".into())
            .build()
            .map_err(|e| anyhow::anyhow!("placeholder tokenizer: {e}"))?;
        Ok(Self {
            inner: tokenizers::Tokenizer::new(model),
            stop_tokens: Vec::new(),
            chat: None,
        })
    }

    /// Token ids of `text`. Special tokens written in the text (`<|im_start|>`) are recognised;
    /// nothing is prepended (Qwen uses no BOS).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode(text, false)
            .map_err(tk_err)?
            .get_ids()
            .to_vec())
    }

    /// Text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(tk_err)
    }

    /// Tokens that end a generation (`<|im_end|>`, `<|endoftext|>`, the model's eos).
    pub fn stop_tokens(&self) -> &[u32] {
        &self.stop_tokens
    }

    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat.as_ref()
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The underlying HF tokenizer (e.g. for a grammar engine that needs the vocabulary).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}
