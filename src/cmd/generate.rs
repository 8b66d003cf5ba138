//! `paramx generate`: a quick look at a model: chat prompt in, answer and tokens/s out.

use crate::generate::{GenerateParams, Sampling};
use crate::model::chat::ChatMessage;
use crate::model::ModelOptions;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A model name known to `paramx fetch-model` (looked up in --dir), a GGUF file, or an HF
    /// model directory.
    #[arg(long, default_value = "qwen2.5-coder-0.5b")]
    pub model: String,
    /// Folder of fetched models.
    #[arg(long, default_value = "models")]
    pub dir: PathBuf,
    /// The user message.
    #[arg(long)]
    pub prompt: String,
    /// Optional system message (default: the chat template's own).
    #[arg(long)]
    pub system: Option<String>,
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Run the same prompt N times in one batch (to see batched throughput).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Sampling temperature; 0 (default) is greedy decoding.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Prompt tokens per prefill pass.
    #[arg(long, default_value_t = 512)]
    pub prefill_chunk: usize,
    /// Send the prompt as raw text, without the chat template.
    #[arg(long)]
    pub raw: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.batch == 0 {
        anyhow::bail!("--batch must be at least 1");
    }
    let path = crate::fetch::resolve_model(&args.model, &args.dir)?;
    let t0 = Instant::now();
    let loaded = crate::model::load(&path, &ModelOptions::cpu())?;
    let load_secs = t0.elapsed().as_secs_f64();
    let params = GenerateParams {
        max_new_tokens: args.max_new_tokens,
        sampling: if args.temperature > 0.0 {
            Sampling::TopP {
                temperature: args.temperature,
                top_p: args.top_p,
                seed: args.seed,
            }
        } else {
            Sampling::Greedy
        },
        prefill_chunk: args.prefill_chunk,
        stop_tokens: None,
    };
    let gen = loaded.generator();
    let out = if args.raw {
        let ids = loaded.tokenizer.encode(&args.prompt)?;
        gen.generate(&vec![ids; args.batch], &params, None)?
    } else {
        let mut conv = Vec::new();
        if let Some(s) = &args.system {
            conv.push(ChatMessage::system(s.clone()));
        }
        conv.push(ChatMessage::user(args.prompt.clone()));
        gen.chat(&vec![conv; args.batch], &params, None)?
    };
    let first = out.sequences.first().context("no output")?;
    println!("{}", first.text);
    let prompt_tokens: usize = out.sequences.iter().map(|s| s.prompt_tokens).sum();
    let generated: usize = out.sequences.iter().map(|s| s.generated_tokens).sum();
    eprintln!(
        "model {} loaded in {load_secs:.2}s | batch {} | prompt {} tok, prefill {:.2}s ({:.1} tok/s) | generated {} tok ({:?}), decode {:.2}s ({:.1} tok/s)",
        path.display(),
        args.batch,
        prompt_tokens,
        out.prefill_secs,
        prompt_tokens as f64 / out.prefill_secs.max(1e-9),
        generated,
        first.finish,
        out.decode_secs,
        out.decode_tokens as f64 / out.decode_secs.max(1e-9),
    );
    Ok(ExitCode::SUCCESS)
}
