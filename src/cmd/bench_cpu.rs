//! `paramx bench-cpu`: prefill and decode speed of our engine beside candle-transformers'
//! `quantized_qwen2` on the same GGUF files, batch 1 and 4, with peak RSS.
//!
//! Each (engine, model, batch) cell runs in a fresh child process (this same binary with
//! `--cell`), so peak RSS (`VmHWM`) belongs to that cell alone; the cells alternate between the
//! engines so both see the same machine state. Medians over `--repeats`. This is a benchmark,
//! not a test: nothing here asserts a speed.

use crate::generate::{GenerateParams, Sampling};
use crate::model::chat::ChatMessage;
use crate::model::ModelOptions;
use anyhow::{bail, Context, Result};

use candle_core::{DType, Device, IndexOp, Tensor};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Models (names known to fetch-model, or GGUF paths).
    #[arg(long, num_args = 1.., default_values_t = vec!["qwen2.5-coder-0.5b".to_string(), "qwen2.5-coder-1.5b".to_string()])]
    pub models: Vec<String>,
    #[arg(long, default_value = "models")]
    pub dir: PathBuf,
    #[arg(long, num_args = 1.., default_values_t = vec![1usize, 4])]
    pub batches: Vec<usize>,
    /// Tokens generated per sequence (no early stop).
    #[arg(long, default_value_t = 32)]
    pub new_tokens: usize,
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// CPU threads for both engines (sets RAYON_NUM_THREADS, which candle's pool reads, in each
    /// cell); default: the machine's.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where the JSON results go.
    #[arg(long, default_value = "target/bench-cpu.json")]
    pub json: PathBuf,
    /// Internal: run one cell `ENGINE:MODEL_PATH:BATCH` and print its JSON.
    #[arg(long, hide = true)]
    pub cell: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cell {
    engine: String,
    model: String,
    batch: usize,
    prompt_tokens: usize,
    new_tokens: usize,
    prefill_tok_s: f64,
    decode_tok_s: f64,
    peak_rss_mib: f64,
    /// First sequence's generated ids, to check that both engines agree.
    tokens: Vec<u32>,
    /// Why the cell produced no numbers (the engine failed), if it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Cell {
    fn failed(engine: &str, model: &str, batch: usize, error: String) -> Self {
        Cell {
            engine: engine.into(),
            model: model.into(),
            batch,
            prompt_tokens: 0,
            new_tokens: 0,
            prefill_tok_s: f64::NAN,
            decode_tok_s: f64::NAN,
            peak_rss_mib: f64::NAN,
            tokens: vec![],
            error: Some(error),
        }
    }
}

const PROMPT: &str = "Summarise the design of a visuomotor rotation experiment: participants reach to \
targets while the cursor is rotated by 30 degrees; describe the baseline, adaptation and washout \
blocks, the feedback type, the number of targets and the typical sample size, in a short paragraph.";

pub fn run(args: Args) -> Result<ExitCode> {
    if let Some(cell) = &args.cell {
        let c = run_cell(cell, args.new_tokens)?;
        println!("{}", serde_json::to_string(&c)?);
        return Ok(ExitCode::SUCCESS);
    }
    let exe = std::env::current_exe().context("locating the paramx binary")?;
    let mut results: Vec<Cell> = Vec::new();
    for spec in &args.models {
        let path = crate::fetch::resolve_model(spec, &args.dir)?;
        for &batch in &args.batches {
            let mut runs: Vec<Vec<Cell>> = vec![Vec::new(), Vec::new()];
            for _ in 0..args.repeats.max(1) {
                for (e, engine) in ["paramx", "candle"].iter().enumerate() {
                    let mut cmd = std::process::Command::new(&exe);
                    if let Some(t) = args.threads {
                        cmd.env("RAYON_NUM_THREADS", t.to_string());
                    }
                    let out = cmd
                        .args([
                            "bench-cpu",
                            "--new-tokens",
                            &args.new_tokens.to_string(),
                            "--cell",
                        ])
                        .arg(format!("{engine}:{}:{batch}", path.display()))
                        .output()
                        .context("running a benchmark cell")?;
                    if !out.status.success() {
                        let err = String::from_utf8_lossy(&out.stderr);
                        let first = err.lines().next().unwrap_or("");
                        let first = first.trim_start_matches("paramx: error: ").to_string();
                        eprintln!("  {engine:7} {spec} b{batch}: FAILED: {first}");
                        let model = path.display().to_string();
                        runs[e].push(Cell::failed(engine, &model, batch, first));
                        continue;
                    }
                    let line = String::from_utf8_lossy(&out.stdout);
                    let cell: Cell =
                        serde_json::from_str(line.trim()).context("parsing a cell's JSON")?;
                    eprintln!("  {engine:7} {spec} b{batch}: prefill {:.1} tok/s, decode {:.1} tok/s, rss {:.0} MiB", cell.prefill_tok_s, cell.decode_tok_s, cell.peak_rss_mib);
                    runs[e].push(cell);
                }
            }
            for r in runs {
                results.push(median_cell(r));
            }
        }
    }
    print_table(&results);
    if let Some(parent) = args.json.parent() {
        std::fs::create_dir_all(parent).ok();
    }
    let json = serde_json::json!({
        "machine": machine(),
        "threads": args.threads,
        "load_average_at_end": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "cells": results,
    });
    std::fs::write(&args.json, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", args.json.display()))?;
    eprintln!("wrote {}", args.json.display());
    Ok(ExitCode::SUCCESS)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    format!(
        "{cpu}, {} threads",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn median_cell(r: Vec<Cell>) -> Cell {
    if let Some(failed) = r.iter().find(|c| c.error.is_some()) {
        return failed.clone();
    }
    let mut c = r[0].clone();
    c.prefill_tok_s = median(r.iter().map(|c| c.prefill_tok_s).collect());
    c.decode_tok_s = median(r.iter().map(|c| c.decode_tok_s).collect());
    c.peak_rss_mib = median(r.iter().map(|c| c.peak_rss_mib).collect());
    c
}

fn print_table(cells: &[Cell]) {
    println!("| model | batch | paramx prefill tok/s | candle prefill tok/s | ratio | paramx decode tok/s | candle decode tok/s | ratio | paramx RSS MiB | candle RSS MiB | same tokens |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for pair in cells.chunks(2) {
        let [a, b] = pair else { continue };
        let b_err = b.error.as_deref().map(|e| format!("n/a ({e})"));
        let name = std::path::Path::new(&a.model)
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        if let Some(e) = b_err {
            println!(
                "| {name} | {} | {:.1} | {e} | - | {:.1} | - | - | {:.0} | - | - |",
                a.batch, a.prefill_tok_s, a.decode_tok_s, a.peak_rss_mib
            );
            continue;
        }
        println!(
            "| {name} | {} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {:.2} | {:.0} | {:.0} | {} |",
            a.batch,
            a.prefill_tok_s,
            b.prefill_tok_s,
            a.prefill_tok_s / b.prefill_tok_s,
            a.decode_tok_s,
            b.decode_tok_s,
            a.decode_tok_s / b.decode_tok_s,
            a.peak_rss_mib,
            b.peak_rss_mib,
            if a.tokens == b.tokens {
                "yes".to_string()
            } else {
                format!(
                    "first {} of {}",
                    common_prefix(&a.tokens, &b.tokens),
                    a.tokens.len()
                )
            }
        );
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn run_cell(spec: &str, new_tokens: usize) -> Result<Cell> {
    let mut parts = spec.splitn(2, ':');
    let engine = parts.next().unwrap_or("");
    let rest = parts.next().context("cell spec ENGINE:PATH:BATCH")?;
    let (path, batch) = rest
        .rsplit_once(':')
        .context("cell spec ENGINE:PATH:BATCH")?;
    let batch: usize = batch.parse().context("cell batch")?;
    let path = PathBuf::from(path);
    // Both engines get the same prompt ids from our tokenizer and chat template.
    let loaded = crate::model::load(&path, &ModelOptions::cpu())?;
    let template = loaded
        .tokenizer
        .chat_template()
        .context("model has no chat template")?;
    let ids = loaded
        .tokenizer
        .encode(&template.render(&[ChatMessage::user(PROMPT)], true)?)?;
    let (prefill_s, decode_s, tokens) = match engine {
        "paramx" => {
            let params = GenerateParams {
                max_new_tokens: new_tokens,
                sampling: Sampling::Greedy,
                prefill_chunk: 512,
                stop_tokens: Some(Vec::new()),
            };
            let out = loaded
                .generator()
                .generate(&vec![ids.clone(); batch], &params, None)?;
            (
                out.prefill_secs,
                out.decode_secs,
                out.sequences[0].tokens.clone(),
            )
        }
        "candle" => {
            drop(loaded);
            candle_reference(&path, &ids, batch, new_tokens)?
        }
        other => bail!("unknown engine {other}"),
    };
    Ok(Cell {
        engine: engine.to_string(),
        model: path.display().to_string(),
        batch,
        prompt_tokens: ids.len(),
        new_tokens,
        prefill_tok_s: (batch * ids.len()) as f64 / prefill_s,
        decode_tok_s: (batch * (new_tokens - 1)) as f64 / decode_s,
        peak_rss_mib: peak_rss_mib(),
        tokens,
        error: None,
    })
}

/// Greedy generation with candle-transformers' `quantized_qwen2` (its KV cache, its attention).
fn candle_reference(
    path: &std::path::Path,
    ids: &[u32],
    batch: usize,
    new_tokens: usize,
) -> Result<(f64, f64, Vec<u32>)> {
    use candle_transformers::models::quantized_qwen2::ModelWeights;
    let dev = Device::Cpu;
    let mut file = std::fs::File::open(path)?;
    let ct = candle_core::quantized::gguf_file::Content::read(&mut file)?;
    let mut model = ModelWeights::from_gguf(ct, &mut file, &dev)?;
    if batch > 1 {
        // Probe with a 2-token prompt first: at batch > 1 this engine's prefill fails at the very
        // end (its last-token slice is not contiguous), so fail fast with its own error.
        let probe = Tensor::new(&ids[..2], &dev)?
            .unsqueeze(0)?
            .repeat((batch, 1))?;
        model.forward(&probe, 0)?;
        model.clear_kv_cache();
    }
    let t0 = Instant::now();
    let input = Tensor::new(ids, &dev)?.unsqueeze(0)?.repeat((batch, 1))?;
    let logits = model.forward(&input, 0)?;
    let mut next = logits.to_dtype(DType::F32)?.argmax(1)?;
    let prefill = t0.elapsed().as_secs_f64();
    let mut tokens = vec![next.i(0)?.to_scalar::<u32>()?];
    let t1 = Instant::now();
    for step in 1..new_tokens {
        let logits = model.forward(&next.unsqueeze(1)?, ids.len() + step - 1)?;
        next = logits.to_dtype(DType::F32)?.argmax(1)?;
        tokens.push(next.i(0)?.to_scalar::<u32>()?);
    }
    Ok((prefill, t1.elapsed().as_secs_f64(), tokens))
}
