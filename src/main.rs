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
    /// Extract clean, sectioned text from PDFs.
    Text(paramx::cmd::text::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Text(args) => paramx::cmd::text::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("paramx: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
