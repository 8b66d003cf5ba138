//! `paramx bench-prefix`: questions on a shared paper prefix against separate prompts, on the
//! CPU with a real GGUF model (see `bench::prefix`). Prints a table and writes JSON.

use crate::bench::prefix::{self, Shape};
use crate::model::ModelOptions;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model (a name known to fetch-model, or a GGUF path).
    #[arg(long, default_value = "qwen2.5-coder-1.5b")]
    pub model: String,
    #[arg(long, default_value = "models")]
    pub dir: PathBuf,
    /// The PDF whose text makes the prefix and the questions.
    #[arg(long, default_value = "data/sample")]
    pub pdf: PathBuf,
    #[arg(long, default_value_t = 3500)]
    pub prefix_tokens: usize,
    #[arg(long, default_value_t = 16)]
    pub questions: usize,
    #[arg(long, default_value_t = 60)]
    pub question_tokens: usize,
    #[arg(long, default_value_t = 40)]
    pub answer_tokens: usize,
    #[arg(long, default_value_t = 512)]
    pub prefill_chunk: usize,
    /// Questions run together as one batch on the shared prefix.
    #[arg(long, default_value_t = 16)]
    pub rows: usize,
    /// CPU threads (sets RAYON_NUM_THREADS before any tensor work).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// The machine, as the table names it.
    #[arg(long, default_value = "this machine")]
    pub machine: String,
    #[arg(long, default_value = "target/bench-prefix.json")]
    pub json: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode> {
    std::env::set_var("RAYON_NUM_THREADS", args.threads.max(1).to_string());
    let pdfs = crate::run::discover(std::slice::from_ref(&args.pdf))?;
    let pdf = pdfs.first().context("no PDF")?;
    let doc = crate::pdf::extract_file(pdf, &Default::default())
        .with_context(|| format!("cannot read {}", pdf.display()))?;
    let path = crate::fetch::resolve_model(&args.model, &args.dir)?;
    let loaded = crate::model::load(&path, &ModelOptions::cpu())?;
    let text_tokens = loaded.tokenizer.encode(&doc.text)?;
    let shape = Shape {
        prefix_tokens: args.prefix_tokens,
        questions: args.questions,
        question_tokens: args.question_tokens,
        answer_tokens: args.answer_tokens,
        prefill_chunk: args.prefill_chunk,
        rows: args.rows,
    };
    let (p, q) = prefix::workload(&text_tokens, &shape)?;
    let out = prefix::run(&loaded.generator(), &p, &q, shape)?;
    let machine = format!(
        "{}, {} thread(s), {}",
        args.machine,
        args.threads,
        path.display()
    );
    print!("{}", out.to_text(&machine));
    let json = serde_json::json!({"machine": machine, "result": out});
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    crate::run::store::write_atomic(&args.json, &serde_json::to_vec_pretty(&json)?)?;
    eprintln!("paramx: wrote {}", args.json.display());
    Ok(ExitCode::SUCCESS)
}
