//! `paramx bench-gpu`: the 72B (or tiny) model's memory, prefill and decode on a GPU, beside the roofline. The flags and the measuring code live in
//! [`crate::bench::gpu`]; this file only wires them to the command line.

pub use crate::bench::gpu::Options as Args;

pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    crate::bench::gpu::run(args)
}
