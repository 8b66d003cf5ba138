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

/// SIGUSR1 (SLURM's warning before the time limit, `--signal=B:USR1@...`) and SIGTERM (scancel,
/// preemption) ask a run to stop cleanly: see `run::STOP_REQUESTED`.
pub fn install_stop_handlers() {
    for sig in [signal_hook::consts::SIGUSR1, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, crate::run::STOP_REQUESTED.clone()) {
            eprintln!("paramx: warning: cannot install the handler for signal {sig}: {e}");
        }
    }
}
