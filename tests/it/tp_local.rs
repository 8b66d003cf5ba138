//! Tensor parallelism on the CPU with the production in-process communicator
//! (`tp::local::LocalGroup`): TP=2 must give the same greedy tokens as TP=1 (SingleRank) over a
//! whole generation, and logits within a stated tolerance, on
//! - a tiny random Qwen2 (f32 safetensors written by the test; each rank reads only its slices),
//! - the real Qwen2.5-Coder-0.5B (GGUF Q4_K_M) when present, dequantized to f32 before
//!   sharding: its Q4_K blocks of 256 columns cannot be cut for the row-parallel o_proj
//!   (7 heads x 64 = 448 input columns per rank) or down_proj (2432 per rank), so the quantized
//!   weights themselves are not sharded (the loader refuses such a slice with a clear error,
//!   checked below).
//!
//! Tolerances: the only difference between TP=1 and TP=2 is the order of summation in the
//! row-parallel products (two partial sums added by the all-reduce) and in the embedding sum,
//! so f32 logits agree to rounding: tiny model max |diff| <= 1e-4 (logits O(1));
//! 0.5B max |diff| <= 1e-4 x max |logit| (24 layers of f32 rounding; measured 3.9e-5 on
//! logits up to 21.7, i.e. 1.8e-6 relative).

use crate::common;

use candle_core::{DType, Device, Tensor};
use common::*;
use paramx::generate::{GenerateParams, Generator};
use paramx::model::linear::Weight;
use paramx::model::load::gguf::GgufSource;
use paramx::model::load::safetensors::SafetensorsSource;
use paramx::model::load::{EmbeddingTable, Slice, WeightSource};
use paramx::model::tokenizer::Tokenizer;
use paramx::model::{ModelOptions, Qwen2, Qwen2Config};
use paramx::tp::local::LocalGroup;
use paramx::tp::{Communicator, SingleRank};
use std::sync::Arc;

/// What one rank produced: full-vocabulary logits of a prompt, greedy tokens from the
/// generator (gathered logits), and greedy tokens from `Qwen2::greedy` (per-rank (max, argmax)
/// exchanged, logits never gathered).
struct Outcome {
    logits: Tensor,
    generated: Vec<Vec<u32>>,
    greedy: Vec<u32>,
}

fn run_rank(model: &Qwen2, tok: &Tokenizer, prompts: &[Vec<u32>], new: usize) -> Outcome {
    let mut cache = model.new_cache(vec![0], prompts[0].len()).unwrap();
    let x = Tensor::new(prompts[0].as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let h = model.forward(&x, &mut cache).unwrap();
    let logits = model.logits(&h).unwrap().squeeze(0).unwrap();

    let params = GenerateParams {
        max_new_tokens: new,
        stop_tokens: Some(vec![]),
        prefill_chunk: 5,
        ..Default::default()
    };
    let out = Generator::new(model, tok)
        .generate(prompts, &params, None)
        .unwrap();
    let generated = out.sequences.iter().map(|s| s.tokens.clone()).collect();

    // Greedy decoding through the cross-rank argmax.
    let p = &prompts[0];
    let mut cache = model.new_cache(vec![0], p.len() + new).unwrap();
    let mut x = Tensor::new(p.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mut greedy = Vec::new();
    for _ in 0..new {
        let h = model.forward(&x, &mut cache).unwrap();
        let next = model.greedy(&Qwen2::last_hidden(&h).unwrap()).unwrap();
        greedy.push(next[0]);
        x = Tensor::new(&[[next[0]]], &Device::Cpu).unwrap();
    }
    Outcome {
        logits,
        generated,
        greedy,
    }
}

/// Loads and runs the model on `world` ranks (threads), each with its own communicator;
/// returns every rank's outcome in rank order.
fn on_ranks<L>(world: usize, load: L, prompts: &[Vec<u32>], new: usize) -> Vec<Outcome>
where
    L: Fn(Arc<dyn Communicator>) -> (Qwen2, Tokenizer) + Sync,
{
    let comms: Vec<Arc<dyn Communicator>> = if world == 1 {
        vec![Arc::new(SingleRank)]
    } else {
        LocalGroup::new(world)
            .into_iter()
            .map(|c| Arc::new(c) as Arc<dyn Communicator>)
            .collect()
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = comms
            .into_iter()
            .map(|comm| {
                let load = &load;
                s.spawn(move || {
                    let (model, tok) = load(comm);
                    run_rank(&model, &tok, prompts, new)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn opts(comm: Arc<dyn Communicator>) -> ModelOptions {
    ModelOptions {
        comm,
        attention_block: 4,
        ..ModelOptions::cpu()
    }
}

/// Checks TP=2 against TP=1; returns (max |logit diff|, max |logit|).
fn compare(one: &[Outcome], two: &[Outcome]) -> (f32, f32) {
    let base = &one[0];
    for (r, o) in two.iter().enumerate() {
        assert_eq!(
            o.generated, base.generated,
            "rank {r}: generated tokens differ"
        );
        assert_eq!(o.greedy, base.greedy, "rank {r}: cross-rank greedy differs");
        // Every rank of the group sees bit-identical gathered logits.
        assert_eq!(max_abs_diff(&o.logits, &two[0].logits), 0.0, "rank {r}");
    }
    // The cross-rank greedy path and the gathered-logits path pick the same tokens.
    assert_eq!(base.greedy, base.generated[0]);
    let scale = max_abs(&base.logits);
    (max_abs_diff(&base.logits, &two[0].logits), scale)
}

#[test]
fn tiny_model_tp2_equals_tp1() {
    let tiny = build();
    let dir = tiny.hf_dir();
    let load = |comm: Arc<dyn Communicator>| {
        let cfg = Qwen2Config::from_hf_json(&dir.join("config.json")).unwrap();
        let src = SafetensorsSource::open(&dir).unwrap();
        let model = Qwen2::load(&cfg, &src, &opts(comm)).unwrap();
        (model, Tokenizer::from_hf_dir(&dir).unwrap())
    };
    let prompts = vec![
        (0..13u32).map(|i| (i * 37 + 5) % 256).collect::<Vec<_>>(),
        vec![100u32, 3, 77],
    ];
    let one = on_ranks(1, load, &prompts, 16);
    let two = on_ranks(2, load, &prompts, 16);
    let (diff, scale) = compare(&one, &two);
    eprintln!("tiny TP=2 vs TP=1: max |logit diff| {diff:e} (max |logit| {scale})");
    assert!(diff <= 1e-4, "{diff}");
    assert_eq!(one[0].generated[0].len(), 16);
}

/// A GGUF source whose linear weights and embedding are handed out dequantized (dense f32), so
/// that any slice can be cut: how a Q4_K file runs tensor-parallel in this test.
struct Dequantized(GgufSource);

impl WeightSource for Dequantized {
    fn describe(&self) -> String {
        format!("{} (dequantized)", self.0.describe())
    }
    fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }
    fn tensor(&self, n: &str, s: Option<Slice>, dt: DType, d: &Device) -> anyhow::Result<Tensor> {
        self.0.tensor(n, s, dt, d)
    }
    fn linear_weight(
        &self,
        n: &str,
        s: Option<Slice>,
        dt: DType,
        d: &Device,
    ) -> anyhow::Result<Weight> {
        Ok(Weight::Dense(self.0.tensor(n, s, dt, d)?))
    }
    fn embedding(
        &self,
        n: &str,
        s: Option<Slice>,
        dt: DType,
        d: &Device,
    ) -> anyhow::Result<EmbeddingTable> {
        Ok(EmbeddingTable::Dense(self.0.tensor(n, s, dt, d)?))
    }
}

fn real_0_5b() -> Option<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        std::env::var("PARAMX_TEST_MODEL").ok().map(Into::into),
        Some(root.join("models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.exists())
}

/// Minutes on a 2-core machine (the 0.5B dequantized to f32, run twice): kept out of the default
/// test run to hold CI under its time budget; `PARAMX_SLOW_TESTS=1 cargo test --test tp_local`.
#[test]
fn real_0_5b_tp2_equals_tp1_dequantized() {
    if std::env::var_os("PARAMX_SLOW_TESTS").is_none() {
        eprintln!("SKIP: slow test (set PARAMX_SLOW_TESTS=1): 0.5B TP=2 vs TP=1, dequantized");
        return;
    }
    let Some(path) = real_0_5b() else {
        eprintln!("SKIP: real 0.5B GGUF not found (paramx fetch-model, or PARAMX_TEST_MODEL)");
        return;
    };
    // The Q4_K weights themselves cannot be cut for the row-parallel projections: a clear error.
    {
        let comm = LocalGroup::with_timeout(2, std::time::Duration::from_secs(5))
            .into_iter()
            .next()
            .unwrap();
        let src = GgufSource::open(&path).unwrap();
        let cfg = Qwen2Config::from_gguf(src.content()).unwrap();
        let err = Qwen2::load(&cfg, &src, &opts(Arc::new(comm)))
            .err()
            .expect("Q4_K row-parallel slices are not block aligned");
        let msg = format!("{err:#}");
        assert!(msg.contains("not aligned"), "{msg}");
    }
    let load = |comm: Arc<dyn Communicator>| {
        let src = GgufSource::open(&path).unwrap();
        let cfg = Qwen2Config::from_gguf(src.content()).unwrap();
        let tok = Tokenizer::from_gguf(src.content()).unwrap();
        let model = Qwen2::load(&cfg, &Dequantized(src), &opts(comm)).unwrap();
        (model, tok)
    };
    let tok = Tokenizer::from_gguf(GgufSource::open(&path).unwrap().content()).unwrap();
    let prompts = vec![
        tok.encode("The capital of France is").unwrap(),
        tok.encode("def add(a, b):").unwrap(),
    ];
    let one = on_ranks(1, load, &prompts, 6);
    let two = on_ranks(2, load, &prompts, 6);
    let (diff, scale) = compare(&one, &two);
    eprintln!("0.5B TP=2 vs TP=1 (f32): max |logit diff| {diff:e}, max |logit| {scale}");
    assert!(diff <= 1e-4 * scale, "{diff} vs {scale}");
}
