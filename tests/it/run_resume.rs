//! Crash safety, signals, sharding and reproducibility of `paramx run` + `paramx merge`, end to
//! end on a real (tiny) model: see `common/runfix.rs` for the fixture and why this model.
//! Timings are printed for the report, never asserted.

use crate::runfix;

use runfix::*;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Every record on disk is whole JSON, named by its own sha256.
fn records_are_whole(out: &Path) -> usize {
    let dir = out.join("papers");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut n = 0;
    for e in rd {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // a killed writer's temporary file: never read
        }
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap())
            .unwrap_or_else(|e| panic!("torn record {}: {e}", p.display()));
        assert_eq!(
            format!("{}.json", v["key"]["sha256"].as_str().unwrap()),
            name
        );
        n += 1;
    }
    n
}

fn spawn_run(job: &Path, extra: &[&str]) -> Child {
    paramx()
        .arg("run")
        .arg("--config")
        .arg(job)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn paramx")
}

/// Tiny xorshift: the kill moments are random but reproducible from the printed seed.
struct Rng(u64);
impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Reference {
    table: Vec<u8>,
    errors: Vec<u8>,
    results: Vec<serde_json::Value>,
    hashes: serde_json::Value,
}

fn reference(fx: &RunFixture, name: &str) -> (Reference, Duration, std::process::Output) {
    let out = fx.path(name);
    let t = Instant::now();
    let o = run_to_end(&fx.job(name, &out), &[]);
    let took = t.elapsed();
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", show(&o));
    let r = Reference {
        table: std::fs::read(out.join("table.csv")).unwrap(),
        errors: std::fs::read(out.join("errors.jsonl")).unwrap(),
        results: results_without_timing(&out.join("results.jsonl")),
        hashes: manifest_hashes(&out.join("manifest.json")),
    };
    (r, took, o)
}

fn assert_same_as(reference: &Reference, out: &Path, what: &str) {
    assert_eq!(
        std::fs::read(out.join("table.csv")).unwrap(),
        reference.table,
        "{what}: table.csv differs"
    );
    assert_eq!(
        std::fs::read(out.join("errors.jsonl")).unwrap(),
        reference.errors,
        "{what}: errors.jsonl differs"
    );
    assert_eq!(
        results_without_timing(&out.join("results.jsonl")),
        reference.results,
        "{what}: results.jsonl differs"
    );
    assert_eq!(
        manifest_hashes(&out.join("manifest.json")),
        reference.hashes,
        "{what}: manifest hashes differ"
    );
}

#[test]
fn two_runs_give_identical_tables_and_manifest_hashes() {
    let fx = RunFixture::new(3, 60);
    let (a, took, o) = reference(&fx, "a");
    let stderr = String::from_utf8_lossy(&o.stderr);
    eprintln!(
        "first run {took:?}: {}",
        stderr.lines().rev().nth(1).unwrap_or("")
    );
    let b_out = fx.path("b");
    let o = run_to_end(&fx.job("b", &b_out), &[]);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", show(&o));
    assert_same_as(&a, &b_out, "second run");
    assert_eq!(a.results.len(), fx.inputs, "one results line per input");
    // The reproducible half names everything that decides the bytes.
    for k in [
        "git_revision",
        "model_sha256",
        "tokenizer_sha256",
        "prompt_sha256",
        "schema_sha256",
        "job_hash",
    ] {
        assert!(
            a.hashes[k].as_str().is_some_and(|s| !s.is_empty()),
            "{k}: {}",
            a.hashes
        );
    }
    // A different limit is a different job: other hashes, and nothing reused.
    let c_out = fx.path("c");
    let o = run_to_end(&fx.job("c", &c_out), &["--max-new-tokens", "59"]);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", show(&o));
    let c = manifest_hashes(&c_out.join("manifest.json"));
    assert_ne!(c["job_hash"], a.hashes["job_hash"]);
    assert_eq!(c["model_sha256"], a.hashes["model_sha256"]);
}

/// 20 trials: two array tasks (shards 0/2 and 1/2) run side by side into one output folder and
/// are killed with SIGKILL at a random moment (1-3 times in a row), then resumed to the end and
/// merged. The merged outputs must equal an uninterrupted unsplit run's, byte for byte.
#[test]
fn kill_9_at_random_moments_then_resume_gives_the_same_bytes() {
    let fx = RunFixture::new(4, 60);
    let (reference, t_ref, _) = reference(&fx, "ref");
    let seed = std::env::var("PARAMX_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("kill test: seed {seed} (PARAMX_TEST_SEED), uninterrupted run {t_ref:?}");
    let mut rng = Rng(seed);
    let (mut kills, mut mid_run, mut temp_left) = (0, 0, 0);
    let start = Instant::now();
    for trial in 0..20 {
        let out = fx.path(&format!("trial-{trial}"));
        let job = fx.job(&format!("trial-{trial}"), &out);
        for _ in 0..(trial % 3 + 1) {
            let mut tasks = [
                spawn_run(&job, &["--shard", "0/2"]),
                spawn_run(&job, &["--shard", "1/2"]),
            ];
            // Uniform over a task's run: startup, text, model, records, outputs.
            // Each task has about half the work of the unsplit reference run.
            std::thread::sleep(t_ref.mul_f64(0.6 * rng.next_f64()));
            for t in &mut tasks {
                kills += 1;
                if t.try_wait().unwrap().is_none() {
                    mid_run += 1;
                }
                let _ = t.kill();
                t.wait().unwrap();
            }
            records_are_whole(&out);
        }
        if let Ok(rd) = std::fs::read_dir(out.join("papers")) {
            temp_left += rd
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with('.')
                })
                .count();
        }
        for s in ["0/2", "1/2"] {
            let o = run_to_end(&job, &["--shard", s]);
            assert!(
                matches!(o.status.code(), Some(0 | 1)),
                "trial {trial} shard {s}: {}",
                show(&o)
            );
        }
        let m = merge(&out);
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("merge.json")).unwrap()).unwrap();
        assert!(
            report["missing"].as_array().unwrap().is_empty(),
            "trial {trial}: {}",
            show(&m)
        );
        assert!(
            report["duplicated"].as_array().unwrap().is_empty(),
            "trial {trial}: {}",
            show(&m)
        );
        assert!(
            report["missing_tasks"].as_array().unwrap().is_empty(),
            "trial {trial}: {}",
            show(&m)
        );
        assert_eq!(
            report["ok"].as_u64().unwrap() as usize + report["failed"].as_array().unwrap().len(),
            fx.inputs,
            "trial {trial}: every input exactly once"
        );
        // The broken PDF is a failed paper: merge says so with exit code 1.
        assert_eq!(m.status.code(), Some(1), "{}", show(&m));
        assert!(
            String::from_utf8_lossy(&m.stdout).contains("FAILED  broken.pdf"),
            "{}",
            show(&m)
        );
        assert_eq!(records_are_whole(&out), fx.inputs);
        assert_same_as(&reference, &out, &format!("trial {trial}"));
    }
    eprintln!(
        "kill test: 20 trials, {kills} SIGKILLs ({mid_run} while the task was still running), \
         {temp_left} temporary file(s) left by killed writers (ignored), all merged outputs \
         identical to the uninterrupted run; {:?} in all",
        start.elapsed()
    );
    assert!(
        mid_run > 0,
        "no kill landed inside a run: the test proved nothing"
    );
}

/// SIGUSR1 (what `--signal=B:USR1@s` delivers, forwarded by the sbatch script) stops the run
/// after at most one decode step: exit code 75, finished papers on disk, and a rerun finishes
/// the rest without redoing them.
#[test]
fn usr1_stops_with_code_75_and_the_rerun_completes() {
    let fx = RunFixture::new(6, 400);
    let out = fx.path("out");
    let job = fx.job("job", &out);
    let mut child = paramx()
        .arg("run")
        .arg("--config")
        .arg(&job)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the broken PDF's record and one paper's are on disk, so the stop lands mid-run.
    let deadline = Instant::now() + Duration::from_secs(600);
    while records_are_whole(&out) < 2 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before the signal"
        );
        assert!(Instant::now() < deadline, "no record after 10 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Instant::now();
    let st = std::process::Command::new("kill")
        .args(["-USR1", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(300),
            "no exit 5 minutes after USR1"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let latency = sent.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(75), "{stderr}");
    let partial = records_are_whole(&out);
    assert!(
        partial < fx.inputs,
        "all {partial} papers done: the signal stopped nothing"
    );
    assert!(stderr.contains("stopped by signal"), "{stderr}");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["run"]["counts"]["interrupted"], true);
    let ok_before = std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"status\":\"ok\""))
        .count();
    eprintln!(
        "USR1: exit 75 after {latency:?}; {partial} of {} records on disk",
        fx.inputs
    );

    let o = run_to_end(&job, &[]);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{ok_before} reused")),
        "finished papers must be reused: {err}"
    );
    assert_eq!(records_are_whole(&out), fx.inputs);
    assert_eq!(
        results_without_timing(&out.join("results.jsonl")).len(),
        fx.inputs
    );
}
