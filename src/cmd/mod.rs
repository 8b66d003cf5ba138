//! One module per subcommand: argument struct (clap) + `run(args) -> ExitCode`.
//! Exit codes: 0 all good, 1 some inputs failed (others were still processed), 2 usage/fatal error.

pub mod eval;
pub mod plan;
pub mod text;
pub mod bench_cpu;
pub mod fetch_model;
pub mod generate;
