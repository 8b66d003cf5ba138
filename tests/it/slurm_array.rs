//! A real SLURM (Debian's slurm-wlm + munge, single node on localhost, started by
//! `tests/slurm/run-slurm-test.sh`): the CPU array template runs `paramx run` as a 2-task array on
//! the tiny model, one task is stopped by USR1 through its batch shell and requeues itself, then
//! `paramx merge` must report every input exactly once and its table must equal an unsplit run's.
//! Needs root and apt-get (or slurm-wlm + munge installed); otherwise it says SKIP and passes.

use crate::runfix;

use runfix::*;
use std::process::Command;

#[test]
fn sbatch_array_requeue_and_merge_on_a_real_slurm() {
    let fx = RunFixture::new(8, 200);
    let out = fx.path("slurm-out");
    let job = fx.job("slurm", &out);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slurm/run-slurm-test.sh");
    let o = Command::new("timeout")
        .args(["-k", "10", "1500"])
        .arg(&script)
        .arg(fx.path("slurm-work"))
        .env("PARAMX", env!("CARGO_BIN_EXE_paramx"))
        .env("PARAMX_CONFIG", &job)
        .env("PARAMX_OUT", &out)
        .env("EXPECT_INPUTS", fx.inputs.to_string())
        .output()
        .expect("run the SLURM test script");
    let text = show(&o);
    eprintln!("{text}");
    if o.status.code() == Some(77) {
        eprintln!("SKIP: no SLURM here (see above)");
        return;
    }
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("slurm-test: PASS"));
    // The merged table equals an unsplit run's on the same inputs.
    let ref_out = fx.path("ref");
    let r = run_to_end(&fx.job("ref", &ref_out), &[]);
    assert!(matches!(r.status.code(), Some(0 | 1)), "{}", show(&r));
    for f in ["table.csv", "errors.jsonl"] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(ref_out.join(f)).unwrap(),
            "{f}"
        );
    }
    assert_eq!(
        results_without_timing(&out.join("results.jsonl")),
        results_without_timing(&ref_out.join("results.jsonl"))
    );
    assert_eq!(
        manifest_hashes(&out.join("manifest.json")),
        manifest_hashes(&ref_out.join("manifest.json"))
    );
}
