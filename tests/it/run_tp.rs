//! `paramx run` with tensor parallelism on the CPU (`--tp 2`: two ranks as threads of one
//! process, `tp::local`), end to end through the real binary.
//!
//! The model is the tiny random Qwen2 of `common::build()` as an f32 safetensors directory with
//! a long context (its byte-level tokenizer makes the prompt ~6k tokens). f32 and not the GGUF:
//! TP=2 sums each row-parallel dot product in two halves, which moves f32 logits by ~1e-6 —
//! too little to flip a greedy choice — while the quantized path re-quantizes each half of the
//! activations (differences ~1e-3 of the logits' spread: enough to flip a near-tie once in a
//! few hundred tokens, and these weights are random on every run). The quantized loader does
//! slice GGUF files for TP (`tests/engine_tp.rs`); the stop test below runs it.

use crate::common;
use crate::runfix;

use runfix::*;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The tiny model as an HF directory with a context long enough for the real prompt.
fn tiny_hf_long(dst: &Path) -> PathBuf {
    let tiny = common::build();
    let dir = dst.join("tiny-hf");
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(tiny.hf_dir().join(f), dir.join(f)).unwrap();
    }
    let mut cfg: serde_json::Value = serde_json::from_str(&common::config_json(false)).unwrap();
    cfg["max_position_embeddings"] = LONG_CONTEXT.into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    dir
}

/// The bundled sample paper and a broken PDF beside it.
fn sample_inputs(dst: &Path) -> PathBuf {
    let dir = dst.join("papers");
    std::fs::create_dir_all(&dir).unwrap();
    let sample = root().join(
        "data/sample/McDougle and Taylor - 2019 - Dissociable cognitive strategies for sensorimotor learning.pdf",
    );
    std::fs::copy(&sample, dir.join("sample.pdf")).unwrap();
    std::fs::write(
        dir.join("broken.pdf"),
        b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog",
    )
    .unwrap();
    dir
}

fn write_job(dir: &Path, name: &str, model: &Path, inputs: &Path, out: &Path) -> PathBuf {
    let text = format!(
        "[model]\npath = {:?}\n[hardware]\ndevice = \"cpu\"\n[limits]\nmax_input_tokens = 6000\n\
         max_new_tokens = 1500\nbatch = 1\n[io]\ninputs = [{:?}]\nout_dir = {:?}\nschema = {:?}\n",
        model,
        inputs,
        out,
        root().join("configs/schema.toml")
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// `results.jsonl` without what legitimately differs between the two runs: wall-clock timings,
/// and the job hash in each key (`hardware.tp` is part of the job, so records of a TP=2 run
/// are never reused by a TP=1 run).
fn results_comparable(path: &Path) -> Vec<serde_json::Value> {
    results_without_timing(path)
        .into_iter()
        .map(|mut v| {
            if let Some(k) = v["key"].as_object_mut() {
                k.remove("job_hash");
            }
            v
        })
        .collect()
}

/// Waits for `child`, failing the test (and killing it) if it has not ended after `limit`: a
/// rank that hangs must show up as a failure, not as a test that never ends.
fn wait_bounded(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("paramx did not end within {limit:?}: a rank hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_stderr(child: &mut std::process::Child) -> String {
    let mut s = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut s).unwrap();
    s
}

/// TP=2 on the CPU writes the same table and errors, byte for byte, and the same records (the
/// model's raw answers included) as TP=1; only one rank writes (one progress line per paper).
#[test]
fn tp2_on_the_cpu_writes_the_same_table_as_tp1() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_hf_long(d.path());
    let inputs = sample_inputs(d.path());
    let mut outs = Vec::new();
    for tp in [1, 2] {
        let out = d.path().join(format!("out-tp{tp}"));
        let job = write_job(d.path(), &format!("tp{tp}"), &model, &inputs, &out);
        let t = Instant::now();
        let o = run_to_end(&job, &["--tp", &tp.to_string()]);
        eprintln!("tp={tp}: {:.1} s", t.elapsed().as_secs_f64());
        assert_eq!(o.status.code(), Some(1), "broken.pdf failed\n{}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            err.matches("broken.pdf: FAILED").count(),
            1,
            "exactly one rank reports\n{err}"
        );
        assert_eq!(err.matches("sample.pdf").count(), 1, "{err}");
        assert!(err.contains(&format!("tp {tp}")), "{err}");
        outs.push(out);
    }
    let read = |out: &Path, f: &str| std::fs::read(out.join(f)).unwrap();
    let table = read(&outs[0], "table.csv");
    assert_eq!(
        String::from_utf8_lossy(&table),
        String::from_utf8_lossy(&read(&outs[1], "table.csv"))
    );
    assert_eq!(
        read(&outs[0], "errors.jsonl"),
        read(&outs[1], "errors.jsonl")
    );
    let (r1, r2) = (
        results_comparable(&outs[0].join("results.jsonl")),
        results_comparable(&outs[1].join("results.jsonl")),
    );
    assert_eq!(r1.len(), 2);
    assert_eq!(r1, r2);
    // The comparison is not vacuous: the model generated an answer (random weights: it
    // usually parses into a row; when it does not, the raw answer is in the error message,
    // compared above all the same).
    let sample = r1
        .iter()
        .find(|r| r["source_file"] == "sample.pdf")
        .unwrap();
    let outcome = &sample["outcome"];
    if outcome["status"] == "ok" {
        assert!(
            outcome["generated_tokens"].as_u64().unwrap() > 0,
            "{outcome}"
        );
        assert!(
            String::from_utf8_lossy(&table).lines().count() >= 2,
            "no row"
        );
    } else {
        assert_eq!(outcome["stage"], "answer", "{outcome}");
    }
    let m: serde_json::Value = serde_json::from_slice(&read(&outs[1], "manifest.json")).unwrap();
    assert_eq!(m["run"]["counts"]["papers"], 2, "{m}");
}

/// A rank that fails ends the whole job with its own error, at once: here rank 0 (the only
/// writer) cannot save a record because `OUT/papers` is a file, while rank 1 waits for it in
/// a collective. The job exits 2 naming rank 0 and the path; rank 1's consequential error
/// (its peer left) is not what is reported, and nobody waits out a timeout.
#[test]
fn a_failing_rank_ends_the_tp_job_with_its_error() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_hf_long(d.path());
    let inputs = sample_inputs(d.path());
    let out = d.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("papers"), b"not a folder").unwrap();
    let job = write_job(d.path(), "job", &model, &inputs, &out);
    let mut child = paramx()
        .args(["run", "--tp", "2", "--config"])
        .arg(&job)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The collectives' own timeout is 600 s; far less means the failure was not waited out.
    let status = wait_bounded(&mut child, Duration::from_secs(240));
    let err = read_stderr(&mut child);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("rank 0 of 2 failed"), "{err}");
    assert!(err.contains("papers"), "{err}");
    assert!(!err.contains("timed out"), "{err}");
    assert!(!err.contains("left the group"), "{err}");
}

/// SIGUSR1 during a TP=2 run: the ranks vote at the next decode step, all stop together, the
/// job exits 75 with no rank left waiting, and a rerun finishes the rest without redoing the
/// finished papers. Runs the quantized (GGUF) tiny model, so TP also goes through the sliced
/// quantized loader end to end.
#[test]
fn usr1_stops_every_rank_together_with_code_75() {
    let fx = RunFixture::new(4, 300);
    let out = fx.path("out");
    let job = fx.job("job", &out);
    let mut child = paramx()
        .args(["run", "--tp", "2", "--config"])
        .arg(&job)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The stderr pipe is drained on a thread, so a chatty run cannot block on it.
    let stderr = child.stderr.take().unwrap();
    let drain = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut { stderr }, &mut s).unwrap();
        s
    });
    // The broken PDF's record and one paper's on disk: the stop lands mid-run.
    let papers = out.join("papers");
    let count = || {
        std::fs::read_dir(&papers)
            .map(|rd| {
                rd.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| !e.file_name().to_string_lossy().starts_with('.'))
                })
                .count()
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    while count() < 2 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before the signal"
        );
        assert!(Instant::now() < deadline, "no record after 10 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = std::process::Command::new("kill")
        .args(["-USR1", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = wait_bounded(&mut child, Duration::from_secs(240));
    let err = drain.join().unwrap();
    assert_eq!(status.code(), Some(75), "{err}");
    assert!(err.contains("stopped by signal"), "{err}");
    let partial = count();
    assert!(partial < fx.inputs, "the signal stopped nothing\n{err}");
    let ok_before = std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"status\":\"ok\""))
        .count();

    let o = run_to_end(&job, &["--tp", "2"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    // Finished papers are reused (failed ones, the broken PDF included, are retried).
    assert!(
        err.contains(&format!("{ok_before} reused")),
        "{ok_before} finished before the stop\n{err}"
    );
    assert_eq!(count(), fx.inputs);
}

/// The shipped GPU job (`configs/gpu-72b-tp2.toml`, tp = 2 on "cuda") is a valid job file, and a
/// paramx built without NCCL refuses it at once with the reason, before touching its inputs.
#[test]
fn gpu_tp_job_without_nccl_is_refused_clearly() {
    if cfg!(feature = "nccl") {
        eprintln!("SKIP: this build has the nccl feature");
        return;
    }
    let o = paramx()
        .args(["run", "--config"])
        .arg(root().join("configs/gpu-72b-tp2.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("hardware.tp = 2 on \"cuda\" needs NCCL") && err.contains("--features nccl"),
        "{err}"
    );
}

/// A real model's GGUF dequantized to an f32 Hugging Face directory (the quantized 0.5B/1.5B
/// GGUFs cannot be split for TP=2: their Q4_K/Q6_K blocks of 256 do not divide the halves).
fn gguf_to_f32_hf(gguf: &Path, dir: &Path) {
    use candle_core::quantized::gguf_file;
    use candle_core::Device;
    let mut f = std::fs::File::open(gguf).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let cfg = paramx::model::Qwen2Config::from_gguf(&content).unwrap();
    let mut tensors = std::collections::HashMap::new();
    for name in content.tensor_infos.keys() {
        let t = content
            .tensor(&mut f, name, &Device::Cpu)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        let hf = match name.as_str() {
            "token_embd.weight" => "model.embed_tokens.weight".to_string(),
            "output_norm.weight" => "model.norm.weight".to_string(),
            "output.weight" => "lm_head.weight".to_string(),
            other => {
                let rest = other.strip_prefix("blk.").unwrap();
                let (i, rest) = rest.split_once('.').unwrap();
                let (g, kind) = rest.rsplit_once('.').unwrap();
                let m = match g {
                    "attn_q" => "self_attn.q_proj",
                    "attn_k" => "self_attn.k_proj",
                    "attn_v" => "self_attn.v_proj",
                    "attn_output" => "self_attn.o_proj",
                    "ffn_gate" => "mlp.gate_proj",
                    "ffn_up" => "mlp.up_proj",
                    "ffn_down" => "mlp.down_proj",
                    "attn_norm" => "input_layernorm",
                    "ffn_norm" => "post_attention_layernorm",
                    _ => panic!("unexpected tensor {other}"),
                };
                format!("model.layers.{i}.{m}.{kind}")
            }
        };
        tensors.insert(hf, t);
    }
    std::fs::create_dir_all(dir).unwrap();
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    let config = serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "max_position_embeddings": cfg.max_position_embeddings, "rope_theta": cfg.rope_theta,
        "rms_norm_eps": cfg.rms_norm_eps, "tie_word_embeddings": !tensors.contains_key("lm_head.weight"),
        "use_sliding_window": false, "hidden_act": "silu"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let tok = paramx::model::tokenizer::Tokenizer::from_gguf(&content).unwrap();
    tok.inner().save(dir.join("tokenizer.json"), false).unwrap();
    let template = match content.metadata.get("tokenizer.chat_template") {
        Some(gguf_file::Value::String(s)) => s.clone(),
        _ => panic!("{} has no chat template", gguf.display()),
    };
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::json!({"eos_token": "<|im_end|>", "chat_template": template}).to_string(),
    )
    .unwrap();
}

/// By hand, in release mode (minutes): the real 0.5B, dequantized to f32, on the sample paper
/// with TP=1 and TP=2, same table and errors bytes and same records.
/// `PARAMX_TP_GGUF=models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf cargo test --release
///  --test run_tp -- --ignored --nocapture`
#[test]
#[ignore = "minutes: run by hand with PARAMX_TP_GGUF set"]
fn real_model_tp2_matches_tp1() {
    let Some(gguf) = std::env::var_os("PARAMX_TP_GGUF").map(PathBuf::from) else {
        eprintln!("SKIP: set PARAMX_TP_GGUF to a Qwen2 GGUF");
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("hf-f32");
    let t = Instant::now();
    gguf_to_f32_hf(&gguf, &model);
    eprintln!("dequantized in {:.1} s", t.elapsed().as_secs_f64());
    let dir = d.path().join("papers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        root().join("data/sample/McDougle and Taylor - 2019 - Dissociable cognitive strategies for sensorimotor learning.pdf"),
        dir.join("sample.pdf"),
    )
    .unwrap();
    std::fs::write(
        dir.join("broken.pdf"),
        b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog",
    )
    .unwrap();
    let mut outs = Vec::new();
    for tp in [1, 2] {
        let out = d.path().join(format!("out-tp{tp}"));
        let job = d.path().join(format!("tp{tp}.toml"));
        std::fs::write(
            &job,
            format!(
                "[model]\npath = {model:?}\n[hardware]\ndevice = \"cpu\"\ntp = {tp}\n[limits]\n\
                 max_input_tokens = 2000\nmax_new_tokens = 400\n[io]\ninputs = [{dir:?}]\n\
                 out_dir = {out:?}\nschema = {:?}\n",
                root().join("configs/schema.toml")
            ),
        )
        .unwrap();
        let t = Instant::now();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_paramx"))
            .args(["run", "--config"])
            .arg(&job)
            .output()
            .unwrap();
        eprintln!(
            "tp={tp}: {:.1} s\n{}",
            t.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(o.status.code(), Some(1), "{}", show(&o));
        outs.push(out);
    }
    let read = |out: &Path, f: &str| std::fs::read(out.join(f)).unwrap();
    let table = String::from_utf8_lossy(&read(&outs[0], "table.csv")).into_owned();
    eprintln!("table.csv (tp=1):\n{table}");
    assert_eq!(table, String::from_utf8_lossy(&read(&outs[1], "table.csv")));
    assert_eq!(
        read(&outs[0], "errors.jsonl"),
        read(&outs[1], "errors.jsonl")
    );
    assert_eq!(
        results_comparable(&outs[0].join("results.jsonl")),
        results_comparable(&outs[1].join("results.jsonl"))
    );
}

/// By hand, for a check on GPUs: writes the tiny long-context model (HF directory) and the
/// sample inputs to `$PARAMX_TINY_OUT`, to be copied to a GPU host beside a `--features nccl`
/// binary. `PARAMX_TINY_OUT=dir cargo test --test it -- --ignored run_tp::write_tiny`
#[test]
#[ignore = "by hand: writes files for a GPU check"]
fn write_tiny_model_and_inputs_for_a_gpu_check() {
    let Some(out) = std::env::var_os("PARAMX_TINY_OUT").map(PathBuf::from) else {
        eprintln!("SKIP: set PARAMX_TINY_OUT");
        return;
    };
    std::fs::create_dir_all(&out).unwrap();
    let model = tiny_hf_long(&out);
    let inputs = sample_inputs(&out);
    eprintln!("wrote {} and {}", model.display(), inputs.display());
}
