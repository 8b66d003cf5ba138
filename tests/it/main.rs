//! The one integration-test binary (`autotests = false` in Cargo.toml): every file here is a
//! module, so candle and the engine are linked once, not once per file. Helpers are plain
//! modules: [`common`] (the tiny random Qwen2 written as HF and GGUF files) and [`runfix`] (a
//! folder of generated PDFs and a job file for the `paramx run` tests).
//!
//! Tests that drive the `paramx` binary find it through `CARGO_BIN_EXE_paramx`; the corpus ones
//! read `../shared/corpus` and print SKIP when it is absent.

mod common;
mod runfix;

mod bench_gpu_cli;
mod engine;
mod engine_tp;
mod eval_cli;
mod kernels;
mod launch;
mod nccl_gpu;
mod pdf_bad_input;
mod pdf_corpus;
mod pdf_hostile;
mod pdf_robustness;
mod plan_cli;
mod report_browser;
mod report_run;
mod run_e2e;
mod run_resume;
mod run_tp;
mod slurm_array;
mod tp_local;
