//! `paramx text`: PDFs -> clean text (or JSON with pages, sections and offsets).

use crate::pdf::{self, ExtractOptions};
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// PDF files, or directories whose `*.pdf` files are all taken (not recursive).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Print/write JSON (text, pages, sections with byte offsets, DOI, title) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write one `<name>.txt` (or `.json`) per PDF into this directory instead of stdout.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Cache extractions here, keyed by the PDF's sha256.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
}

/// Expands directories into their PDFs (sorted); a directory without PDFs is an input error.
fn expand(inputs: &[PathBuf]) -> (Vec<PathBuf>, Vec<String>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in inputs {
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(rd) => {
                    let mut v: Vec<PathBuf> = rd
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| {
                            f.is_file()
                                && f.extension().is_some_and(|x| x.eq_ignore_ascii_case("pdf"))
                        })
                        .collect();
                    if v.is_empty() {
                        errors.push(format!("{}: directory contains no .pdf files", p.display()));
                    }
                    v.sort();
                    files.extend(v);
                }
                Err(e) => errors.push(format!("{}: cannot read directory: {e}", p.display())),
            }
        } else {
            files.push(p.clone());
        }
    }
    (files, errors)
}

fn out_name(dir: &Path, pdf: &Path, json: bool) -> PathBuf {
    let stem = pdf
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "document".into());
    dir.join(format!("{stem}.{}", if json { "json" } else { "txt" }))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (files, mut failures) = expand(&args.inputs);
    for f in &failures {
        eprintln!("paramx: error: {f}");
    }
    let opts = ExtractOptions {
        cache_dir: args.cache.clone(),
        ..ExtractOptions::default()
    };
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(n) = args.jobs {
        anyhow::ensure!(n > 0, "--jobs must be at least 1");
        builder = builder.num_threads(n);
    }
    let pool = builder.build().context("cannot start worker threads")?;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    }
    let results = pool.install(|| pdf::extract_many(&files, &opts));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let many = results.len() > 1;
    for (path, r) in results {
        let doc = match r {
            Ok(d) => d,
            Err(e) => {
                eprintln!("paramx: error: {e}");
                failures.push(e.to_string());
                continue;
            }
        };
        for pe in &doc.page_errors {
            eprintln!(
                "paramx: warning: {}: page {}: {}",
                path.display(),
                pe.page,
                pe.message
            );
        }
        let body = if args.json {
            serde_json::to_string(&doc)?
        } else {
            doc.text.clone()
        };
        match &args.out {
            Some(dir) => {
                let target = out_name(dir, &path, args.json);
                if let Err(e) = std::fs::write(&target, body.as_bytes()) {
                    let msg = format!("{}: cannot write {}: {e}", path.display(), target.display());
                    eprintln!("paramx: error: {msg}");
                    failures.push(msg);
                }
            }
            None => {
                if many && !args.json {
                    writeln!(out, "==> {} <==", path.display())?;
                }
                writeln!(out, "{body}")?;
            }
        }
    }
    out.flush()?;
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `paramx pdf-worker`: one PDF, read in this process, replied on stdout (`pdf::isolate`).
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    #[arg(long, default_value_t = 20_000)]
    pub page_timeout_ms: u64,
    #[arg(long)]
    pub cache: Option<PathBuf>,
    pub path: PathBuf,
}

pub fn worker(args: &WorkerArgs) -> ExitCode {
    let opts = pdf::ExtractOptions {
        cache_dir: args.cache.clone(),
        page_timeout: std::time::Duration::from_millis(args.page_timeout_ms),
    };
    pdf::isolate::worker_main(&args.path, &opts)
}
