//! Untrusted PDFs are parsed in a worker process, so that no input can take a run down.
//!
//! A PDF controls how deep the parser recurses, how much it allocates and how long it runs.
//! Inside one process, a stack overflow or a failed allocation aborts everything (no panic
//! guard catches them), and a slow page holds the batch. So, the way browsers and document
//! services do it, each document is read by a child process (`paramx pdf-worker FILE`) under
//! hard limits: address space (`RLIMIT_AS`), CPU time (`RLIMIT_CPU`), no core dumps, and a
//! wall-clock deadline enforced by the parent, which kills it. Whatever happens there becomes
//! that document's [`PdfError`]; the other documents and the run go on.
//!
//! The worker is this same binary: `main` registers it ([`use_worker`]) before any command
//! runs. Library users (and tests that call the library) extract in-process unless they
//! register a worker too.

use super::{Document, ExtractOptions, PdfError};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Limits of one worker.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Address space of the worker (RLIMIT_AS), bytes.
    pub memory_bytes: u64,
    /// Wall-clock time for the whole document.
    pub wall: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 3 << 30,
            wall: Duration::from_secs(120),
        }
    }
}

static WORKER: OnceLock<(PathBuf, Limits)> = OnceLock::new();

/// Makes [`super::extract_many`] read every document in a worker process: `exe` is a binary
/// whose `pdf-worker` subcommand calls [`worker_main`].
pub fn use_worker(exe: PathBuf, limits: Limits) {
    let _ = WORKER.set((exe, limits));
}

/// The registered worker, if any.
pub(super) fn worker() -> Option<&'static (PathBuf, Limits)> {
    WORKER.get()
}

/// What a worker writes to its stdout: the document, or the error's message.
#[derive(Serialize, Deserialize)]
enum Reply {
    Ok(Box<Document>),
    Err(String),
}

/// What a worker reports of itself on stderr's last line: its peak resident memory.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct WorkerStats {
    pub peak_rss_kib: u64,
}

const STATS_PREFIX: &str = "paramx-pdf-worker-stats ";

/// Reads `path` in a worker process of `exe` under `limits`.
pub fn extract_in_worker(
    exe: &Path,
    path: &Path,
    opts: &ExtractOptions,
    limits: Limits,
) -> (Result<Document, PdfError>, Option<WorkerStats>) {
    let crashed = |message: String| PdfError::Worker {
        path: path.to_path_buf(),
        message,
    };
    let mut cmd = Command::new(exe);
    cmd.arg("pdf-worker")
        .arg("--page-timeout-ms")
        .arg(opts.page_timeout.as_millis().to_string())
        .env("RAYON_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(c) = &opts.cache_dir {
        cmd.arg("--cache").arg(c);
    }
    cmd.arg("--").arg(path);
    set_limits(&mut cmd, limits);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return (
                Err(crashed(format!("cannot start the PDF worker: {e}"))),
                None,
            )
        }
    };
    // Drain both pipes on threads so a large document cannot block the worker on a full pipe.
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut b);
        }
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.take(1 << 20).read_to_end(&mut b);
        }
        b
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() >= limits.wall => {
                kill_group(&mut child);
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return (Err(crashed(format!("lost the PDF worker: {e}"))), None),
        }
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr);
    let stats = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(STATS_PREFIX))
        .and_then(|j| serde_json::from_str::<WorkerStats>(j).ok());
    let Some(status) = status else {
        return (
            Err(crashed(format!(
                "reading it took longer than {} s (the worker was stopped)",
                limits.wall.as_secs()
            ))),
            stats,
        );
    };
    if !status.success() {
        let why = describe_exit(&status, limits);
        return (Err(crashed(why)), stats);
    }
    let result = match serde_json::from_slice::<Reply>(&stdout) {
        Ok(Reply::Ok(mut doc)) => {
            // The worker leaves the path out (JSON cannot carry a non-UTF-8 file name).
            doc.path = path.to_path_buf();
            Ok(*doc)
        }
        Ok(Reply::Err(message)) => Err(PdfError::Reported {
            path: path.to_path_buf(),
            message,
        }),
        Err(e) => Err(crashed(format!("the worker's reply is unreadable: {e}"))),
    };
    (result, stats)
}

/// Why a worker ended without a reply.
fn describe_exit(status: &std::process::ExitStatus, limits: Limits) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            let what = match sig {
                6 => "aborted (stack overflow or a failed allocation)",
                9 => "killed (memory or time limit)",
                11 => "crashed (segmentation fault: stack overflow)",
                24 => "stopped at its CPU-time limit",
                _ => "killed by a signal",
            };
            return format!(
                "the PDF parser {what}, signal {sig}; limits: {} MiB of memory, {} s",
                limits.memory_bytes >> 20,
                limits.wall.as_secs()
            );
        }
    }
    format!("the PDF worker failed ({status})")
}

/// Kills the worker and anything it started (its own process group, see [`set_limits`]), so
/// that no grandchild keeps the pipes open.
fn kill_group(child: &mut std::process::Child) {
    #[cfg(unix)]
    {
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: plain syscall on a process group this process created.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
    let _ = child.kill();
}

#[cfg(unix)]
fn set_limits(cmd: &mut Command, limits: Limits) {
    use std::os::unix::process::CommandExt;
    let mem = limits.memory_bytes as libc::rlim_t;
    let cpu = limits.wall.as_secs().saturating_add(5) as libc::rlim_t;
    // SAFETY: runs in the forked child before exec; setrlimit is async-signal-safe and touches
    // no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            let set = |res, v: libc::rlim_t| {
                let l = libc::rlimit {
                    rlim_cur: v,
                    rlim_max: v,
                };
                if libc::setrlimit(res, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            set(libc::RLIMIT_AS, mem)?;
            set(libc::RLIMIT_CPU, cpu)?;
            set(libc::RLIMIT_CORE, 0)?;
            // Its own process group: the deadline kills it and anything it started.
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(unix))]
fn set_limits(_cmd: &mut Command, _limits: Limits) {}

/// The worker's side: reads one PDF, writes the [`Reply`] as JSON to stdout and its stats to
/// stderr. Exit 0 whenever it could reply (an unreadable PDF is a reply too).
pub fn worker_main(path: &Path, opts: &ExtractOptions) -> std::process::ExitCode {
    // The interpreter gets a large stack of its own: deep but legitimate nesting works, and a
    // hostile one overflows here, in this process alone.
    let (p, o) = (path.to_path_buf(), opts.clone());
    let handle = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || super::extract_file(&p, &o));
    let result = match handle.map(|h| h.join()) {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(PdfError::Internal {
            path: path.to_path_buf(),
            message: "the parser panicked".into(),
        }),
        Err(e) => Err(PdfError::Internal {
            path: path.to_path_buf(),
            message: format!("cannot start the parser thread: {e}"),
        }),
    };
    let reply = match result {
        Ok(mut d) => {
            // The parent knows the path it asked for; a non-UTF-8 one cannot go through JSON.
            d.path = PathBuf::new();
            Reply::Ok(Box::new(d))
        }
        Err(e) => Reply::Err(e.to_string()),
    };
    let stats = WorkerStats {
        peak_rss_kib: peak_rss_kib(),
    };
    eprintln!(
        "{STATS_PREFIX}{}",
        serde_json::to_string(&stats).unwrap_or_default()
    );
    match serde_json::to_writer(std::io::stdout().lock(), &reply) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::from(3),
    }
}

/// This process's peak resident set (`VmHWM`), KiB; 0 where unknown.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
