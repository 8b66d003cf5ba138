//! One module per subcommand: argument struct (clap) + `run(args) -> ExitCode`.
//! Exit codes: 0 all good, 1 some inputs failed (others were still processed), 2 usage/fatal error.

pub mod bench_cpu;
pub mod bench_gpu;
pub mod bench_prefix;
pub mod eval;
pub mod fetch_model;
pub mod generate;
pub mod merge;
pub mod plan;
pub mod report;
pub mod run;
pub mod text;
