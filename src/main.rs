//! `paramx`: the command-line entry point. Each subcommand lives in `paramx::cmd::*`;
//! this file only parses arguments and maps errors to exit codes.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "paramx",
    version,
    about = "Extract experimental-design parameter tables from scientific PDFs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: PDFs -> parameter table (one row per experiment, every value with its quote).
    Run(paramx::cmd::run::Args),
    /// Score a predicted parameter table against a gold CSV (strict or legacy scorer).
    Eval(paramx::cmd::eval::Args),
    /// Per-GPU memory plan of a job (weights, KV cache, activations, overheads); no GPU needed.
    Plan(paramx::cmd::plan::Args),
    /// Extract clean, sectioned text from PDFs.
    Text(paramx::cmd::text::Args),
    /// Generate a chat answer with a local model (prints tokens/s)
    Generate(paramx::cmd::generate::Args),
    /// CPU benchmark: our engine beside candle-transformers on the same GGUF files
    BenchCpu(paramx::cmd::bench_cpu::Args),
    /// CPU benchmark: many questions on one shared paper prefix against separate prompts
    BenchPrefix(paramx::cmd::bench_prefix::Args),
    /// Download, verify (sha256) and assemble a small GGUF model
    FetchModel(paramx::cmd::fetch_model::Args),
    /// Render the review page (report.html) of a run's records: values beside their quotes
    Report(paramx::cmd::report::Args),
    /// Join the records of a split run (all array tasks) into one table; report missing/failed
    Merge(paramx::cmd::merge::Args),
    /// GPU benchmark: rank-0 workload of Qwen2.5-72B TP=2 from random bf16 weights, memory vs plan
    BenchGpu(paramx::cmd::bench_gpu::Args),
    /// Internal: read one PDF in this process and reply on stdout (see `pdf::isolate`)
    #[command(hide = true)]
    PdfWorker(paramx::cmd::text::WorkerArgs),
}

/// Keeps freed buffers in the process for the next op instead of handing them back to the
/// kernel: a prefill step allocates and frees tens of score- and activation-sized buffers per
/// layer, and glibc's defaults (`mmap` for large blocks, trimming the heap's top) made each one
/// fresh pages again (page faults and zeroing were ~7% of a 2-thread CPU run's profile).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's parameters; it runs before any other thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    if let Command::PdfWorker(a) = &cli.command {
        return paramx::cmd::text::worker(a);
    }
    // Every PDF is read in a worker process of this binary, under limits (`pdf::isolate`).
    if let Ok(exe) = std::env::current_exe() {
        paramx::pdf::isolate::use_worker(exe, Default::default());
    }
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Run(args) => paramx::cmd::run::run(args),
        Command::Eval(args) => paramx::cmd::eval::run(args),
        Command::Plan(args) => paramx::cmd::plan::run(args),
        Command::Text(args) => paramx::cmd::text::run(args),
        Command::Generate(a) => paramx::cmd::generate::run(a),
        Command::BenchCpu(a) => paramx::cmd::bench_cpu::run(a),
        Command::BenchPrefix(a) => paramx::cmd::bench_prefix::run(a),
        Command::FetchModel(a) => paramx::cmd::fetch_model::run(a),
        Command::Merge(a) => paramx::cmd::merge::run(a),
        Command::Report(a) => paramx::cmd::report::run(a),
        Command::BenchGpu(a) => paramx::cmd::bench_gpu::run(a),
        Command::PdfWorker(_) => unreachable!("handled above"),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("paramx: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
