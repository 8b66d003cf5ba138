//! The review page as `paramx run` leaves it: written beside the records as the papers finish
//! (a split run's tasks each listing their PDFs in their own `sources.json`), and rendered
//! again by `paramx report` from the records alone. On the tiny model of `common/runfix.rs`.

use crate::runfix;

use runfix::*;

/// The page's embedded data (the JSON between the data script's tags), without its time stamp.
fn page_data(html: &str) -> serde_json::Value {
    let open = "<script type=\"application/json\" id=\"paramx-data\">";
    let start = html.find(open).expect("data script") + open.len();
    let end = start + html[start..].find("</script>").expect("end of data");
    let mut v: serde_json::Value = serde_json::from_str(&html[start..end]).expect("page JSON");
    v["generated_utc"] = serde_json::Value::Null;
    v
}

#[test]
fn split_run_writes_the_review_page_and_report_renders_it_again() {
    let fx = RunFixture::new(2, 24);
    let out = fx.path("out");
    let job = fx.job("job", &out);
    for shard in ["0/2", "1/2"] {
        let o = run_to_end(&job, &["--shard", shard]);
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "{shard}: {}",
            show(&o)
        );
    }
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html after the run");
    let data = page_data(&html);
    let files: Vec<&str> = data["papers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["file"].as_str().unwrap())
        .collect();
    // Both tasks' papers, sorted by file name; the broken PDF shown with its error.
    assert_eq!(
        files,
        ["broken.pdf", "paper-00.pdf", "paper-01.pdf"],
        "{data}"
    );
    assert!(data["papers"][0]["error"]["message"].is_string());
    for p in &data["papers"].as_array().unwrap()[1..] {
        let link = p["pdf"].as_str().expect("a link to the PDF");
        assert!(link.starts_with("../pdfs/paper-0"), "{link}");
    }
    let shards = std::fs::read_dir(out.join("shards")).unwrap().count();
    assert_eq!(shards, 2);
    for e in std::fs::read_dir(out.join("shards")).unwrap() {
        assert!(e.unwrap().path().join("sources.json").is_file());
    }

    let o = paramx().arg("report").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let again = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(
        page_data(&again),
        data,
        "the records alone give the same page"
    );

    // Elsewhere, the links still point at the PDFs.
    let elsewhere = fx.path("pages/r.html");
    std::fs::create_dir_all(elsewhere.parent().unwrap()).unwrap();
    let o = paramx()
        .arg("report")
        .arg(&out)
        .arg("--out")
        .arg(&elsewhere)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let moved = page_data(&std::fs::read_to_string(&elsewhere).unwrap());
    assert_eq!(moved["papers"][1]["pdf"], "../pdfs/paper-00.pdf");
}

/// On a terminal (`script` gives the run a pseudo-terminal) the run draws the progress bar;
/// in a pipe (every other test here) it prints the plain lines.
#[test]
fn a_terminal_gets_the_progress_bar_and_a_pipe_the_plain_lines() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: util-linux `script` not installed");
        return;
    }
    let fx = RunFixture::new(1, 8);
    let job = fx.job("job", &fx.path("out"));
    let cmd = format!(
        "RAYON_NUM_THREADS=1 {:?} run --config {:?}",
        env!("CARGO_BIN_EXE_paramx"),
        job
    );
    let o = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SLURM_ARRAY_TASK_COUNT")
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&o.stdout);
    assert!(tty.contains("papers · ETA"), "no bar on a terminal:\n{tty}");
    assert!(tty.contains("[2/2]"), "paper lines above the bar:\n{tty}");
    let o = run_to_end(&job, &[]);
    let piped = String::from_utf8_lossy(&o.stderr);
    assert!(!piped.contains("ETA"), "a bar in a log:\n{piped}");
    assert!(piped.contains("[1/2]"), "{piped}");
}
