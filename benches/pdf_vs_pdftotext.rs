//! `paramx text` against `pdftotext` (poppler) on the shared corpus, side by side in one run:
//! per-paper word recall/precision, reading order, symbols, hyphens; speed in pages per
//! CPU-second (one process per PDF for both tools, CPU time of the children); and in-process
//! throughput scaling from 1 to 2 rayon threads. Prints a table and writes JSON.
//!
//!     cargo bench --bench pdf_vs_pdftotext [-- --rounds 5 --json target/pdf_bench.json
//!                                             --corpus DIR --paramx PATH]

use paramx::pdf::metrics::{line_end_hyphens, Counts};
use paramx::pdf::{extract_many, ExtractOptions};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// CPU seconds (user + system) consumed so far by this process's waited-for children.
fn children_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; cutime and cstime are fields 16 and 17.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|x| x.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Linux reports these in USER_HZ, which is 100 on every mainstream configuration.
    (ticks(16) + ticks(17)) / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn run_all(cmd: &dyn Fn(&Path) -> Command, files: &[PathBuf]) -> f64 {
    let before = children_cpu_seconds();
    for f in files {
        let st = cmd(f)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("spawn");
        assert!(
            st.success(),
            "{} failed on {}",
            cmd(f).get_program().to_string_lossy(),
            f.display()
        );
    }
    children_cpu_seconds() - before
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let rounds: usize = arg("--rounds").and_then(|r| r.parse().ok()).unwrap_or(5);
    let json_path = PathBuf::from(arg("--json").unwrap_or_else(|| "target/pdf_bench.json".into()));
    let dir = arg("--corpus")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/papers"));
    if !dir.is_dir() || Command::new("pdftotext").arg("-v").output().is_err() {
        eprintln!(
            "SKIP: needs ../shared/corpus/papers and pdftotext (apt-get install poppler-utils)"
        );
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pdf"))
        .collect();
    files.sort();
    let opts = ExtractOptions::default();

    // Quality.
    let docs = extract_many(&files, &opts);
    let mut rows = Vec::new();
    let mut total = Counts::default();
    let mut pages_total = 0usize;
    println!(
        "{:<34} {:>5} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "paper", "pages", "recall", "prec", "order", "deg o/r", "± o/r", "= o/r", "− o/r", "hyph"
    );
    for (path, r) in &docs {
        let d = r.as_ref().unwrap_or_else(|e| panic!("{e}"));
        let out = Command::new("pdftotext")
            .arg("-enc")
            .arg("UTF-8")
            .arg(path)
            .arg("-")
            .output()
            .unwrap();
        let reference = String::from_utf8_lossy(&out.stdout).into_owned();
        let ours: Vec<&str> = d.pages.iter().map(|p| &d.text[p.start..p.end]).collect();
        let c = Counts::compare(&reference.split('\u{c}').collect::<Vec<_>>(), &ours);
        total.add(&c);
        pages_total += d.pages.len();
        let n = |t: &str, ch: char| t.matches(ch).count();
        let name: String = path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .chars()
            .take(34)
            .collect();
        let sym = |ch: char| (n(&d.text, ch), n(&reference, ch));
        let (deg, pm, eq, minus) = (sym('°'), sym('±'), sym('='), sym('\u{2212}'));
        let hy = line_end_hyphens(&d.text);
        println!(
            "{name:<34} {:>5} {:>7.4} {:>7.4} {:>7.4} {:>9} {:>9} {:>9} {:>9} {:>6}",
            d.pages.len(),
            c.recall(),
            c.precision(),
            c.order(),
            format!("{}/{}", deg.0, deg.1),
            format!("{}/{}", pm.0, pm.1),
            format!("{}/{}", eq.0, eq.1),
            format!("{}/{}", minus.0, minus.1),
            hy
        );
        rows.push(json!({
            "paper": path.file_name().unwrap().to_string_lossy(), "pages": d.pages.len(),
            "recall": c.recall(), "precision": c.precision(), "bigram_order": c.order(), "counts": c,
            "degree": [deg.0, deg.1], "plusminus": [pm.0, pm.1], "equals": [eq.0, eq.1], "minus_u2212": [minus.0, minus.1],
            "line_end_hyphens": hy, "sections": d.sections.len(), "doi": d.doi, "title": d.title,
        }));
    }
    println!(
        "{:<34} {:>5} {:>7.4} {:>7.4} {:>7.4}",
        "OVERALL",
        pages_total,
        total.recall(),
        total.precision(),
        total.order()
    );

    // Speed: one process per PDF for both tools, interleaved rounds, CPU time of the children.
    let exe = arg("--paramx").unwrap_or_else(|| env!("CARGO_BIN_EXE_paramx").to_string());
    let ours_cmd = |f: &Path| {
        let mut c = Command::new(&exe);
        c.arg("text").arg("--jobs").arg("1").arg(f);
        c
    };
    let theirs_cmd = |f: &Path| {
        let mut c = Command::new("pdftotext");
        c.arg(f).arg("-");
        c
    };
    let (mut ours_cpu, mut theirs_cpu) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        ours_cpu.push(run_all(&ours_cmd, &files));
        theirs_cpu.push(run_all(&theirs_cmd, &files));
    }
    let (oc, tc) = (median(ours_cpu.clone()), median(theirs_cpu.clone()));
    let (ops, tps) = (pages_total as f64 / oc, pages_total as f64 / tc);
    println!("\nspeed (median of {rounds} rounds, one process per PDF, {pages_total} pages)");
    println!("  paramx text : {oc:.3} CPU-s  {ops:.0} pages/CPU-s");
    println!("  pdftotext   : {tc:.3} CPU-s  {tps:.0} pages/CPU-s");
    println!("  ratio       : {:.2}x", ops / tps);

    // Scaling: in-process extract_many on rayon pools of 1 and 2 threads, wall time.
    let mut walls: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (k, threads) in [1usize, 2].iter().enumerate() {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(*threads)
                .build()
                .unwrap();
            let t = Instant::now();
            let r = pool.install(|| extract_many(&files, &opts));
            walls[k].push(t.elapsed().as_secs_f64());
            assert!(r.iter().all(|(_, d)| d.is_ok()));
        }
    }
    let (w1, w2) = (median(walls[0].clone()), median(walls[1].clone()));
    println!("\nscaling (in-process, median wall of {rounds})");
    println!(
        "  1 thread : {w1:.3} s  {:.0} pages/s",
        pages_total as f64 / w1
    );
    println!(
        "  2 threads: {w2:.3} s  {:.0} pages/s  speedup {:.2}x",
        pages_total as f64 / w2,
        w1 / w2
    );

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let report = json!({
        "machine": { "cores": cores },
        "papers": rows,
        "overall": { "recall": total.recall(), "precision": total.precision(), "bigram_order": total.order(), "counts": total, "pages": pages_total },
        "speed": { "rounds": rounds, "paramx_cpu_s": ours_cpu, "pdftotext_cpu_s": theirs_cpu,
                   "paramx_pages_per_cpu_s": ops, "pdftotext_pages_per_cpu_s": tps, "ratio": ops / tps },
        "scaling": { "wall_s_1_thread": walls[0], "wall_s_2_threads": walls[1], "speedup": w1 / w2 },
    });
    if let Some(parent) = json_path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&json_path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("\nwrote {}", json_path.display());
}
