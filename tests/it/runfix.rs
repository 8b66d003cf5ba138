//! Fixture for the end-to-end `paramx run` tests (resume, signals, merge, SLURM): a folder of
//! small generated PDFs (plus one broken file), a real Qwen2 model and a job file.
//!
//! The model is the tiny random Qwen2 of `common::build()` (real engine, real tokenizer and
//! grammar, random weights) re-written with a long context, because its byte-level tokenizer
//! turns the ~4 KB of instructions into ~4k tokens. With it a run takes seconds, so a test can
//! afford dozens of runs; its answers are random but deterministic (greedy decoding), which is
//! all crash-safety and reproducibility need. `PARAMX_TEST_MODEL=path.gguf` runs the same tests
//! on another model (e.g. the 0.5B) when there is time.
#![allow(dead_code)]

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::Device;
use lopdf::{dictionary, Document, Object, Stream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Context length of the re-written tiny model.
pub const LONG_CONTEXT: u32 = 16384;

/// A valid one-page PDF with these lines of Helvetica text.
pub fn text_pdf(lines: &[String]) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding",
        "FirstChar" => 32, "Widths" => vec![Object::Integer(500); 224],
    });
    let resources_id = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font_id } });
    let mut content = String::from("BT /F1 10 Tf 72 720 Td 14 TL\n");
    for l in lines {
        let escaped = l
            .replace('\\', "\\\\")
            .replace('(', "\\(")
            .replace(')', "\\)");
        content.push_str(&format!("({escaped}) Tj T*\n"));
    }
    content.push_str("ET\n");
    let content_id = doc.add_object(Stream::new(dictionary! {}, content.into_bytes()));
    let page_id = doc.add_object(dictionary! {
        "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
        "Resources" => resources_id, "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(
            dictionary! { "Type" => "Pages", "Kids" => vec![Object::from(page_id)], "Count" => 1 },
        ),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out).expect("save pdf");
    out
}

/// Paper `i`: a title, an abstract and a methods section with numbers that differ per paper.
pub fn paper_lines(i: usize) -> Vec<String> {
    vec![
        format!("Visuomotor adaptation study number {i}"),
        "Abstract".into(),
        format!(
            "We rotated the cursor by {} degrees and measured hand angle.",
            15 + 5 * i
        ),
        "Methods".into(),
        format!(
            "Participants. {} right-handed adults took part in experiment 1.",
            10 + i
        ),
        format!(
            "Each made {} reaches to 8 targets with a stylus.",
            100 + 10 * i
        ),
        "Results".into(),
        "Adaptation was complete after about 40 trials.".into(),
    ]
}

/// Writes the tiny random model with a long context to `dst`.
pub fn tiny_long_context_model(dst: &Path) {
    let tiny = crate::common::build();
    let mut f = std::fs::File::open(tiny.gguf_path()).expect("open tiny gguf");
    let content = gguf_file::Content::read(&mut f).expect("read tiny gguf");
    let mut md: Vec<(String, Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| {
            let v = if k == "qwen2.context_length" {
                Value::U32(LONG_CONTEXT)
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    md.sort_by(|a, b| a.0.cmp(&b.0));
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let tensors: Vec<(String, candle_core::quantized::QTensor)> = names
        .into_iter()
        .map(|n| {
            (
                n.clone(),
                content.tensor(&mut f, n, &Device::Cpu).expect("tensor"),
            )
        })
        .collect();
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &candle_core::quantized::QTensor)> =
        tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::fs::File::create(dst).expect("create gguf");
    gguf_file::write(&mut out, &md_refs, &t_refs).expect("write gguf");
}

pub struct RunFixture {
    pub dir: tempfile::TempDir,
    pub model: PathBuf,
    pub pdfs: PathBuf,
    /// Number of input files (the broken one included).
    pub inputs: usize,
    pub max_input_tokens: usize,
    pub max_new_tokens: usize,
}

impl RunFixture {
    /// `papers` good PDFs and one broken file, a model, limits suited to the model.
    pub fn new(papers: usize, max_new_tokens: usize) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (model, max_input_tokens) = match std::env::var_os("PARAMX_TEST_MODEL") {
            Some(m) => (PathBuf::from(m), 1200),
            None => {
                let m = dir.path().join("tiny-long.gguf");
                tiny_long_context_model(&m);
                // Byte-level tokens: the instructions alone are ~4k; leave room for the paper.
                (m, 6000)
            }
        };
        let pdfs = dir.path().join("pdfs");
        std::fs::create_dir_all(&pdfs).expect("mkdir");
        for i in 0..papers {
            std::fs::write(
                pdfs.join(format!("paper-{i:02}.pdf")),
                text_pdf(&paper_lines(i)),
            )
            .expect("write pdf");
        }
        std::fs::write(
            pdfs.join("broken.pdf"),
            b"%PDF-1.4\nthis is not a PDF body\n",
        )
        .expect("write broken");
        RunFixture {
            dir,
            model,
            pdfs,
            inputs: papers + 1,
            max_input_tokens,
            max_new_tokens,
        }
    }

    /// Writes a job file for output folder `out` and returns its path.
    pub fn job(&self, name: &str, out: &Path) -> PathBuf {
        let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/schema.toml");
        let text = format!(
            "[model]\npath = {:?}\n[hardware]\ndevice = \"cpu\"\n[limits]\nmax_input_tokens = {}\nmax_new_tokens = {}\nbatch = 1\n[io]\ninputs = [{:?}]\nout_dir = {:?}\nschema = {:?}\n",
            self.model, self.max_input_tokens, self.max_new_tokens, self.pdfs, out, schema
        );
        let p = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&p, text).expect("write job");
        p
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

/// `paramx` with the test's environment (no stray SLURM array variables).
pub fn paramx() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_paramx"));
    // One thread: the tiny model's matrices are too small to split, and on a busy 2-core
    // machine the pool's spinning costs 5x the work (measured).
    if std::env::var_os("PARAMX_TEST_MODEL").is_none() {
        c.env("RAYON_NUM_THREADS", "1");
    }
    for v in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_MAX",
        "SLURM_ARRAY_TASK_STEP",
    ] {
        c.env_remove(v);
    }
    c
}

pub fn run_to_end(job: &Path, extra: &[&str]) -> Output {
    paramx()
        .arg("run")
        .arg("--config")
        .arg(job)
        .args(extra)
        .output()
        .expect("spawn paramx")
}

pub fn merge(out: &Path) -> Output {
    paramx()
        .args(["merge", "--out"])
        .arg(out)
        .output()
        .expect("spawn paramx merge")
}

pub fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `results.jsonl` with each record's wall-clock `timing` removed (the only field that differs
/// between two runs of the same job; see `run::record::Timing`).
pub fn results_without_timing(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("read results.jsonl")
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("jsonl line");
            if let Some(o) = v.as_object_mut() {
                o.remove("timing");
            }
            v
        })
        .collect()
}

/// The manifest's reproducibility half.
pub fn manifest_hashes(path: &Path) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("read manifest")).expect("manifest");
    v["hashes"].clone()
}
