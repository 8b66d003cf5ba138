//! `manifest.json`: what produced a run's outputs, written beside them.
//!
//! Two halves, kept apart on purpose:
//! - [`Reproducibility`] (`hashes`) and the input list: everything that decides the table's bytes
//!   (binary version and git revision, job/config/schema/prompt hashes, model and tokenizer
//!   sha256, decoding and limits, device). Two runs whose `hashes` and `inputs` are equal produce
//!   the same `table.csv`; the tests check exactly that.
//! - [`RunInfo`] (`run`): what differs every time (start/end times, host, CPU/GPU, driver, CUDA,
//!   NCCL versions, SLURM ids, counts of this invocation).

use crate::run::hashes::sha256_hex;
use crate::run::job::{DecodingSection, DeviceKind, JobConfig, LimitsSection};
use crate::run::shard::Shard;
use crate::run::store::write_atomic;
use crate::run::RunSummary;
use crate::schema::Schema;
use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Manifest layout version.
pub const FORMAT: u32 = 1;
pub const FILE_NAME: &str = "manifest.json";

/// The paramx version and git revision this binary was built from (`build.rs`); "unknown" when
/// it was built outside a git checkout.
pub fn build_revision() -> &'static str {
    option_env!("PARAMX_GIT_REVISION").unwrap_or("unknown")
}

/// Everything that decides the output bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reproducibility {
    pub paramx_version: String,
    pub git_revision: String,
    /// The key of every paper record of this run (combines the hashes below).
    pub job_hash: String,
    /// [`JobConfig::output_hash`]: limits, decoding, tensor-parallel degree.
    pub config_hash: String,
    pub schema_sha256: String,
    /// sha256 of the system prompt and the instructions derived from the schema.
    pub prompt_sha256: String,
    /// The model's file name(s) and the sha256 over their contents.
    pub model_file: String,
    pub model_sha256: String,
    /// sha256 of the tokenizer as the run built it (vocabulary, merges, special tokens).
    pub tokenizer_sha256: String,
    pub decoding: DecodingSection,
    pub limits: LimitsSection,
    pub device: DeviceKind,
    pub tp: usize,
}

/// One input PDF: its name and the sha256 its record is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InputEntry {
    pub file: String,
    pub sha256: String,
}

/// The inputs a run (or one array task) was responsible for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    /// `None` for an unsplit run.
    pub shard: Option<Shard>,
    pub files: Vec<InputEntry>,
}

/// Counts of this invocation (a resumed run reuses what earlier ones did).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Counts {
    pub papers: usize,
    pub done: usize,
    pub reused: usize,
    pub failed: usize,
    pub experiments: usize,
    pub values: usize,
    pub dropped: usize,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub interrupted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Gpu {
    /// `nvidia-smi` rows: index, name, driver, memory, bus id (what this job can see).
    pub devices: Vec<String>,
    /// The highest CUDA version the driver supports (`nvidia-smi`).
    pub cuda_driver: Option<String>,
    /// Runtime libraries found on the library path, by file name (e.g. `libnccl.so.2.28.3`).
    pub libraries: BTreeMap<String, String>,
    pub cuda_visible_devices: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Environment {
    pub hostname: String,
    pub os: String,
    pub cpu_model: String,
    pub cpu_threads: usize,
    pub gpu: Option<Gpu>,
    /// `SLURM_*` job/array/node ids and `NCCL_*` settings in effect.
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Times {
    pub started_utc: String,
    pub finished_utc: String,
    pub wall_secs: f64,
    pub model_load_secs: f64,
}

/// The half that changes from run to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunInfo {
    pub counts: Counts,
    pub times: Times,
    pub environment: Environment,
}

/// A whole manifest (`kind` = "run" for `paramx run`, "merge" for `paramx merge`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub kind: String,
    pub hashes: Reproducibility,
    pub inputs: Inputs,
    pub run: RunInfo,
}

impl Manifest {
    pub fn read(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a paramx manifest", path.display()))
    }

    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(FILE_NAME);
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        write_atomic(&path, &bytes)?;
        Ok(path)
    }
}

/// The hashes of a run. `model_sha256` comes from the cached hash of `run::hashes::model_hash`.
pub fn reproducibility(
    job: &JobConfig,
    schema: &Schema,
    model_path: &Path,
    model_sha256: &str,
    tokenizer_sha256: String,
    job_hash: &str,
) -> Result<Reproducibility> {
    Ok(Reproducibility {
        paramx_version: env!("CARGO_PKG_VERSION").to_string(),
        git_revision: build_revision().to_string(),
        job_hash: job_hash.to_string(),
        config_hash: crate::run::hashes::settings_hash(job),
        schema_sha256: crate::run::hashes::schema_hash(schema)?,
        prompt_sha256: crate::run::hashes::prompt_hash(schema),
        model_file: model_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        model_sha256: model_sha256.to_string(),
        tokenizer_sha256,
        decoding: job.decoding.clone(),
        limits: job.limits.clone(),
        device: job.hardware.device,
        tp: job.hardware.tp,
    })
}

/// The manifest of one `paramx run` (or one array task of it).
#[allow(clippy::too_many_arguments)]
pub fn run_manifest(
    job: &JobConfig,
    schema: &Schema,
    model_path: &Path,
    model_sha256: &str,
    tokenizer: &crate::model::tokenizer::Tokenizer,
    summary: &RunSummary,
    shard: Shard,
    files: Vec<InputEntry>,
    started: SystemTime,
    model_load_secs: f64,
) -> Result<Manifest> {
    let finished = SystemTime::now();
    Ok(Manifest {
        format: FORMAT,
        kind: "run".into(),
        hashes: reproducibility(
            job,
            schema,
            model_path,
            model_sha256,
            crate::run::hashes::tokenizer_hash(tokenizer)?,
            &summary.job_hash,
        )?,
        inputs: Inputs {
            shard: shard.is_split().then_some(shard),
            files,
        },
        run: RunInfo {
            counts: summary.counts.clone(),
            times: Times {
                started_utc: utc_rfc3339(started),
                finished_utc: utc_rfc3339(finished),
                wall_secs: finished
                    .duration_since(started)
                    .map_or(0.0, |d| d.as_secs_f64()),
                model_load_secs,
            },
            environment: environment(job.hardware.device),
        },
    })
}

/// The sha256 each PDF's record is keyed by: of its bytes, or (unreadable file) of its path,
/// as [`crate::run::record::PaperRecord::pdf_error`] does. Sorted by file name, then sha256.
pub fn input_entries(pdfs: &[PathBuf]) -> Vec<InputEntry> {
    let mut v: Vec<InputEntry> = pdfs
        .par_iter()
        .map(|p| InputEntry {
            file: p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
            sha256: match std::fs::read(p) {
                Ok(bytes) => sha256_hex(&bytes),
                Err(_) => sha256_hex(p.to_string_lossy().as_bytes()),
            },
        })
        .collect();
    v.sort();
    v
}

/// UTC time as RFC 3339 with seconds (`2026-11-24T01:37:37Z`).
pub fn utc_rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (proleptic Gregorian; H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k.trim(), "model name" | "Model" | "cpu model").then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Runs a diagnostic command for at most `limit` (a hung `nvidia-smi` must not hang the run).
fn command_output(program: &str, args: &[&str], limit: Duration) -> Option<String> {
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let start = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                use std::io::Read;
                child.stdout.take()?.read_to_string(&mut out).ok()?;
                return status.success().then_some(out);
            }
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// The newest `stem.so.X.Y.Z` on the library path, by file name (the version is in the name).
fn library_version(stem: &str) -> Option<String> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    if let Some(h) = std::env::var_os("CUDA_HOME") {
        dirs.push(PathBuf::from(h).join("lib64"));
    }
    dirs.extend(
        [
            "/usr/local/cuda/lib64",
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib64",
            "/usr/lib",
        ]
        .iter()
        .map(PathBuf::from),
    );
    let prefix = format!("{stem}.so.");
    let mut best: Option<(Vec<u64>, String)> = None;
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(ver) = name.strip_prefix(&prefix) else {
                continue;
            };
            let parts: Vec<u64> = ver.split('.').map_while(|p| p.parse().ok()).collect();
            if best.as_ref().is_none_or(|(b, _)| parts > *b) {
                best = Some((parts, format!("{name} ({})", d.display())));
            }
        }
    }
    best.map(|(_, s)| s)
}

fn gpu_info() -> Gpu {
    let limit = Duration::from_secs(10);
    let devices = command_output(
        "nvidia-smi",
        &[
            "--query-gpu=index,name,driver_version,memory.total,pci.bus_id",
            "--format=csv,noheader",
        ],
        limit,
    )
    .map(|s| s.lines().map(|l| l.trim().to_string()).collect())
    .unwrap_or_default();
    let cuda_driver = command_output("nvidia-smi", &[], limit).and_then(|s| {
        let i = s.find("CUDA Version:")?;
        s[i + "CUDA Version:".len()..]
            .split_whitespace()
            .next()
            .map(str::to_string)
    });
    let libraries = ["libnccl", "libcudart", "libcublas", "libcuda"]
        .iter()
        .filter_map(|l| Some((l.to_string(), library_version(l)?)))
        .collect();
    Gpu {
        devices,
        cuda_driver,
        libraries,
        cuda_visible_devices: std::env::var("CUDA_VISIBLE_DEVICES").ok(),
    }
}

/// Host, CPU, GPU (only for CUDA jobs: `nvidia-smi` can be slow), SLURM ids, NCCL settings.
pub fn environment(device: DeviceKind) -> Environment {
    let env = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("NCCL_")
                || matches!(
                    k.as_str(),
                    "SLURM_JOB_ID"
                        | "SLURM_ARRAY_JOB_ID"
                        | "SLURM_ARRAY_TASK_ID"
                        | "SLURM_ARRAY_TASK_COUNT"
                        | "SLURM_RESTART_COUNT"
                        | "SLURM_JOB_NODELIST"
                        | "SLURMD_NODENAME"
                        | "SLURM_CPUS_PER_TASK"
                        | "SLURM_JOB_PARTITION"
                )
        })
        .collect();
    Environment {
        hostname: read_trimmed("/proc/sys/kernel/hostname")
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_default(),
        os: format!(
            "{} {}",
            std::env::consts::OS,
            read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default()
        ),
        cpu_model: cpu_model(),
        cpu_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        gpu: (device == DeviceKind::Cuda).then(gpu_info),
        env,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        let at = |s: u64| utc_rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_795_484_257), "2026-11-24T01:37:37Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn unreadable_input_is_keyed_like_its_error_record() -> Result<()> {
        let d = tempfile::tempdir()?;
        let good = d.path().join("b.pdf");
        std::fs::write(&good, b"%PDF-1.4 x")?;
        let gone = d.path().join("a.pdf");
        let entries = input_entries(&[good.clone(), gone.clone()]);
        assert_eq!(entries[0].file, "a.pdf");
        let rec = crate::run::record::PaperRecord::pdf_error(&gone, "j", "missing");
        assert_eq!(entries[0].sha256, rec.key.sha256);
        assert_eq!(entries[1].sha256, crate::pdf::sha256_hex(b"%PDF-1.4 x"));
        Ok(())
    }

    #[test]
    fn environment_names_the_cpu() {
        let e = environment(DeviceKind::Cpu);
        assert!(!e.cpu_model.is_empty());
        assert!(e.cpu_threads >= 1);
        assert!(e.gpu.is_none());
    }
}
