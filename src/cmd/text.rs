//! `paramx text` and `paramx pdf-worker`: the flags and the job live in [`crate::text`]; this
//! file only wires them to the command line.

pub use crate::text::{Options as Args, WorkerArgs};

pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    crate::text::run(args)
}

pub fn worker(args: &WorkerArgs) -> std::process::ExitCode {
    crate::text::worker(args)
}
