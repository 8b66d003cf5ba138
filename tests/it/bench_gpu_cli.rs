//! `paramx bench-gpu` end to end on a tiny random model on the CPU: the same code path the GPU
//! run takes (random weights through `Qwen2::load`, chunked prefill, decode, plan comparison),
//! checked for well-formed output. No speed is asserted (benchmarks never are).

use std::process::Command;

#[test]
fn tiny_cpu_run_writes_a_complete_report() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_paramx"))
        .args([
            "bench-gpu",
            "--shape",
            "tiny",
            "--cpu",
            "--memory-prompts",
            "40,100",
            "--memory-decode",
            "3",
            "--prefill-prompts",
            "64",
            "--prefill-repeats",
            "2",
            "--decode-batches",
            "1,3",
            "--decode-context",
            "20",
            "--decode-steps",
            "4",
            "--prefill-chunk",
            "32",
            "--query-block",
            "8",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("| decode batch |"), "{stdout}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["logits_finite"], true);
    let mem = r["memory"].as_array().unwrap();
    assert_eq!(mem.len(), 2);
    for m in mem {
        // The CPU has no device memory to read; the plan's side is still computed.
        assert!(m["measured_peak_bytes"].is_null());
        assert!(m["planned_without_nccl_bytes"].as_u64().unwrap() > 0);
        assert!(m["prefill_secs"].as_f64().unwrap() > 0.0);
    }
    let pre = &r["prefill"][0];
    assert_eq!(pre["secs_all"].as_array().unwrap().len(), 2);
    assert!(pre["tokens_per_s"].as_f64().unwrap() > 0.0);
    let dec = r["decode"].as_array().unwrap();
    assert_eq!(dec.len(), 2);
    for (d, b) in dec.iter().zip([1.0, 3.0]) {
        assert_eq!(d["batch"].as_f64().unwrap(), b);
        assert_eq!(d["ms_all"].as_array().unwrap().len(), 4);
        let (ms, tps) = (
            d["ms_per_step_median"].as_f64().unwrap(),
            d["tokens_per_s"].as_f64().unwrap(),
        );
        assert!((tps - b * 1e3 / ms).abs() / tps < 1e-9);
        assert!(d["bytes_per_step"].as_f64().unwrap() > 0.0);
    }
    assert!(r["ceilings"]["matmul_tflops"].as_f64().unwrap() > 0.0);
}

#[test]
fn tp_over_gpus_is_refused_where_it_cannot_run() {
    // `--tp 2` splits the 72B model over GPUs: on the CPU, or with the tiny shape, it is an
    // error that says what it needs, before anything is loaded.
    for extra in [&["--cpu"][..], &["--shape", "tiny"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_paramx"))
            .args(["bench-gpu", "--tp", "2"])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains("--shape rank0-72b-tp2 and no --cpu"),
            "{stderr}"
        );
    }
}
