//! `paramx bench-cpu`: the CPU engine beside llama.cpp and candle. The flags and the measuring code live in
//! [`crate::bench::cpu`]; this file only wires them to the command line.

pub use crate::bench::cpu::Options as Args;

pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    crate::bench::cpu::run(args)
}
