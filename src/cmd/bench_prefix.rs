//! `paramx bench-prefix`: the shared-prefix engine against per-question prompts. The flags and the measuring code live in
//! [`crate::bench::prefix_run`]; this file only wires them to the command line.

pub use crate::bench::prefix_run::Options as Args;

pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    crate::bench::prefix_run::run(args)
}
