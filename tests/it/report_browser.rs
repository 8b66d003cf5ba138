//! The review page in a real browser: headless Chromium (Debian's `chromium`; `.ci/run`
//! installs it) opens the `report.html` that `paramx report` writes for constructed records, and
//! a check script appended to a copy of the page drives it as a reader would:
//! - every value in the tables, clicked, shows its quote (highlighted in its passage), its page
//!   and a link opening the PDF at that page;
//! - text from a hostile PDF stays text (no element or script of it runs);
//! - a correction typed into the page and a value cleared there, exported as CSV, is a gold
//!   table that `paramx eval` reads: scored against itself it gives F1 1.000, and the run's
//!   own table scored against it misses exactly the corrected cells.
//!
//! The script writes its findings into the DOM (hex-encoded), `--dump-dom` prints the DOM, and
//! this test reads them back: no Node, no WebDriver. Prints SKIP when Chromium is absent.

use paramx::report::testdata;

use paramx::run::record::PaperRecord;
use paramx::run::store::RecordStore;
use paramx::schema::Schema;
use paramx::table::Table;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn chromium() -> Option<PathBuf> {
    if Path::new("/usr/bin/chromium").is_file() {
        return Some("/usr/bin/chromium".into());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| [d.join("chromium"), d.join("chromium-browser")])
        .find(|p| p.is_file())
}

fn paramx() -> Command {
    Command::new(env!("CARGO_BIN_EXE_paramx"))
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `cmd`, killing it after `limit` (a browser that hangs must not hang the test).
fn run_with_limit(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let start = Instant::now();
    let mut out = std::thread::spawn({
        let mut so = child.stdout.take().expect("stdout");
        move || {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut so, &mut b).ok();
            b
        }
    });
    let err = std::thread::spawn({
        let mut se = child.stderr.take().expect("stderr");
        move || {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut se, &mut b).ok();
            b
        }
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("chromium ran over {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::mem::replace(&mut out, std::thread::spawn(Vec::new))
        .join()
        .unwrap_or_default();
    Output {
        status,
        stdout,
        stderr: err.join().unwrap_or_default(),
    }
}

/// Drives the page with the check script and returns (result JSON, exported CSV).
const CHECK: &str = r##"<script>
(function () {
  var api = window.paramxReport, data = api.data, out = { checked: 0, failures: [] };
  function fail(what) { out.failures.push(what); }
  document.querySelectorAll("td.cell").forEach(function (td) {
    var p = +td.dataset.p, r = +td.dataset.r, c = +td.dataset.c;
    var paper = data.papers[p], cell = paper.rows[r].cells[c];
    var where = paper.file + " row " + r + " " + data.columns[c].name;
    if (!cell.v) return;
    out.checked++;
    if (td.querySelector(".v").textContent !== cell.v) fail(where + ": cell text");
    if (!cell.ev) { fail(where + ": a value without evidence"); return; }
    td.click();
    var d = document.getElementById("detail");
    var mark = d.querySelector("mark.quote");
    var want = paper.passages[cell.ev.passage].quote;
    if (!want || !mark || mark.textContent !== want) fail(where + ": quote not shown");
    if (!d.querySelector("blockquote.passage") || d.querySelector("blockquote.passage").textContent.indexOf(want) < 0) fail(where + ": passage");
    var page = d.querySelector(".page");
    if (cell.ev.page) {
      if (!page || page.textContent !== "page " + cell.ev.page) fail(where + ": page not shown");
      var a = d.querySelector("a.pdfpage");
      if (paper.pdf && (!a || a.getAttribute("href") !== paper.pdf + "#page=" + cell.ev.page)) fail(where + ": PDF link");
    } else if (!page || page.textContent !== "page unknown") fail(where + ": unknown page not said");
  });
  // Corrections through the page's own controls, as a reader makes them.
  function find(file, exp, col) {
    var p = data.papers.findIndex(function (x) { return x.file === file; });
    var r = data.papers[p].rows.findIndex(function (x) { return x.experiment === exp && !x.gold_only; });
    var c = data.columns.findIndex(function (x) { return x.name === col; });
    return document.querySelector('td.cell[data-p="' + p + '"][data-r="' + r + '"][data-c="' + c + '"]');
  }
  var td = find("smith.pdf", 1, "n_total");
  td.click();
  var input = document.querySelector("#detail input.fix");
  input.value = "25";
  document.querySelector("#detail button.correct").click();
  if (td.querySelector(".v").textContent !== "25") fail("corrected value not shown");
  find("smith.pdf", 2, "perturbation_schedule").click();
  document.querySelector("#detail button.clear").click();
  find("smith-b.pdf", 1, "n_total").click();
  document.querySelector("#detail button.accept").click();
  out.reviewed = document.getElementById("fixcount").textContent;
  out.pwned = !!window.pwned || !!document.getElementById("pwned") || document.querySelectorAll("img").length > 0;
  out.cells = document.querySelectorAll("td.cell").length;
  function hex(s) {
    return Array.from(new TextEncoder().encode(s)).map(function (b) { return (b < 16 ? "0" : "") + b.toString(16); }).join("");
  }
  var a = document.createElement("pre"); a.id = "check-result"; a.textContent = hex(JSON.stringify(out));
  var b = document.createElement("pre"); b.id = "check-csv"; b.textContent = hex(api.exportCsv());
  document.body.appendChild(a); document.body.appendChild(b);
})();
</script>
</body>"##;

fn between<'a>(dom: &'a str, id: &str) -> &'a str {
    let open = format!("<pre id=\"{id}\">");
    let start = dom.find(&open).unwrap_or_else(|| {
        panic!(
            "no #{id} in the dumped DOM:\n{}",
            &dom[..dom.len().min(3000)]
        )
    }) + open.len();
    let end = start + dom[start..].find("</pre>").expect("closing pre");
    &dom[start..end]
}

#[test]
fn review_page_in_chromium_shows_evidence_and_round_trips_corrections() {
    let Some(browser) = chromium() else {
        eprintln!("SKIP: chromium not installed (apt-get install chromium)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let pdfs = dir.path().join("pdfs");
    std::fs::create_dir_all(&pdfs).unwrap();
    std::fs::write(pdfs.join("smith.pdf"), b"%PDF-1.4 stand-in").unwrap();
    let records: Vec<PaperRecord> = testdata::records();
    let store = RecordStore::new(&out);
    for r in &records {
        store.save(r).unwrap();
    }
    let doc: paramx::pdf::Document = testdata::document();
    paramx::pdf::cache::store(&out.join("text-cache"), &doc).unwrap();
    let schema = Schema::load_default().unwrap();
    paramx::run::output::write_outputs(
        &schema,
        &records,
        &paramx::run::output::OutputPaths::in_dir(&out),
    )
    .unwrap();
    let gold = dir.path().join("gold.csv");
    std::fs::write(&gold, testdata::gold_csv()).unwrap();

    let t = Instant::now();
    let o = paramx()
        .arg("report")
        .arg(&out)
        .arg("--gold")
        .arg(&gold)
        .arg("--input")
        .arg(&pdfs)
        .arg("--job-hash")
        .arg("job1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    eprintln!("paramx report: {:.2} s", t.elapsed().as_secs_f64());
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(page.contains("../pdfs/smith.pdf"), "relative PDF link");
    // The check script goes into a copy; the page itself carries no test code.
    let checked = out.join("check.html");
    std::fs::write(&checked, page.replacen("</body>", CHECK, 1)).unwrap();

    let profile = dir.path().join("profile");
    let t = Instant::now();
    let o = run_with_limit(
        Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--virtual-time-budget=5000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--dump-dom")
            .arg(format!("file://{}", checked.display())),
        Duration::from_secs(60),
    );
    eprintln!("chromium load + checks: {:.2} s", t.elapsed().as_secs_f64());
    let dom = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", show(&o));

    let result: serde_json::Value =
        serde_json::from_slice(&hex::decode(between(&dom, "check-result")).unwrap()).unwrap();
    eprintln!("page checks: {result}");
    assert_eq!(result["failures"], serde_json::json!([]), "{result}");
    // smith.pdf: 3 + 4 values in shown columns, smith-b.pdf: 1.
    assert_eq!(result["checked"], 8, "{result}");
    assert_eq!(result["pwned"], false, "hostile text ran as markup");
    assert_eq!(result["reviewed"], "3 reviewed cell(s)");

    let csv = hex::decode(between(&dom, "check-csv")).unwrap();
    let corrected = dir.path().join("corrected-gold.csv");
    std::fs::write(&corrected, &csv).unwrap();
    let table = Table::from_bytes(&corrected, &csv).unwrap();
    assert_eq!(
        table.headers(),
        schema.column_names().as_slice(),
        "the gold's layout"
    );
    let rows: Vec<(&str, &str, &str)> = table
        .rows()
        .iter()
        .map(|r| {
            (
                table.get(r, "study_id"),
                table.get(r, "n_total"),
                table.get(r, "perturbation_schedule"),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("Smith2020", "12", ""),
            ("SmithB2020EXP1", "25", "abrupt"),
            ("SmithB2020EXP2", "24", ""),
        ]
    );
    let hostile_row = &table.rows()[2];
    assert_eq!(
        table.get(hostile_row, "population_type"),
        testdata::HOSTILE,
        "exported as it was"
    );

    // The corrected table is a gold `paramx eval` reads: against itself, F1 1.000 (exit 0).
    let o = paramx()
        .args(["eval", "--gold"])
        .arg(&corrected)
        .arg("--pred")
        .arg(&corrected)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("1.000"), "{text}");
    // The run's own table against it: the corrected and the cleared cells differ, no other.
    let o = paramx()
        .args(["eval", "--mismatches", "--gold"])
        .arg(&corrected)
        .arg("--pred")
        .arg(out.join("table.csv"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let misses: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("scored cells missed or wrong"))
        .skip(1)
        .filter(|l| l.starts_with("  "))
        .collect();
    assert!(
        misses.first().is_some_and(|l| l.contains("SmithB2020EXP1")
            && l.contains("n_total")
            && l.contains("gold: 25")),
        "the correction is the gold's value:\n{text}"
    );
    assert_eq!(misses.len(), 1, "only the corrected cell misses:\n{text}");
}
