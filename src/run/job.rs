//! The job file (`paramx run --config job.toml`): everything that decides a run's output.
//!
//! One typed struct, read from TOML with unknown keys refused (a misspelt limit must not be
//! silently ignored), then overridden by command-line flags. Its canonical JSON form is hashed
//! into the run manifest, so two runs with equal hashes were asked the same question.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    #[default]
    Cpu,
    Cuda,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A GGUF file, or a Hugging Face model directory (config.json, tokenizer.json, safetensors).
    pub path: PathBuf,
    /// A model `paramx fetch-model` knows (e.g. `qwen2.5-coder-1.5b`): when `path` does not
    /// exist yet, it is downloaded there (hash-checked) before the run.
    #[serde(default)]
    pub fetch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareSection {
    #[serde(default)]
    pub device: DeviceKind,
    /// Tensor-parallel ranks (GPUs) for one model replica.
    #[serde(default = "one")]
    pub tp: usize,
    /// GPU preset for the memory plan (`a100-80gb`, `h100-80gb`, `h200`); ignored on the CPU.
    #[serde(default)]
    pub gpu: Option<String>,
    /// CPU threads for the model (0 = all cores).
    #[serde(default)]
    pub threads: usize,
}

/// Per-job token limits and the memory reserved for activations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Prompt tokens per paper, chat template included; the paper's text is cut to fit.
    pub max_input_tokens: usize,
    /// Generated tokens per paper: a hard stop.
    pub max_new_tokens: usize,
    /// Papers decoded together in one batch.
    #[serde(default = "one")]
    pub batch: usize,
    /// Prompt tokens processed per forward pass (bounds the activation peak).
    #[serde(default = "default_prefill_chunk")]
    pub prefill_chunk: usize,
    /// GiB per GPU reserved for activations; the plan refuses a job whose peak exceeds it.
    #[serde(default = "default_headroom")]
    pub activation_headroom_gib: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DecodingSection {
    /// 0 = greedy (the default: deterministic, reproducible).
    #[serde(default)]
    pub temperature: f64,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IoSection {
    /// PDF files or folders (searched for `*.pdf`, not recursively into hidden folders).
    pub inputs: Vec<PathBuf>,
    /// Output folder: `table.csv`, `results.jsonl`, `papers/`, `errors.jsonl`, `manifest.json`.
    pub out_dir: PathBuf,
    /// Parameter schema (fields, descriptions, vocabularies).
    pub schema: PathBuf,
    /// Optional gold CSV: when given, the run ends by scoring its table against it.
    #[serde(default)]
    pub gold: Option<PathBuf>,
}

/// A whole job file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    pub model: ModelSection,
    pub hardware: HardwareSection,
    pub limits: LimitsSection,
    #[serde(default)]
    pub decoding: DecodingSection,
    pub io: IoSection,
}

/// The smallest prompt budget a job may set: below it every paper would fail after the model
/// is loaded (the system prompt and a question take several hundred tokens), so the job is
/// refused before loading instead.
pub const MIN_INPUT_TOKENS: usize = 1024;

fn one() -> usize {
    1
}
fn default_prefill_chunk() -> usize {
    512
}
fn default_headroom() -> f64 {
    4.0
}

impl JobConfig {
    /// Reads a job file. Relative paths inside it are taken relative to the file's folder, so a
    /// job file means the same thing from whatever directory it is run.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read job file {}", path.display()))?;
        let mut job: JobConfig = toml::from_str(&text)
            .with_context(|| format!("job file {} is not a valid job", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        job.resolve_paths(base);
        job.validate()
            .with_context(|| format!("job file {}", path.display()))?;
        Ok(job)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.model.path);
        self.io.inputs.iter_mut().for_each(fix);
        fix(&mut self.io.out_dir);
        fix(&mut self.io.schema);
        if let Some(g) = self.io.gold.as_mut() {
            fix(g);
        }
    }

    /// Checks the limits make sense together. Called after loading and after flag overrides.
    pub fn validate(&self) -> Result<()> {
        let l = &self.limits;
        if l.max_input_tokens == 0 || l.max_new_tokens == 0 {
            bail!("limits.max_input_tokens and limits.max_new_tokens must be > 0");
        }
        if l.max_input_tokens < MIN_INPUT_TOKENS {
            bail!(
                "limits.max_input_tokens = {} cannot hold the instructions and one question with \
any of the paper (they alone take several hundred tokens); use at least {MIN_INPUT_TOKENS}",
                l.max_input_tokens
            );
        }
        if l.batch == 0 || l.prefill_chunk == 0 {
            bail!("limits.batch and limits.prefill_chunk must be > 0");
        }
        if !(l.activation_headroom_gib.is_finite() && l.activation_headroom_gib > 0.0) {
            bail!("limits.activation_headroom_gib must be a positive number of GiB");
        }
        if self.hardware.tp == 0 {
            bail!("hardware.tp must be >= 1");
        }
        let t = self.decoding.temperature;
        if !t.is_finite() || t < 0.0 {
            bail!("decoding.temperature must be a finite number >= 0 (got {t})");
        }
        if let Some(p) = self.decoding.top_p {
            if !(p > 0.0 && p <= 1.0) {
                bail!("decoding.top_p must be within (0, 1] (got {p})");
            }
        }
        if self.io.inputs.is_empty() {
            bail!("io.inputs is empty: name at least one PDF or folder");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = r#"
[model]
path = "../models/qwen.gguf"
[hardware]
device = "cpu"
[limits]
max_input_tokens = 6000
max_new_tokens = 1024
[io]
inputs = ["../data/sample"]
out_dir = "../out/sample"
schema = "schema.toml"
"#;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("job.toml");
        std::fs::write(&p, text).expect("write job");
        p
    }

    #[test]
    fn loads_with_defaults_and_relative_paths() -> Result<()> {
        let d = tempfile::tempdir()?;
        let job = JobConfig::load(&write(d.path(), JOB))?;
        assert_eq!(job.hardware.tp, 1);
        assert_eq!(job.limits.batch, 1);
        assert_eq!(job.limits.prefill_chunk, 512);
        assert_eq!(job.decoding.temperature, 0.0);
        for (bad, why) in [
            ("temperature = inf", "temperature"),
            ("temperature = -1.0", "temperature"),
            ("top_p = 7.5", "top_p"),
            ("top_p = 0.0", "top_p"),
        ] {
            let text = format!("{JOB}\n[decoding]\n{bad}\n");
            let err = match JobConfig::load(&write(d.path(), &text)) {
                Ok(_) => panic!("{bad} accepted"),
                Err(e) => format!("{e:#}"),
            };
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert_eq!(job.io.schema, d.path().join("schema.toml"));
        Ok(())
    }

    #[test]
    fn unknown_keys_are_refused_with_the_file_named() {
        let d = tempfile::tempdir().expect("tmp");
        let bad = JOB.replace("max_new_tokens", "max_new_token");
        let err = JobConfig::load(&write(d.path(), &bad)).expect_err("must fail");
        let msg = format!("{err:#}");
        assert!(msg.contains("job.toml"), "{msg}");
        assert!(msg.contains("max_new_token"), "{msg}");
    }

    #[test]
    fn zero_limits_are_refused() {
        let d = tempfile::tempdir().expect("tmp");
        let bad = JOB.replace("max_input_tokens = 6000", "max_input_tokens = 0");
        let err = JobConfig::load(&write(d.path(), &bad)).expect_err("must fail");
        assert!(format!("{err:#}").contains("max_input_tokens"));
    }

    #[test]
    fn a_budget_too_small_for_one_question_is_refused_before_loading() -> Result<()> {
        let d = tempfile::tempdir()?;
        let err = JobConfig::load(&write(
            d.path(),
            &JOB.replace("max_input_tokens = 6000", "max_input_tokens = 10"),
        ))
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("max_input_tokens = 10") && msg.contains("1024"),
            "{msg}"
        );
        Ok(())
    }

    #[test]
    fn settings_hash_ignores_paths_but_not_limits() -> Result<()> {
        let d = tempfile::tempdir()?;
        let a = JobConfig::load(&write(d.path(), JOB))?;
        let mut b = a.clone();
        b.io.out_dir = PathBuf::from("/elsewhere");
        assert_eq!(
            crate::run::hashes::settings_hash(&a),
            crate::run::hashes::settings_hash(&b)
        );
        b.limits.max_new_tokens += 1;
        assert_ne!(
            crate::run::hashes::settings_hash(&a),
            crate::run::hashes::settings_hash(&b)
        );
        Ok(())
    }
}
