//! End-to-end tests of `paramx run`: the real binary, the real sample paper, the real 0.5B model
//! when it is present (skipped with a visible message otherwise: `paramx fetch-model` or
//! `.ci/run` fetches it).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn sample_pdf() -> PathBuf {
    root().join("data/sample/McDougle and Taylor - 2019 - Dissociable cognitive strategies for sensorimotor learning.pdf")
}

fn small_model() -> Option<PathBuf> {
    let candidates = [
        std::env::var("PARAMX_TEST_MODEL").ok().map(PathBuf::from),
        Some(root().join("models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")),
    ];
    candidates.into_iter().flatten().find(|p| p.exists())
}

/// `paramx run --config <job>`, its output captured.
fn paramx_run(job: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_paramx"))
        .args(["run", "--config"])
        .arg(job)
        .output()
        .expect("run paramx")
}

fn write_job(dir: &Path, model: &Path, inputs: &[&Path], max_in: usize, max_new: usize) -> PathBuf {
    let inputs: Vec<String> = inputs
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    let job = format!(
        r#"[model]
path = {model:?}
[hardware]
device = "cpu"
[limits]
max_input_tokens = {max_in}
max_new_tokens = {max_new}
[io]
inputs = [{inputs}]
out_dir = "out"
schema = {schema:?}
gold = {gold:?}
"#,
        model = model.display().to_string(),
        inputs = inputs.join(", "),
        schema = root().join("configs/schema.toml").display().to_string(),
        gold = root().join("data/sample/gold.csv").display().to_string(),
    );
    let p = dir.join("job.toml");
    std::fs::write(&p, job).expect("write job");
    p
}

/// A one-page PDF whose content stream is `content`, flate-compressed.
fn hostile_pdf(path: &Path, content: &[u8]) {
    use lopdf::{dictionary, Document, Object, Stream};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let mut stream = Stream::new(dictionary! {}, content.to_vec());
    stream.compress().expect("compress");
    let content_id = doc.add_object(stream);
    let page_id = doc.add_object(dictionary! {
        "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
        "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(
            dictionary! { "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1 },
        ),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    doc.save(path).expect("save hostile pdf");
}

/// One good paper, one broken PDF and two hostile ones in one run: each bad one becomes exactly
/// one error record, the good one a full set of rows whose values all carry quotes found in the paper,
/// the exit code says something failed, and a rerun reuses the finished paper.
#[test]
fn run_one_paper_with_a_broken_pdf_beside_it() {
    let Some(model) = small_model() else {
        eprintln!(
            "SKIP: real 0.5B model not found (run `paramx fetch-model` or set PARAMX_TEST_MODEL)"
        );
        return;
    };
    let d = tempfile::tempdir().expect("tmp");
    let papers = d.path().join("papers");
    std::fs::create_dir_all(&papers).expect("mkdir");
    std::fs::copy(sample_pdf(), papers.join("sample.pdf")).expect("copy sample");
    std::fs::write(
        papers.join("broken.pdf"),
        b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog",
    )
    .expect("write broken");
    // Two hostile files: a content stream of two million `[`, and a decompression bomb.
    hostile_pdf(&papers.join("nested.pdf"), &b"[".repeat(2_000_000));
    hostile_pdf(&papers.join("bomb.pdf"), &vec![b' '; 300 << 20]);
    let job = write_job(d.path(), &model, &[&papers], 1500, 160);
    let out = paramx_run(&job);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "one paper failed -> exit 1\n{stderr}"
    );
    assert!(
        stderr.contains("broken.pdf"),
        "the failure names the file\n{stderr}"
    );

    let out_dir = d.path().join("out");
    let errors = std::fs::read_to_string(out_dir.join("errors.jsonl")).expect("errors.jsonl");
    assert_eq!(errors.lines().count(), 3, "{errors}");
    for bad in ["broken.pdf", "nested.pdf", "bomb.pdf"] {
        assert!(errors.contains(bad), "{bad}: {errors}");
    }

    let results = std::fs::read_to_string(out_dir.join("results.jsonl")).expect("results.jsonl");
    let good: serde_json::Value = results
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        .find(|r| r["source_file"] == "sample.pdf")
        .expect("record of the good paper");
    let outcome = &good["outcome"];
    assert_eq!(outcome["status"], "ok", "{outcome}");
    // Every question: the shared paper plus the question within the input budget, the answer
    // within max_new_tokens; the prompt and the verbatim answer are recorded.
    let prefix = outcome["prefix_tokens"].as_u64().expect("prefix tokens");
    let questions = outcome["questions"].as_array().expect("questions");
    assert!(questions.len() >= 4, "{outcome}");
    for q in questions {
        assert!(
            prefix + q["prompt_tokens"].as_u64().expect("tokens") <= 1500,
            "{q}"
        );
        assert!(
            q["generated_tokens"].as_u64().expect("tokens") <= 160,
            "{q}"
        );
        assert!(q["prompt"]
            .as_str()
            .expect("prompt")
            .contains("Sentences from the paper"));
        assert!(
            q["answer"].as_str().expect("answer").starts_with('{'),
            "{q}"
        );
    }
    assert_eq!(good["doi"], "10.1038/s41467-018-07941-0");
    // Every kept value's quote is in the paper's text at the recorded offsets, and states it.
    let doc: serde_json::Value = {
        let text = Command::new(env!("CARGO_BIN_EXE_paramx"))
            .args(["text", "--json"])
            .arg(papers.join("sample.pdf"))
            .output()
            .expect("paramx text");
        serde_json::from_slice(&text.stdout).expect("text json")
    };
    let text = doc["text"]
        .as_str()
        .or_else(|| doc[0]["text"].as_str())
        .expect("document text");
    let experiments = outcome["experiments"].as_array().expect("experiments");
    assert!(!experiments.is_empty(), "{outcome}");
    for e in experiments {
        for (field, v) in e["values"].as_object().expect("values") {
            let (s, t) = (
                v["span"]["start"].as_u64().expect("start") as usize,
                v["span"]["end"].as_u64().expect("end") as usize,
            );
            let found = text.get(s..t).expect("span inside the text");
            assert!(!found.trim().is_empty(), "{field}: empty evidence");
            let schema = paramx::schema::Schema::load_default().expect("schema");
            let f = schema.field(field).expect("a schema field");
            let value = v["value"].as_str().expect("value");
            assert!(
                paramx::run::evidence::support(f, value, v["quote"].as_str().expect("quote"))
                    .is_ok(),
                "{field} = {value:?} is not stated by its quote {:?}",
                v["quote"]
            );
        }
    }
    // The table is readable by eval and has one row per experiment.
    let table = std::fs::read_to_string(out_dir.join("table.csv")).expect("table");
    assert_eq!(table.lines().count(), 1 + experiments.len(), "{table}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("gold vs itself"),
        "the run scores against the job's gold"
    );

    // A rerun does no model work for the finished paper.
    let again = paramx_run(&job);
    let stderr2 = String::from_utf8_lossy(&again.stderr);
    assert!(stderr2.contains("already done"), "{stderr2}");
    assert_eq!(
        table,
        std::fs::read_to_string(out_dir.join("table.csv")).expect("table")
    );
}

/// A window that cannot hold the questions' fixed text with some paper is refused before the
/// model loads, with the number of tokens it needs, measured with the model's own tokenizer and
/// chat template (here a schema whose field description alone takes ~1,500 tokens).
#[test]
fn a_window_too_small_for_the_questions_is_refused_before_loading() {
    let Some(model) = small_model() else {
        eprintln!("SKIP: real 0.5B model not found");
        return;
    };
    let d = tempfile::tempdir().expect("tmp");
    let schema = std::fs::read_to_string(root().join("configs/schema.toml")).expect("schema");
    let long = "the number of people who took part ".repeat(200);
    let schema = schema.replacen(
        "description = \"Total number of participants in this experiment",
        &format!("description = \"{long}. Total number of participants in this experiment"),
        1,
    );
    let schema_path = d.path().join("schema.toml");
    std::fs::write(&schema_path, schema).expect("write schema");
    let job = write_job(d.path(), &model, &[&sample_pdf()], 1500, 100);
    let text = std::fs::read_to_string(&job).expect("job");
    let text = text.replace(
        &format!(
            "{:?}",
            root().join("configs/schema.toml").display().to_string()
        ),
        &format!("{:?}", schema_path.display().to_string()),
    );
    std::fs::write(&job, text).expect("job");
    let t0 = std::time::Instant::now();
    let out = paramx_run(&job);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("max_input_tokens = 1500") && stderr.contains("use at least"),
        "{stderr}"
    );
    assert!(
        !d.path().join("out/results.jsonl").exists(),
        "no paper was started"
    );
    eprintln!("refused in {:?}", t0.elapsed());
}

/// Bad job files and inputs fail before any model work, naming the file and the reason.
#[test]
fn bad_jobs_are_refused_with_clear_errors() {
    let d = tempfile::tempdir().expect("tmp");
    let missing_model = d.path().join("no-such-model.gguf");
    let job = write_job(d.path(), &missing_model, &[&sample_pdf()], 1500, 100);
    let out = paramx_run(&job);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-model.gguf") && err.contains("not found"),
        "{err}"
    );

    let job = write_job(
        d.path(),
        &missing_model,
        &[&d.path().join("nowhere")],
        1500,
        100,
    );
    let out = paramx_run(&job);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));

    std::fs::write(&job, "[model]\npath = 3\n").expect("write");
    let out = paramx_run(&job);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("job.toml"));
}

/// The model sees the paper's own sentences once (the shared prefix) and, after it, short
/// questions that show the sentences retrieved for their fields; the paper and any question fit
/// the token budget together, rendered by the model's own chat template.
#[test]
fn questions_follow_the_papers_text_within_the_budget() {
    let Some(model_path) = small_model() else {
        eprintln!(
            "SKIP: real 0.5B model not found (run `paramx fetch-model` or set PARAMX_TEST_MODEL)"
        );
        return;
    };
    let d = tempfile::tempdir().expect("tmp");
    let job_path = write_job(d.path(), &model_path, &[&sample_pdf()], 2000, 100);
    let job = paramx::run::job::JobConfig::load(&job_path).expect("job");
    let schema = paramx::schema::Schema::load(&job.io.schema).expect("schema");
    let model =
        paramx::model::load(&model_path, &paramx::model::ModelOptions::cpu()).expect("model");
    let runner = paramx::run::Runner::new(&job, &schema, &model, "test").expect("runner");
    let doc = paramx::pdf::extract_file(&sample_pdf(), &Default::default()).expect("text");
    let prep = runner.prepare(&doc).expect("questions");
    assert_eq!(
        prep.experiments.len(),
        4,
        "the sample paper's four experiments"
    );
    assert!(
        prep.packed.was_cut(),
        "a whole paper does not fit in 2000 tokens"
    );
    for s in &prep.suffixes {
        assert!(prep.prefix.len() + s.len() <= 2000);
    }
    // Decoded with the special tokens, to see the chat template's markers.
    let decode = |ids: &[u32]| model.tokenizer.inner().decode(ids, false).expect("decode");
    let prefix = decode(&prep.prefix);
    assert!(
        prefix.contains("<|im_start|>user"),
        "Qwen chat template applied"
    );
    let title = doc.title.clone().expect("title");
    assert!(
        prefix.contains(&title),
        "title {title:?} not in the shared prefix"
    );
    let part = prep
        .questions
        .iter()
        .find(|q| q.group == "participants")
        .expect("a participants question");
    assert!(part.text.contains("- n_total:"));
    assert!(part.text.contains("[1] "), "numbered sentences shown");
    let suffix = decode(&prep.suffixes[0]);
    assert!(suffix.contains("QUESTION") && suffix.contains("<|im_start|>assistant"));
}

/// A GPU job that cannot fit is refused by the memory plan before anything is loaded, with each
/// term named; nothing falls back to the CPU.
#[test]
fn infeasible_gpu_job_is_refused_before_loading() {
    let d = tempfile::tempdir().expect("tmp");
    let model = d.path().join("qwen72b");
    std::fs::create_dir_all(&model).expect("mkdir");
    std::fs::copy(
        root().join("configs/models/qwen2.5-72b-instruct.json"),
        model.join("config.json"),
    )
    .expect("config");
    let job = write_job(d.path(), &model, &[&sample_pdf()], 16384, 1024);
    let text = std::fs::read_to_string(&job)
        .expect("job")
        .replace("device = \"cpu\"", "device = \"cuda\"\ngpu = \"h100-80gb\"");
    std::fs::write(&job, text).expect("write");
    let out = paramx_run(&job);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not fit"), "{err}");
    assert!(err.contains("weights") && err.contains("over by"), "{err}");
    assert!(!d.path().join("out/papers").exists(), "nothing was run");
}
