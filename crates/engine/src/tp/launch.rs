//! Starting the ranks of a tensor-parallel job: one child process per rank, and the files they
//! meet through.
//!
//! The parent (`paramx ... --tp N` without `PARAMX_RANK` in its environment) creates a private
//! rendezvous directory, re-runs its own executable N times with the same arguments and with
//! `PARAMX_RANK`, `PARAMX_WORLD_SIZE`, `PARAMX_RENDEZVOUS` and `PARAMX_LAUNCHER_PID` set, and
//! watches them. Rank `i` uses CUDA device ordinal `i` of whatever `CUDA_VISIBLE_DEVICES` the
//! parent was given (SLURM's GPU binding is inherited untouched). When a rank fails, the parent
//! kills the others and reports that rank's exit status and the last lines of its stderr.
//!
//! No TCP port is fixed and nothing is shared between jobs: the directory lives under
//! `$SLURM_TMPDIR` or `$TMPDIR` (else `/tmp`), its name holds the SLURM job and step ids, the
//! parent's pid and a nanosecond nonce, and it is created exclusively (`mkdir` fails if it exists)
//! with mode 0700. Ranks exchange small blobs (the NCCL unique id) through it with
//! [`publish`] / [`wait_for`]: written to a temporary name, then renamed, so a reader sees the
//! whole file or nothing.

use anyhow::{bail, Context};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Environment variable: this process's rank (set by the launcher).
pub const ENV_RANK: &str = "PARAMX_RANK";
/// Environment variable: number of ranks.
pub const ENV_WORLD_SIZE: &str = "PARAMX_WORLD_SIZE";
/// Environment variable: the job's private rendezvous directory.
pub const ENV_RENDEZVOUS: &str = "PARAMX_RENDEZVOUS";
/// Environment variable: the launcher's pid; a rank whose parent changes was orphaned.
pub const ENV_LAUNCHER_PID: &str = "PARAMX_LAUNCHER_PID";

/// Name of the file the launcher publishes in the rendezvous directory when it is asked to stop
/// (SIGUSR1/SIGTERM): every rank watches for it ([`RankEnv::watch_for_stop`]). A file rather
/// than forwarded signals: a signal that reaches a rank before its handler is installed would
/// kill it, a file cannot arrive too early.
pub const STOP_FILE: &str = "stop";

/// Lines of a failed rank's stderr kept for the final error.
const STDERR_TAIL: usize = 20;

/// What a rank process learns from its launcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankEnv {
    pub rank: usize,
    pub world_size: usize,
    /// The CUDA device ordinal this rank uses: its rank, within the inherited
    /// `CUDA_VISIBLE_DEVICES` (one node, one GPU per rank).
    pub device_ordinal: usize,
    pub rendezvous: PathBuf,
}

impl RankEnv {
    /// `Ok(None)` in a process not started by [`run_ranks`]; an error when the variables are
    /// present but inconsistent.
    pub fn from_env() -> anyhow::Result<Option<Self>> {
        let Some(rank) = std::env::var_os(ENV_RANK) else {
            return Ok(None);
        };
        let num = |name: &str, v: Option<OsString>| -> anyhow::Result<usize> {
            let v = v.with_context(|| format!("{ENV_RANK} is set but {name} is not"))?;
            v.to_str()
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("{name}={v:?} is not a number"))
        };
        let rank = num(ENV_RANK, Some(rank))?;
        let world_size = num(ENV_WORLD_SIZE, std::env::var_os(ENV_WORLD_SIZE))?;
        if rank >= world_size {
            bail!("{ENV_RANK}={rank} is not below {ENV_WORLD_SIZE}={world_size}");
        }
        let rendezvous = std::env::var_os(ENV_RENDEZVOUS)
            .map(PathBuf::from)
            .with_context(|| format!("{ENV_RANK} is set but {ENV_RENDEZVOUS} is not"))?;
        if !rendezvous.is_dir() {
            bail!(
                "{ENV_RENDEZVOUS}={} is not a directory",
                rendezvous.display()
            );
        }
        Ok(Some(Self {
            rank,
            world_size,
            device_ordinal: rank,
            rendezvous,
        }))
    }

    /// Exits this process (status 3) if the launcher goes away, so a killed job leaves no rank
    /// behind holding a GPU. Call once, early, in each rank.
    #[cfg(unix)]
    pub fn exit_when_orphaned(&self) {
        let Some(launcher) = std::env::var(ENV_LAUNCHER_PID)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            return;
        };
        let rank = self.rank;
        thread::spawn(move || loop {
            if std::os::unix::process::parent_id() != launcher {
                eprintln!("paramx rank {rank}: the launcher (pid {launcher}) is gone; exiting");
                std::process::exit(3);
            }
            thread::sleep(Duration::from_millis(500));
        });
    }
}

impl RankEnv {
    /// Sets `flag` once the launcher publishes [`STOP_FILE`] (it does so when it receives
    /// SIGUSR1/SIGTERM, see [`LaunchOptions::stop`]). The rank then stops the way a signalled
    /// single process does; the ranks agree on *when* through their communicator.
    pub fn watch_for_stop(&self, flag: Arc<AtomicBool>) {
        let path = self.rendezvous.join(STOP_FILE);
        thread::spawn(move || {
            while !path.exists() {
                thread::sleep(Duration::from_millis(100));
            }
            flag.store(true, Ordering::SeqCst);
        });
    }
}

/// A private, exclusively created directory, removed again on drop.
#[derive(Debug)]
pub struct RendezvousDir {
    path: PathBuf,
}

impl RendezvousDir {
    /// Creates `paramx-tp-<job>-<step>-<pid>-<nonce>` under `$SLURM_TMPDIR`, else `$TMPDIR`,
    /// else `/tmp`.
    pub fn create() -> anyhow::Result<Self> {
        let base = ["SLURM_TMPDIR", "TMPDIR"]
            .iter()
            .find_map(|v| std::env::var_os(v).filter(|s| !s.is_empty()))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        Self::create_in(&base)
    }

    /// Creates the directory under `base`.
    pub fn create_in(base: &Path) -> anyhow::Result<Self> {
        let job = std::env::var("SLURM_JOB_ID").unwrap_or_else(|_| "nojob".into());
        let step = std::env::var("SLURM_STEP_ID").unwrap_or_else(|_| "nostep".into());
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("paramx-tp-{job}-{step}-{}-{nonce}", std::process::id());
        let path = base.join(name);
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&path)
            .with_context(|| format!("cannot create rendezvous directory {}", path.display()))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RendezvousDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Writes `bytes` as `dir/name` atomically: to a temporary name first, then renamed.
pub fn publish(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let dst = dir.join(name);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &dst)
    };
    write().with_context(|| format!("cannot publish {}", dst.display()))
}

/// Waits until `dir/name` exists (it appears whole, see [`publish`]) and returns its bytes;
/// an error after `timeout`.
pub fn wait_for(dir: &Path, name: &str, timeout: Duration) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(name);
    let deadline = Instant::now() + timeout;
    loop {
        match std::fs::read(&path) {
            Ok(bytes) => return Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not appear within {timeout:?} (did rank 0 fail?)",
                path.display()
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The ranks to start: `program args...`, `world_size` times.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub world_size: usize,
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

impl LaunchSpec {
    /// This executable with this process's arguments: the usual way for `paramx run --tp N` to
    /// become N ranks.
    pub fn current_exe(world_size: usize) -> anyhow::Result<Self> {
        Ok(Self {
            world_size,
            program: std::env::current_exe().context("cannot locate the paramx executable")?,
            args: std::env::args_os().skip(1).collect(),
        })
    }
}

/// A rank that did not succeed, as the launcher reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rank {rank} of {world_size} failed ({status}){}", tail_text(.stderr_tail))]
pub struct RankFailed {
    pub rank: usize,
    pub world_size: usize,
    /// The exit status, as text ("exit status: 1", "signal: 9 (SIGKILL)").
    pub status: String,
    /// The last lines the rank wrote to stderr.
    pub stderr_tail: Vec<String>,
}

fn tail_text(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; its last stderr lines:\n  {}", lines.join("\n  "))
    }
}

struct Running {
    rank: usize,
    child: Child,
    tail: Arc<Mutex<VecDeque<String>>>,
    forwarder: Option<thread::JoinHandle<()>>,
}

impl Running {
    /// The last stderr lines. Gives the forwarder a moment to reach the end of the pipe, but
    /// does not wait on it for good: a grandchild may hold the pipe open.
    fn tail(&mut self) -> Vec<String> {
        if let Some(h) = self.forwarder.take() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !h.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
        self.tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Starts the ranks and waits for all of them. Each rank's stderr is forwarded line by line with
/// a `[rank i]` prefix; stdout is inherited. Returns `Ok` when every rank exits successfully.
/// When one fails, the others are killed at once and that rank's [`RankFailed`] is returned;
/// when several fail, the first one noticed is reported.
pub fn run_ranks(spec: &LaunchSpec) -> anyhow::Result<()> {
    run_ranks_with(spec, &LaunchOptions::default()).map(|_| ())
}

/// How [`run_ranks_with`] judges the ranks' exits and what it passes on to them.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// Whether exit code `code` of rank `rank` is a normal end (the launcher then waits for the
    /// others) rather than a failure (the launcher kills the others and reports this rank).
    /// A rank killed by a signal always failed.
    pub normal_exit: fn(rank: usize, code: i32) -> bool,
    /// The launcher's stop flag (set by its SIGUSR1/SIGTERM handlers): once it is set, the
    /// launcher publishes [`STOP_FILE`] for the ranks.
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for LaunchOptions {
    /// Only exit code 0 is normal; no stop forwarding.
    fn default() -> Self {
        Self {
            normal_exit: |_, code| code == 0,
            stop: None,
        }
    }
}

/// [`run_ranks`] with a choice of which exit codes are normal and with stop forwarding; returns
/// every rank's exit code, in rank order, when all ended normally.
pub fn run_ranks_with(spec: &LaunchSpec, opts: &LaunchOptions) -> anyhow::Result<Vec<i32>> {
    if spec.world_size == 0 {
        bail!("cannot launch 0 ranks");
    }
    let dir = RendezvousDir::create()?;
    let mut running: Vec<Running> = Vec::with_capacity(spec.world_size);
    for rank in 0..spec.world_size {
        let spawned = Command::new(&spec.program)
            .args(&spec.args)
            .env(ENV_RANK, rank.to_string())
            .env(ENV_WORLD_SIZE, spec.world_size.to_string())
            .env(ENV_RENDEZVOUS, dir.path())
            .env(ENV_LAUNCHER_PID, std::process::id().to_string())
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                kill_all(&mut running);
                return Err(e).with_context(|| {
                    format!("cannot start rank {rank} ({})", spec.program.display())
                });
            }
        };
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        let forwarder = child.stderr.take().map(|stderr| {
            let tail = tail.clone();
            thread::spawn(move || forward_stderr(rank, stderr, &tail))
        });
        running.push(Running {
            rank,
            child,
            tail,
            forwarder,
        });
    }
    let mut codes: Vec<Option<i32>> = vec![None; running.len()];
    let mut stop_published = false;
    loop {
        if !stop_published && opts.stop.as_ref().is_some_and(|f| f.load(Ordering::SeqCst)) {
            stop_published = true;
            eprintln!(
                "paramx: stop requested; passing it on to the {} ranks",
                spec.world_size
            );
            if let Err(e) = publish(dir.path(), STOP_FILE, b"") {
                kill_all(&mut running);
                return Err(e);
            }
        }
        for (i, r) in running.iter_mut().enumerate() {
            if codes[i].is_some() {
                continue;
            }
            let status = match r.child.try_wait() {
                Ok(None) => continue,
                Ok(Some(s)) => s,
                Err(e) => {
                    let rank = r.rank;
                    kill_all(&mut running);
                    return Err(e).with_context(|| format!("cannot wait for rank {rank}"));
                }
            };
            let normal = status.code().filter(|&c| (opts.normal_exit)(r.rank, c));
            codes[i] = normal;
            if normal.is_none() {
                let (rank, tail) = (r.rank, r.tail());
                kill_all(&mut running);
                return Err(RankFailed {
                    rank,
                    world_size: spec.world_size,
                    status: describe(status),
                    stderr_tail: tail,
                }
                .into());
            }
        }
        if codes.iter().all(Option::is_some) {
            for r in &mut running {
                r.tail();
            }
            return Ok(codes.into_iter().flatten().collect());
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn forward_stderr(rank: usize, stderr: impl std::io::Read, tail: &Mutex<VecDeque<String>>) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
        eprintln!("[rank {rank}] {line}");
        if let Ok(mut t) = tail.lock() {
            if t.len() == STDERR_TAIL {
                t.pop_front();
            }
            t.push_back(line);
        }
    }
}

fn kill_all(running: &mut [Running]) {
    for r in running.iter_mut() {
        // Already exited children make kill fail harmlessly.
        let _ = r.child.kill();
    }
    for r in running.iter_mut() {
        let _ = r.child.wait();
        r.tail();
    }
}

fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("killed by signal {sig}");
        }
    }
    status.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_files_appear_whole() {
        let base = tempfile::tempdir().unwrap();
        let dir = RendezvousDir::create_in(base.path()).unwrap();
        let path = dir.path().to_path_buf();
        let writer = {
            let path = path.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(100));
                publish(&path, "nccl-id", &[7u8; 128]).unwrap();
            })
        };
        let got = wait_for(&path, "nccl-id", Duration::from_secs(60)).unwrap();
        writer.join().unwrap();
        assert_eq!(got, vec![7u8; 128]);
        // Only the final name is left: no temporary files.
        let names: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("nccl-id")]);
        drop(dir);
        assert!(!path.exists(), "the rendezvous directory is removed");
    }

    #[test]
    fn waiting_for_a_file_that_never_comes_times_out() {
        let base = tempfile::tempdir().unwrap();
        let err = wait_for(base.path(), "nccl-id", Duration::from_millis(100)).unwrap_err();
        assert!(err.to_string().contains("did not appear within"), "{err}");
    }

    #[test]
    fn rendezvous_dirs_are_private_and_distinct() {
        let base = tempfile::tempdir().unwrap();
        let a = RendezvousDir::create_in(base.path()).unwrap();
        let b = RendezvousDir::create_in(base.path()).unwrap();
        assert_ne!(a.path(), b.path());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(a.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
    }

    #[test]
    fn a_rank_sees_the_launchers_stop_file() {
        let base = tempfile::tempdir().unwrap();
        let dir = RendezvousDir::create_in(base.path()).unwrap();
        let env = RankEnv {
            rank: 1,
            world_size: 2,
            device_ordinal: 1,
            rendezvous: dir.path().to_path_buf(),
        };
        let flag = Arc::new(AtomicBool::new(false));
        env.watch_for_stop(flag.clone());
        thread::sleep(Duration::from_millis(250));
        assert!(!flag.load(Ordering::SeqCst), "no stop file yet");
        publish(dir.path(), STOP_FILE, b"").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !flag.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the stop file was not noticed");
            thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn rank_failed_message_names_the_rank_and_its_stderr() {
        let e = RankFailed {
            rank: 1,
            world_size: 2,
            status: "exit status: 2".into(),
            stderr_tail: vec!["error: out of memory".into()],
        };
        assert_eq!(
            e.to_string(),
            "rank 1 of 2 failed (exit status: 2); its last stderr lines:\n  error: out of memory"
        );
    }
}
