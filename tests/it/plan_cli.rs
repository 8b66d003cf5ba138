//! `paramx plan` end to end: Qwen2.5-72B over two GPUs of each supported type, numbers checked
//! against hand arithmetic from docs/memory.md, and refused jobs.

use std::path::PathBuf;
use std::process::{Command, Output};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn config(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("configs/models")
        .join(name)
}

fn plan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paramx"))
        .arg("plan")
        .arg("--model-config")
        .arg(config("qwen2.5-72b-instruct.json"))
        .args(args)
        .output()
        .expect("run paramx")
}

fn json(args: &[&str]) -> (serde_json::Value, i32) {
    let mut all = args.to_vec();
    all.push("--json");
    let out = plan(&all);
    let v = serde_json::from_slice(&out.stdout).expect("plan --json prints JSON");
    (v, out.status.code().unwrap_or(-1))
}

fn u(v: &serde_json::Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(|x| x.as_u64())
        .unwrap_or_else(|| panic!("{path} missing in {v}"))
}

/// Per-rank weights of Qwen2.5-72B at TP=2, by hand: 80 layers of rank shapes plus half the
/// embedding and half the lm_head, plus the final norm, 2 bytes each.
fn weights_tp2() -> u64 {
    let layer = 8192 * 4096 + 4096          // q (32 heads) + bias
        + 2 * (8192 * 512 + 512)            // k, v (4 KV heads) + bias
        + 4096 * 8192                        // o (row parallel)
        + 3 * 8192 * 14784                   // gate, up, down
        + 2 * 8192; // two RMSNorms
    (80 * layer + 2 * 76032 * 8192 + 8192) * 2
}

#[test]
fn qwen72b_tp2_on_each_gpu_type() {
    let usable = [
        ("a100-80gb", 81_050 * MIB),
        ("h100-80gb", 85_017_493_504),
        ("h200", 150_109_880_320),
    ];
    for (gpu, bytes) in usable {
        let (v, code) = json(&["--tp", "2", "--gpu", gpu]);
        assert_eq!(code, 0, "{gpu}: {v}");
        assert_eq!(v["fits"], true);
        let b = "/plan/budget";
        assert_eq!(u(&v, &format!("{b}/usable")), bytes);
        // 67.7 GiB of weights per rank; 36.35 B parameters.
        assert_eq!(u(&v, &format!("{b}/weights")), weights_tp2());
        assert_eq!((weights_tp2() as f64 / GIB as f64 * 10.0).round(), 677.0);
        // KV: (16384 + 1024) tokens x 160 KiB.
        assert_eq!(u(&v, &format!("{b}/kv_cache")), 17408 * 160 * 1024);
        // Prefill peak of a 2048-token chunk in 512-row blocks over 16384 keys (memory.rs).
        assert_eq!(u(&v, &format!("{b}/activation_peak")), GIB + 708 * MIB);
        assert_eq!(u(&v, &format!("{b}/activation_reserved")), 4 * GIB);
        assert_eq!(u(&v, &format!("{b}/nccl_buffers")), 640 * MIB);
        let total = u(&v, &format!("{b}/total"));
        assert_eq!(
            total,
            weights_tp2()
                + 17408 * 160 * 1024
                + 4 * GIB
                + 8 * MIB
                + (1344 + 128 + 640) * MIB
                + (17408 * 160 * 1024 + 4 * GIB) / 20
        );
        assert!(total < bytes);
        // The table says the same.
        let out = plan(&["--tp", "2", "--gpu", gpu]);
        let table = String::from_utf8(out.stdout).unwrap();
        assert!(
            table.contains(&format!("on 2 x {gpu}, tensor parallel 2")),
            "{table}"
        );
        assert!(table.contains("36.35 B params; 32 of 64 query heads, 4 of 8 KV heads"));
        assert!(table.contains("67.71     72707522560"), "{table}");
        assert!(table.contains("160.0 KiB"), "{table}");
        assert!(table.contains("verdict: fits"), "{table}");
    }
    // Only the H200 has room for a larger batch once the headroom may grow.
    let (a100, _) = json(&["--tp", "2", "--gpu", "a100-80gb"]);
    let (h200, _) = json(&["--tp", "2", "--gpu", "h200"]);
    assert_eq!(u(&a100, "/plan/largest/raising_headroom/batch"), 1);
    assert!(u(&h200, "/plan/largest/raising_headroom/batch") > 5);
}

#[test]
fn infeasible_job_is_refused_with_each_term() {
    let out = plan(&[
        "--tp",
        "2",
        "--gpu",
        "h100-80gb",
        "--max-input-tokens",
        "30000",
        "--max-new-tokens",
        "2000",
        "--batch",
        "4",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stdout.contains("verdict: DOES NOT FIT"), "{stdout}");
    assert!(stdout.contains("OVER BY"), "{stdout}");
    assert!(
        stderr.contains("the job does not fit on h100-80gb with 2 rank(s), per GPU:"),
        "{stderr}"
    );
    // 4 x 32000 x 160 KiB = 19.53 GiB of KV cache.
    assert!(stderr.contains("KV cache 19.53 GiB"), "{stderr}");
    assert!(stderr.contains("- memory: needs"), "{stderr}");
    assert!(
        stderr.contains("- activations: the prefill peak"),
        "{stderr}"
    );
    assert!(!stderr.contains("- context"), "{stderr}");
}

#[test]
fn one_gpu_is_not_enough_for_72b() {
    let (v, code) = json(&["--tp", "1", "--gpu-mem-gib", "80"]);
    assert_eq!(code, 1);
    assert_eq!(v["fits"], false);
    assert_eq!(v["infeasible"]["overruns"][0]["constraint"], "memory");
    // 145.4 GB of weights on one rank.
    assert_eq!(u(&v, "/plan/budget/weights"), 72_706_203_648 * 2);
}

#[test]
fn usage_errors_exit_2_naming_the_problem() {
    let out = plan(&["--tp", "2"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--gpu"), "{err}");

    let out = plan(&["--tp", "3", "--gpu", "h200"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("num_attention_heads = 64 cannot be split evenly over 3 ranks"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("config.json");
    std::fs::write(&bad, "{\"hidden_size\": 8}").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_paramx"))
        .args(["plan", "--gpu", "h200", "--model-config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&bad.display().to_string()) && err.contains("missing field"),
        "{err}"
    );
}

#[test]
fn small_model_fits_one_small_card() {
    let out = Command::new(env!("CARGO_BIN_EXE_paramx"))
        .args(["plan", "--gpu-mem-gib", "8", "--tp", "2", "--model-config"])
        .arg(config("qwen2.5-0.5b-instruct.json"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("(0.49 B params, bf16)"), "{table}");
    assert!(
        table.contains("7 of 14 query heads, 1 of 2 KV heads"),
        "{table}"
    );
}
