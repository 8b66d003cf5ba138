//! A tiny random Qwen2 written by the tests themselves: an HF directory (config.json,
//! model.safetensors, tokenizer.json, tokenizer_config.json) and GGUF files with the same
//! weights, with a byte-level tokenizer of 256 byte tokens + one merge + Qwen's special tokens.
#![allow(dead_code)]

use candle_core::quantized::{gguf_file::Value, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const HIDDEN: usize = 64;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const INTER: usize = 128;
pub const LAYERS: usize = 2;
pub const MAX_POS: usize = 256;

pub const CHAT_TEMPLATE: &str = "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/// GPT-2's byte -> printable character map (the byte-level BPE alphabet).
pub fn byte_chars() -> Vec<char> {
    let mut printable: Vec<u32> = ('!' as u32..='~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars = vec!['\0'; 256];
    let mut n = 0;
    for b in 0..256u32 {
        if let Some(pos) = printable.iter().position(|&p| p == b) {
            chars[b as usize] = char::from_u32(b).unwrap();
            printable.remove(pos);
        } else {
            chars[b as usize] = char::from_u32(256 + n).unwrap();
            n += 1;
        }
    }
    chars
}

/// Vocabulary: 256 byte tokens, "Ġt", then the specials. Returns (tokens, token types).
pub fn vocab() -> (Vec<String>, Vec<i32>) {
    let mut tokens: Vec<String> = byte_chars().into_iter().map(String::from).collect();
    let mut types = vec![1; 256];
    tokens.push("Ġt".into());
    types.push(1);
    for s in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
        tokens.push(s.into());
        types.push(3);
    }
    (tokens, types)
}

pub fn vocab_size() -> usize {
    vocab().0.len()
}

pub struct TinyModel {
    pub dir: tempfile::TempDir,
    pub tensors: HashMap<String, Tensor>,
}

impl TinyModel {
    pub fn hf_dir(&self) -> PathBuf {
        self.dir.path().join("hf")
    }
    pub fn gguf_path(&self) -> PathBuf {
        self.dir.path().join("tiny-q8.gguf")
    }
    pub fn gguf_mixed_path(&self) -> PathBuf {
        self.dir.path().join("tiny-mixed.gguf")
    }
}

pub fn config_json(tied: bool) -> String {
    serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "vocab_size": vocab_size(), "hidden_size": HIDDEN, "intermediate_size": INTER,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
        "max_position_embeddings": MAX_POS, "sliding_window": 4096, "max_window_layers": LAYERS,
        "tie_word_embeddings": tied, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
        "use_sliding_window": false, "hidden_act": "silu"
    })
    .to_string()
}

/// A seeded normal sampler (the crate's SplitMix64 and Box-Muller), so the tiny model is the
/// same model in every process and on every machine. candle's CPU `randn` cannot be seeded:
/// with it, a test comparing two quantized engines met a different model on each run, and a
/// rare one put an activation on a Q8_0 rounding edge that one engine rounds up and the other
/// down (CI at stop 29: Q8_0 logits 6.3e-3 of their spread apart).
pub struct Normal(paramx::rng::SplitMix64);

impl Normal {
    pub fn new(seed: u64) -> Self {
        Normal(paramx::rng::SplitMix64::new(seed))
    }

    pub fn sample(&mut self) -> f64 {
        let (u, v) = (self.0.next_f64_open0(), self.0.next_f64_open0());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// A tensor of `shape` with entries drawn from N(mean, std^2).
    pub fn tensor(&mut self, shape: &[usize], mean: f64, std: f64) -> Tensor {
        let n = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| (mean + std * self.sample()) as f32)
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }
}

/// The seed of the tiny model's weights. Any value gives a valid model; one fixed value makes
/// every run of the tests meet the same one. `PARAMX_TEST_SEED` overrides it, to try the tests
/// on other draws.
pub const SEED: u64 = 20261207;

fn seed() -> u64 {
    std::env::var("PARAMX_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED)
}

/// Seeded random weights (see [`Normal`]); the tests compare engines on the *same* weights.
pub fn build() -> TinyModel {
    let v = vocab_size();
    let hd = HIDDEN / HEADS;
    let mut t = HashMap::new();
    let mut rng = Normal::new(seed());
    let mut put = |name: &str, shape: &[usize], std: f64| {
        t.insert(name.to_string(), rng.tensor(shape, 0.0, std));
    };
    put("model.embed_tokens.weight", &[v, HIDDEN], 1.0);
    put("lm_head.weight", &[v, HIDDEN], 0.2);
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}");
        put(
            &format!("{p}.self_attn.q_proj.weight"),
            &[HEADS * hd, HIDDEN],
            0.15,
        );
        put(&format!("{p}.self_attn.q_proj.bias"), &[HEADS * hd], 0.1);
        put(
            &format!("{p}.self_attn.k_proj.weight"),
            &[KV_HEADS * hd, HIDDEN],
            0.15,
        );
        put(&format!("{p}.self_attn.k_proj.bias"), &[KV_HEADS * hd], 0.1);
        put(
            &format!("{p}.self_attn.v_proj.weight"),
            &[KV_HEADS * hd, HIDDEN],
            0.15,
        );
        put(&format!("{p}.self_attn.v_proj.bias"), &[KV_HEADS * hd], 0.1);
        put(
            &format!("{p}.self_attn.o_proj.weight"),
            &[HIDDEN, HEADS * hd],
            0.15,
        );
        put(&format!("{p}.mlp.gate_proj.weight"), &[INTER, HIDDEN], 0.15);
        put(&format!("{p}.mlp.up_proj.weight"), &[INTER, HIDDEN], 0.15);
        put(&format!("{p}.mlp.down_proj.weight"), &[HIDDEN, INTER], 0.1);
    }
    // Norm weights around 1.
    for i in 0..LAYERS {
        for n in ["input_layernorm", "post_attention_layernorm"] {
            let w = rng.tensor(&[HIDDEN], 1.0, 0.1);
            t.insert(format!("model.layers.{i}.{n}.weight"), w);
        }
    }
    t.insert("model.norm.weight".into(), rng.tensor(&[HIDDEN], 1.0, 0.1));

    let dir = tempfile::tempdir().unwrap();
    let tiny = TinyModel { dir, tensors: t };
    write_hf(&tiny);
    write_gguf(&tiny, &tiny.gguf_path(), |_| GgmlDType::Q8_0);
    // q/k/gate in Q5_0 (converted to Q8_0 by our loader), the rest Q8_0, as in the real 0.5B.
    write_gguf(&tiny, &tiny.gguf_mixed_path(), |name| {
        if name.contains("attn_q.") || name.contains("attn_k.") || name.contains("ffn_gate") {
            GgmlDType::Q5_0
        } else {
            GgmlDType::Q8_0
        }
    });
    let src = paramx::model::load::gguf::GgufSource::open(&tiny.gguf_path()).unwrap();
    let tok = paramx::model::tokenizer::Tokenizer::from_gguf(src.content()).unwrap();
    write_tokenizer_json(&tiny, &tok);
    tiny
}

fn write_hf(tiny: &TinyModel) {
    let dir = tiny.hf_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), config_json(false)).unwrap();
    candle_core::safetensors::save(&tiny.tensors, dir.join("model.safetensors")).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::json!({"eos_token": "<|im_end|>", "chat_template": CHAT_TEMPLATE}).to_string(),
    )
    .unwrap();
}

/// Writes the tokenizer.json of the tiny model (built from the GGUF metadata by our code).
pub fn write_tokenizer_json(tiny: &TinyModel, tok: &paramx::model::tokenizer::Tokenizer) {
    tok.inner()
        .save(tiny.hf_dir().join("tokenizer.json"), false)
        .unwrap();
}

fn write_gguf(tiny: &TinyModel, path: &Path, matrix_type: impl Fn(&str) -> GgmlDType) {
    let (tokens, types) = vocab();
    let md: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("qwen2".into())),
        ("qwen2.block_count", Value::U32(LAYERS as u32)),
        ("qwen2.context_length", Value::U32(MAX_POS as u32)),
        ("qwen2.embedding_length", Value::U32(HIDDEN as u32)),
        ("qwen2.feed_forward_length", Value::U32(INTER as u32)),
        ("qwen2.attention.head_count", Value::U32(HEADS as u32)),
        ("qwen2.attention.head_count_kv", Value::U32(KV_HEADS as u32)),
        ("qwen2.rope.freq_base", Value::F32(1e6)),
        ("qwen2.attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("qwen2".into())),
        (
            "tokenizer.ggml.tokens",
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(types.into_iter().map(Value::I32).collect()),
        ),
        (
            "tokenizer.ggml.merges",
            Value::Array(vec![Value::String("Ġ t".into())]),
        ),
        ("tokenizer.ggml.eos_token_id", Value::U32(259)),
        ("tokenizer.ggml.bos_token_id", Value::U32(257)),
        (
            "tokenizer.chat_template",
            Value::String(CHAT_TEMPLATE.into()),
        ),
    ];
    let mut qs: Vec<(String, QTensor)> = Vec::new();
    let mut names: Vec<&String> = tiny.tensors.keys().collect();
    names.sort();
    for name in names {
        let t = &tiny.tensors[name];
        let g = paramx::model::load::gguf::gguf_name(name)
            .unwrap_or_else(|| panic!("no GGUF name for tensor {name}"));
        let dtype = if t.rank() == 1 {
            GgmlDType::F32
        } else {
            matrix_type(&g)
        };
        qs.push((g, QTensor::quantize(t, dtype).unwrap()));
    }
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = qs.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    candle_core::quantized::gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}

/// The largest |x| of a tensor, in f32.
pub fn max_abs(t: &Tensor) -> f32 {
    t.to_dtype(DType::F32)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(&(a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap()).unwrap())
}
