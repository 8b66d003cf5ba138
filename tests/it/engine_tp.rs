//! The engine's tensor-parallel code path (column/row-parallel linears, vocabulary-split
//! embedding and lm_head, greedy (max, argmax) exchange) run with 2 ranks in one process,
//! against 1 rank, on the tiny random model. The communicator here is a minimal test rendezvous
//! (the production in-process and NCCL communicators belong to `crate::tp`); it only has to be
//! correct, and deterministic: every rank combines the contributions in rank order.
//!
//! Tolerance: f32 safetensors TP=2 vs TP=1 logits within 1e-4 (the row-parallel sums add the
//! two halves of each dot product in a different order); quantized GGUF within 1e-3 of the
//! logits' spread (each rank re-quantizes only its half of the activations); greedy tokens equal.

use crate::common;

use candle_core::{Device, Result as CResult, Tensor};
use common::*;
use paramx::generate::{GenerateParams, Generator};
use paramx::model::load::gguf::GgufSource;
use paramx::model::load::safetensors::SafetensorsSource;
use paramx::model::load::WeightSource;
use paramx::model::tokenizer::Tokenizer;
use paramx::model::{ModelOptions, Qwen2, Qwen2Config};
use paramx::tp::Communicator;
use std::sync::{Arc, Barrier, Mutex};

struct Shared {
    slots: Mutex<Vec<Option<Tensor>>>,
    barrier: Barrier,
}

struct TestComm {
    rank: usize,
    world: usize,
    shared: Arc<Shared>,
}

impl TestComm {
    fn group(world: usize) -> Vec<TestComm> {
        let shared = Arc::new(Shared {
            slots: Mutex::new(vec![None; world]),
            barrier: Barrier::new(world),
        });
        (0..world)
            .map(|rank| TestComm {
                rank,
                world,
                shared: shared.clone(),
            })
            .collect()
    }

    /// Every rank's tensor, in rank order.
    fn exchange(&self, t: &Tensor) -> Vec<Tensor> {
        self.shared.slots.lock().unwrap()[self.rank] = Some(t.clone());
        self.shared.barrier.wait();
        let all = self
            .shared
            .slots
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.clone().unwrap())
            .collect();
        self.shared.barrier.wait();
        all
    }
}

impl Communicator for TestComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world
    }
    fn all_reduce_sum(&self, t: &Tensor) -> CResult<Tensor> {
        let all = self.exchange(t);
        let mut acc = all[0].clone();
        for x in &all[1..] {
            acc = (acc + x)?;
        }
        Ok(acc)
    }
    fn all_gather(&self, t: &Tensor, dim: usize) -> CResult<Tensor> {
        Tensor::cat(&self.exchange(t), dim)
    }
}

/// Runs `f(rank's model)` on `world` ranks in threads; returns rank 0's result.
fn on_ranks<T: Send + 'static>(
    world: usize,
    load: impl Fn() -> (Qwen2Config, Box<dyn WeightSource>) + Send + Sync + 'static,
    f: impl Fn(&Qwen2) -> T + Send + Sync + 'static,
) -> T {
    let load = Arc::new(load);
    let f = Arc::new(f);
    let handles: Vec<_> = TestComm::group(world)
        .into_iter()
        .map(|comm| {
            let (load, f) = (load.clone(), f.clone());
            std::thread::spawn(move || {
                let (cfg, src) = load();
                let opts = ModelOptions {
                    comm: Arc::new(comm),
                    attention_block: 4,
                    ..ModelOptions::cpu()
                };
                let model = Qwen2::load(&cfg, src.as_ref(), &opts).unwrap();
                f(&model)
            })
        })
        .collect();
    let mut results: Vec<T> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    results.swap_remove(0)
}

fn logits_and_greedy(model: &Qwen2) -> (Tensor, Vec<u32>) {
    let ids: Vec<u32> = (0..10u32).map(|i| (i * 29 + 3) % 256).collect();
    let mut cache = model.new_cache(vec![0, 3], 16).unwrap();
    let x = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
        .repeat((2, 1))
        .unwrap();
    let h = model.forward(&x, &mut cache).unwrap();
    let last = Qwen2::last_hidden(&h).unwrap();
    (model.logits(&h).unwrap(), model.greedy(&last).unwrap())
}

#[test]
fn two_ranks_match_one_rank_on_safetensors() {
    let tiny = Arc::new(build());
    let t2 = tiny.clone();
    let load = move || -> (Qwen2Config, Box<dyn WeightSource>) {
        let cfg = Qwen2Config::from_hf_json(&t2.hf_dir().join("config.json")).unwrap();
        (
            cfg,
            Box::new(SafetensorsSource::open(&t2.hf_dir()).unwrap()),
        )
    };
    let load = Arc::new(load);
    let l1 = load.clone();
    let (one, g1) = on_ranks(1, move || l1(), logits_and_greedy);
    let (two, g2) = on_ranks(2, move || load(), logits_and_greedy);
    let diff = max_abs_diff(&one, &two);
    eprintln!("safetensors TP=2 vs TP=1: max |logit diff| {diff:e}");
    assert!(diff <= 1e-4, "{diff}");
    assert_eq!(g1, g2);
}

#[test]
fn two_ranks_generate_the_same_tokens_on_gguf() {
    let tiny = Arc::new(build());
    let path = tiny.gguf_path();
    let p1 = path.clone();
    let run = move |model: &Qwen2| {
        let src = GgufSource::open(&p1).unwrap();
        let tok = Tokenizer::from_gguf(src.content()).unwrap();
        let params = GenerateParams {
            max_new_tokens: 10,
            stop_tokens: Some(vec![]),
            ..Default::default()
        };
        let prompts = vec![vec![5u32, 6, 7, 8, 9], vec![100u32, 3]];
        let gen = Generator::new(model, &tok);
        let out = gen.generate(&prompts, &params, None).unwrap();
        // Questions on a shared prefix, two at a time (cascade attention on each rank's heads).
        let prefix: Vec<u32> = (0..17u32).map(|i| (i * 13 + 1) % 250).collect();
        let questions = vec![vec![5u32, 6, 7], vec![100u32, 3], vec![9u32, 9, 9, 9]];
        let shared = gen
            .generate_shared(&prefix, &questions, 2, &params, None)
            .unwrap();
        (
            logits_and_greedy(model).0,
            out.sequences
                .iter()
                .chain(&shared.rows.sequences)
                .map(|s| s.tokens.clone())
                .collect::<Vec<_>>(),
        )
    };
    let run = Arc::new(run);
    let loader = move || -> (Qwen2Config, Box<dyn WeightSource>) {
        let src = GgufSource::open(&path).unwrap();
        (
            Qwen2Config::from_gguf(src.content()).unwrap(),
            Box::new(src),
        )
    };
    let loader = Arc::new(loader);
    let (r1, l1) = (run.clone(), loader.clone());
    let (one, t1) = on_ranks(1, move || l1(), move |m| r1(m));
    let (two, t2) = on_ranks(2, move || loader(), move |m| run(m));
    let spread = 2.0 * max_abs(&one);
    let rel = max_abs_diff(&one, &two) / spread;
    eprintln!("GGUF Q8_0 TP=2 vs TP=1: max |logit diff| / spread {rel:e}");
    assert!(rel <= 1e-3, "{rel}");
    assert_eq!(t1, t2);
    drop(tiny);
}
