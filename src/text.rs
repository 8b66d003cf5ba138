//! The `paramx text` job: PDFs -> clean text (or JSON with pages, sections and offsets), each
//! file read in its own worker process (`pdf::isolate`), written atomically as soon as it is
//! read; and `paramx pdf-worker`, the worker's side. `cmd::text` wires the flags here.

use crate::pdf::{self, ExtractOptions};
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Options {
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
/// Only regular files are read: a FIFO or a device given as input would block or never end.
fn expand(inputs: &[PathBuf]) -> (Vec<PathBuf>, Vec<String>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let regular = |p: &Path| std::fs::metadata(p).map(|m| m.is_file()).unwrap_or(false);
    for p in inputs {
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(rd) => {
                    let mut v: Vec<PathBuf> = Vec::new();
                    for f in rd.filter_map(|e| e.ok().map(|e| e.path())) {
                        if !f.extension().is_some_and(|x| x.eq_ignore_ascii_case("pdf")) {
                            continue;
                        }
                        if regular(&f) {
                            v.push(f);
                        } else if !f.is_dir() {
                            errors.push(format!("{}: not a regular file; skipped", f.display()));
                        }
                    }
                    if v.is_empty() {
                        errors.push(format!("{}: directory contains no .pdf files", p.display()));
                    }
                    v.sort();
                    files.extend(v);
                }
                Err(e) => errors.push(format!("{}: cannot read directory: {e}", p.display())),
            }
        } else if !p.exists() {
            errors.push(format!("{}: no such file", p.display()));
        } else if regular(p) {
            files.push(p.clone());
        } else {
            errors.push(format!(
                "{}: not a regular file (a FIFO or device cannot be read as a PDF)",
                p.display()
            ));
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

/// Where each file's output goes under `--out`, or why it gets none: two inputs with the same
/// name (`a/paper.pdf`, `b/paper.pdf`) would overwrite each other, and an output must never
/// replace an input.
fn plan_outputs(dir: &Path, files: &[PathBuf], json: bool) -> Vec<Result<PathBuf, String>> {
    let canonical: Vec<PathBuf> = files
        .iter()
        .map(|f| std::fs::canonicalize(f).unwrap_or_else(|_| f.clone()))
        .collect();
    let mut taken: std::collections::HashMap<PathBuf, usize> = Default::default();
    files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let target = out_name(dir, f, json);
            if let Some(&first) = taken.get(&target) {
                return Err(format!(
                    "{}: its output {} would overwrite that of {}; not written (give the files distinct names)",
                    f.display(),
                    target.display(),
                    files[first].display()
                ));
            }
            let resolved = std::fs::canonicalize(&target).unwrap_or_else(|_| target.clone());
            if canonical.contains(&resolved) {
                return Err(format!(
                    "{}: its output {} is an input; not written",
                    f.display(),
                    target.display()
                ));
            }
            taken.insert(target.clone(), i);
            Ok(target)
        })
        .collect()
}

pub fn run(args: Options) -> anyhow::Result<ExitCode> {
    // SIGUSR1/SIGTERM, and SIGINT too here: finish the files in flight, keep them, stop.
    crate::run::install_stop_handlers();
    let _ = signal_hook::flag::register(
        signal_hook::consts::SIGINT,
        crate::run::STOP_REQUESTED.clone(),
    );
    let (files, failures) = expand(&args.inputs);
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
    let failures = std::sync::Mutex::new(failures);
    let fail = |msg: String| {
        eprintln!("paramx: error: {msg}");
        if let Ok(mut f) = failures.lock() {
            f.push(msg);
        }
    };
    let warn_pages = |path: &Path, doc: &pdf::Document| {
        for pe in &doc.page_errors {
            eprintln!(
                "paramx: warning: {}: page {}: {}",
                path.display(),
                pe.page,
                pe.message
            );
        }
    };
    let body_of = |doc: &pdf::Document| -> anyhow::Result<String> {
        Ok(if args.json {
            serde_json::to_string(doc)?
        } else {
            doc.text.clone()
        })
    };
    let mut stopped = false;
    match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create output directory {}", dir.display()))?;
            let targets = plan_outputs(dir, &files, args.json);
            // Each file is written (atomically) as soon as it is read, so a stop signal keeps
            // every finished one.
            pool.install(|| {
                use rayon::prelude::*;
                files.par_iter().zip(&targets).for_each(|(path, target)| {
                    if crate::run::stop_requested() {
                        return;
                    }
                    let target = match target {
                        Ok(t) => t,
                        Err(msg) => return fail(msg.clone()),
                    };
                    let one = [path.clone()];
                    let Some((_, r)) = pdf::extract_many(&one, &opts).pop() else {
                        return;
                    };
                    match r.map_err(|e| e.to_string()).and_then(|doc| {
                        warn_pages(path, &doc);
                        body_of(&doc).map_err(|e| format!("{}: {e:#}", path.display()))
                    }) {
                        Ok(body) => {
                            if let Err(e) = crate::run::store::write_atomic(target, body.as_bytes())
                            {
                                fail(format!(
                                    "{}: cannot write {}: {e:#}",
                                    path.display(),
                                    target.display()
                                ));
                            }
                        }
                        Err(msg) => fail(msg),
                    }
                });
            });
            stopped = crate::run::stop_requested();
        }
        None => {
            let results = pool.install(|| pdf::extract_many(&files, &opts));
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let many = results.len() > 1;
            for (path, r) in results {
                let doc = match r {
                    Ok(d) => d,
                    Err(e) => {
                        fail(e.to_string());
                        continue;
                    }
                };
                warn_pages(&path, &doc);
                let body = body_of(&doc)?;
                // A closed or full stdout ends the command with an error, never a panic.
                if many && !args.json {
                    writeln!(out, "==> {} <==", path.display())
                        .context("cannot write to standard output")?;
                }
                writeln!(out, "{body}").context("cannot write to standard output")?;
            }
            out.flush().context("cannot write to standard output")?;
        }
    }
    if stopped {
        eprintln!("paramx: stopped by signal; finished files are written, rerun to continue");
        return Ok(ExitCode::from(crate::run::driver::EXIT_REQUEUE));
    }
    let failed = failures.lock().map(|f| !f.is_empty()).unwrap_or(true);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
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
