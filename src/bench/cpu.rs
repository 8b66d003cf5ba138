//! `paramx bench-cpu`: prefill and decode speed of our engine beside llama.cpp's
//! `llama-bench` (the CPU engine researchers would otherwise pick) and candle-transformers'
//! `quantized_qwen2`, on the same GGUF files, the same prompt length and the same threads.
//!
//! Engines (`--engines`):
//! - `paramx`: this engine as a run uses it;
//! - `paramx-candle-kernels`: the same with our decode kernels off (`PARAMX_QGEMV=off`:
//!   candle's quantized matmuls everywhere), the "before" of `model::qgemv`, whose greedy
//!   tokens the table compares with `paramx`'s;
//! - `llama.cpp`: `llama-bench -p P -n N -t T` (`--llama-bench PATH`, built from a pinned
//!   source by `benches/llama_cpp.sh`); batch 1 only, and it reports no tokens;
//! - `candle`: candle-transformers' `quantized_qwen2`.
//!
//! Each (engine, model, batch) cell runs in a fresh child process, so peak RSS (`VmHWM`)
//! belongs to that cell alone; the engines take turns within each repeat so all see the same
//! machine state. Every engine runs an untimed warm-up before its timed run, as llama-bench
//! does (up to 32 prompt tokens, one or two generated), so a cold start (the mapped weights'
//! first touch, lazily built copies) is not timed. Medians over `--repeats`. This is a
//! benchmark, not a test: nothing here asserts a speed.

use crate::bench::median;
use crate::generate::{GenerateParams, Sampling};
use crate::model::ModelOptions;
use anyhow::{bail, Context, Result};

use candle_core::{DType, Device, IndexOp, Tensor};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Models (names known to fetch-model, or GGUF paths).
    #[arg(long, num_args = 1.., default_values_t = vec!["qwen2.5-coder-0.5b".to_string(), "qwen2.5-coder-1.5b".to_string()])]
    pub models: Vec<String>,
    #[arg(long, default_value = "models")]
    pub dir: PathBuf,
    /// Engines to run side by side (paramx, paramx-candle-kernels, llama.cpp, candle).
    #[arg(long, num_args = 1.., default_values_t = vec!["paramx".to_string(), "paramx-candle-kernels".to_string(), "llama.cpp".to_string()])]
    pub engines: Vec<String>,
    /// The `llama-bench` binary for the llama.cpp engine (`benches/llama_cpp.sh` builds it).
    #[arg(long)]
    pub llama_bench: Option<PathBuf>,
    #[arg(long, num_args = 1.., default_values_t = vec![1usize])]
    pub batches: Vec<usize>,
    /// Prompt tokens per sequence (llama-bench's `-p`; the prompt is English text cut to this
    /// many tokens).
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    /// Tokens generated per sequence (no early stop; llama-bench's `-n`).
    #[arg(long, default_value_t = 128)]
    pub new_tokens: usize,
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// CPU threads for every engine (RAYON_NUM_THREADS, which candle's pools read, in each
    /// cell; llama-bench's `-t`); default: the machine's.
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
    /// NaN where the engine's process is not ours to read (llama.cpp).
    peak_rss_mib: f64,
    /// First sequence's generated ids, to check that engines agree (empty for llama.cpp).
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

/// The text the prompt is cut from (repeated as needed).
const PROMPT: &str = "Summarise the design of a visuomotor rotation experiment: participants reach to \
targets while the cursor is rotated by 30 degrees; describe the baseline, adaptation and washout \
blocks, the feedback type, the number of targets and the typical sample size, in a short paragraph. ";

const ENGINES: [&str; 4] = ["paramx", "paramx-candle-kernels", "llama.cpp", "candle"];

pub fn run(args: Options) -> Result<ExitCode> {
    if let Some(cell) = &args.cell {
        let c = run_cell(cell, args.prompt_tokens, args.new_tokens)?;
        println!("{}", serde_json::to_string(&c)?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(e) = args.engines.iter().find(|e| !ENGINES.contains(&e.as_str())) {
        bail!("unknown engine {e} (known: {})", ENGINES.join(", "))
    }
    if args.engines.iter().any(|e| e == "llama.cpp") && args.llama_bench.is_none() {
        bail!("the llama.cpp engine needs --llama-bench PATH (benches/llama_cpp.sh builds it)")
    }
    let exe = std::env::current_exe().context("locating the paramx binary")?;
    let mut results: Vec<Cell> = Vec::new();
    for spec in &args.models {
        let path = crate::fetch::resolve_model(spec, &args.dir)?;
        let model = path.display().to_string();
        for &batch in &args.batches {
            let mut runs: Vec<Vec<Cell>> = vec![Vec::new(); args.engines.len()];
            for _ in 0..args.repeats.max(1) {
                for (e, engine) in args.engines.iter().enumerate() {
                    let cell = if engine == "llama.cpp" {
                        let lb = args.llama_bench.as_deref().context("--llama-bench")?;
                        llama_cell(lb, &path, batch, &args)
                    } else {
                        child_cell(&exe, engine, &path, batch, &args)
                    };
                    let cell = cell.unwrap_or_else(|err| {
                        Cell::failed(engine, &model, batch, format!("{err:#}"))
                    });
                    match &cell.error {
                        Some(err) => eprintln!("  {engine:22} {spec} b{batch}: FAILED: {err}"),
                        None => eprintln!(
                            "  {engine:22} {spec} b{batch}: prefill {:.1} tok/s, decode {:.1} tok/s",
                            cell.prefill_tok_s, cell.decode_tok_s
                        ),
                    }
                    runs[e].push(cell);
                }
            }
            results.extend(runs.into_iter().map(median_cell));
        }
    }
    print_table(&results, &args.engines);
    if let Some(parent) = args.json.parent() {
        std::fs::create_dir_all(parent).ok();
    }
    let json = serde_json::json!({
        "machine": machine(),
        "threads": args.threads,
        "load_average_at_end": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "llama_bench": args.llama_bench,
        "cells": results,
    });
    std::fs::write(&args.json, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", args.json.display()))?;
    eprintln!("wrote {}", args.json.display());
    Ok(ExitCode::SUCCESS)
}

/// One cell of our engine or candle's, in a child process of this binary.
fn child_cell(exe: &Path, engine: &str, path: &Path, batch: usize, args: &Options) -> Result<Cell> {
    let mut cmd = std::process::Command::new(exe);
    if let Some(t) = args.threads {
        cmd.env("RAYON_NUM_THREADS", t.to_string());
    }
    let engine_arg = match engine {
        "paramx-candle-kernels" => {
            cmd.env("PARAMX_QGEMV", "off");
            "paramx"
        }
        other => {
            cmd.env_remove("PARAMX_QGEMV");
            other
        }
    };
    let out = cmd
        .args([
            "bench-cpu",
            "--prompt-tokens",
            &args.prompt_tokens.to_string(),
        ])
        .args(["--new-tokens", &args.new_tokens.to_string(), "--cell"])
        .arg(format!("{engine_arg}:{}:{batch}", path.display()))
        .output()
        .context("running a benchmark cell")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("paramx: error: ");
        bail!("{first}")
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let mut cell: Cell = serde_json::from_str(line.trim()).context("parsing a cell's JSON")?;
    cell.engine = engine.to_string();
    Ok(cell)
}

/// One cell of llama.cpp: `llama-bench -p P -n 0` for the prefill, then `-p 0 -n N -d P` for
/// decoding after a P-token context (as our cells decode after their prompt), each with its
/// own warm-up run and one timed run.
fn llama_cell(lb: &Path, path: &Path, batch: usize, args: &Options) -> Result<Cell> {
    if batch != 1 {
        bail!("llama-bench times one sequence")
    }
    let (p, n) = (args.prompt_tokens.to_string(), args.new_tokens.to_string());
    let prefill = llama_rate(lb, path, &["-p", &p, "-n", "0"], args.threads)?;
    let decode = llama_rate(lb, path, &["-p", "0", "-n", &n, "-d", &p], args.threads)?;
    Ok(Cell {
        engine: "llama.cpp".into(),
        model: path.display().to_string(),
        batch,
        prompt_tokens: args.prompt_tokens,
        new_tokens: args.new_tokens,
        prefill_tok_s: prefill,
        decode_tok_s: decode,
        peak_rss_mib: f64::NAN,
        tokens: vec![],
        error: None,
    })
}

/// The tokens per second of the one test a `llama-bench` call runs.
fn llama_rate(lb: &Path, path: &Path, test: &[&str], threads: Option<usize>) -> Result<f64> {
    let mut cmd = std::process::Command::new(lb);
    cmd.arg("-m")
        .arg(path)
        .args(test)
        .args(["-r", "1", "-o", "json"]);
    if let Some(t) = threads {
        cmd.args(["-t", &t.to_string()]);
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {}", lb.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("");
        bail!(
            "llama-bench {} failed ({}): {last}",
            test.join(" "),
            out.status
        )
    }
    #[derive(Deserialize)]
    struct Test {
        avg_ts: f64,
    }
    let tests: Vec<Test> = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("parsing the JSON of {}", lb.display()))?;
    match tests.as_slice() {
        [t] => Ok(t.avg_ts),
        _ => bail!(
            "llama-bench {} printed {} tests, not one",
            test.join(" "),
            tests.len()
        ),
    }
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

fn median_cell(r: Vec<Cell>) -> Cell {
    if let Some(failed) = r.iter().find(|c| c.error.is_some()) {
        return failed.clone();
    }
    let mut c = r[0].clone();
    c.prefill_tok_s = median(&r.iter().map(|c| c.prefill_tok_s).collect::<Vec<_>>());
    c.decode_tok_s = median(&r.iter().map(|c| c.decode_tok_s).collect::<Vec<_>>());
    c.peak_rss_mib = median(&r.iter().map(|c| c.peak_rss_mib).collect::<Vec<_>>());
    c
}

fn print_table(cells: &[Cell], engines: &[String]) {
    let rate = |v: f64| {
        if v.is_nan() {
            "-".to_string()
        } else {
            format!("{v:.1}")
        }
    };
    let mut head = vec!["model".to_string(), "batch".into()];
    for e in engines {
        head.push(format!("{e} prefill tok/s"));
        head.push(format!("{e} decode tok/s"));
    }
    let vs_llama = engines.iter().any(|e| e == "llama.cpp");
    if vs_llama {
        head.push("paramx / llama.cpp prefill".into());
        head.push("paramx / llama.cpp decode".into());
    }
    head.push("paramx RSS MiB".into());
    head.push("tokens vs paramx".into());
    println!("| {} |", head.join(" | "));
    println!("|{}", "---|".repeat(head.len()));
    for group in cells.chunks(engines.len()) {
        let Some(first) = group.first() else { continue };
        let name = Path::new(&first.model)
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut row = vec![name, first.batch.to_string()];
        for c in group {
            match &c.error {
                Some(e) => {
                    row.push(format!("n/a ({e})"));
                    row.push("-".into());
                }
                None => {
                    row.push(rate(c.prefill_tok_s));
                    row.push(rate(c.decode_tok_s));
                }
            }
        }
        let ours = group.iter().find(|c| c.engine == "paramx");
        if vs_llama {
            let llama = group.iter().find(|c| c.engine == "llama.cpp");
            let ratio = |f: fn(&Cell) -> f64| match (ours, llama) {
                (Some(a), Some(b)) if a.error.is_none() && b.error.is_none() => {
                    format!("{:.2}", f(a) / f(b))
                }
                _ => "-".into(),
            };
            row.push(ratio(|c| c.prefill_tok_s));
            row.push(ratio(|c| c.decode_tok_s));
        }
        row.push(ours.map_or("-".into(), |c| format!("{:.0}", c.peak_rss_mib)));
        let same: Vec<String> = group
            .iter()
            .filter(|c| c.engine != "paramx" && !c.tokens.is_empty())
            .filter_map(|c| {
                let a = ours?;
                let n = common_prefix(&a.tokens, &c.tokens);
                Some(if n == a.tokens.len() && n == c.tokens.len() {
                    format!("{}: same {n}", c.engine)
                } else {
                    format!("{}: first {n} of {}", c.engine, a.tokens.len())
                })
            })
            .collect();
        row.push(if same.is_empty() {
            "-".into()
        } else {
            same.join("; ")
        });
        println!("| {} |", row.join(" | "));
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

/// Prompt tokens of the untimed warm-up run before a cell's timed run (llama-bench warms up
/// on at most 32 prompt tokens and one generated token).
const WARM_UP_TOKENS: usize = 32;

fn run_cell(spec: &str, prompt_tokens: usize, new_tokens: usize) -> Result<Cell> {
    let mut parts = spec.splitn(2, ':');
    let engine = parts.next().unwrap_or("");
    let rest = parts.next().context("cell spec ENGINE:PATH:BATCH")?;
    let (path, batch) = rest
        .rsplit_once(':')
        .context("cell spec ENGINE:PATH:BATCH")?;
    let batch: usize = batch.parse().context("cell batch")?;
    let path = PathBuf::from(path);
    // Every engine gets a prompt of the same length (llama-bench's are random tokens; ours are
    // English text, which changes nothing of the arithmetic).
    let loaded = crate::model::load(&path, &ModelOptions::cpu())?;
    let mut ids = Vec::new();
    let unit = loaded.tokenizer.encode(PROMPT)?;
    if unit.is_empty() || prompt_tokens == 0 {
        bail!("a prompt needs at least one token")
    }
    while ids.len() < prompt_tokens {
        ids.extend_from_slice(&unit);
    }
    ids.truncate(prompt_tokens);
    let (prefill_s, decode_s, tokens) = match engine {
        "paramx" => {
            let params = GenerateParams {
                max_new_tokens: new_tokens,
                sampling: Sampling::Greedy,
                prefill_chunk: 512,
                stop_tokens: Some(Vec::new()),
            };
            // A warm-up first, as llama-bench runs one before its timed run: the first touch
            // of the mapped weights, the packed copies built at the first decode step and the
            // allocator's first pages are a process's start, not the engine's speed.
            let warm = GenerateParams {
                max_new_tokens: 2,
                ..params.clone()
            };
            loaded.generator().generate(
                &[ids[..ids.len().min(WARM_UP_TOKENS)].to_vec()],
                &warm,
                None,
            )?;
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
    // The same warm-up as our engine's (see `run_cell`).
    let warm = Tensor::new(&ids[..ids.len().min(WARM_UP_TOKENS)], &dev)?.unsqueeze(0)?;
    model.forward(&warm, 0)?;
    model.clear_kv_cache();
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
