//! Every hash a run records, in one place, each with one formula: what keys a paper's record
//! (the job hash), and the parts the manifest names beside it (settings, model files, schema,
//! prompt, tokenizer). A finished paper is skipped on a rerun only when its record carries the
//! same job hash, so whatever changes the output must change this hash.

use crate::model::tokenizer::Tokenizer;
use crate::run::job::JobConfig;
use crate::run::layout::OutDir;
use crate::schema::Schema;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// sha256 of `bytes`, in lowercase hex (the one formula of every hash below).
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::pdf::sha256_hex(bytes)
}

/// The hash that keys a job's records: settings, model files, schema, prompt and pipeline
/// version (see [`crate::run::store::RecordKey`]). Each part enters as its own hash, the one the
/// manifest records, so the two can never disagree on what a part is.
pub fn job_hash(job: &JobConfig, schema: &Schema, model_hash: &str) -> Result<String> {
    let mut h = Sha256::new();
    h.update(settings_hash(job));
    h.update(model_hash);
    h.update(schema_hash(schema)?);
    h.update(prompt_hash(schema));
    h.update(crate::run::PIPELINE_VERSION.to_le_bytes());
    Ok(hex::encode(h.finalize()))
}

/// Stable hash of the job settings that decide the output: limits, decoding and the
/// tensor-parallel size. Paths are left out: moving a job's folder must not invalidate its
/// finished papers.
pub fn settings_hash(job: &JobConfig) -> String {
    let key = serde_json::json!({
        "limits": job.limits,
        "decoding": job.decoding,
        "tp": job.hardware.tp,
    });
    sha256_hex(key.to_string().as_bytes())
}

/// sha256 of the schema file's bytes (the meaning of every column).
pub fn schema_hash(schema: &Schema) -> Result<String> {
    let bytes = std::fs::read(&schema.path)
        .with_context(|| format!("cannot read schema {}", schema.path.display()))?;
    Ok(sha256_hex(&bytes))
}

/// sha256 of the prompt text that does not depend on the paper (`run::question::template`).
pub fn prompt_hash(schema: &Schema) -> String {
    sha256_hex(crate::run::question::template(schema).as_bytes())
}

/// sha256 of the tokenizer's canonical JSON.
pub fn tokenizer_hash(tok: &Tokenizer) -> Result<String> {
    let json = tok
        .inner()
        .to_string(false)
        .map_err(|e| anyhow::anyhow!("cannot serialise the tokenizer: {e}"))?;
    Ok(sha256_hex(json.as_bytes()))
}

/// sha256 of the model's files, cached beside the outputs by (path, size, mtime): hashing a
/// 145 GB model on every run would cost minutes.
pub fn model_hash(path: &Path, out: &OutDir) -> Result<String> {
    let mut files: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    files.sort();
    // A model is regular files of some size: `/dev/zero` or a FIFO would be hashed forever.
    for f in &files {
        let md = std::fs::metadata(f).with_context(|| format!("cannot stat {}", f.display()))?;
        if !md.is_file() {
            bail!("model {}: not a regular file", f.display());
        }
    }
    if !files
        .iter()
        .any(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 0))
    {
        bail!(
            "model {}: every file is empty: not a model's weights",
            path.display()
        );
    }
    let cache_path = out.model_hashes();
    let mut cache: std::collections::BTreeMap<String, String> = std::fs::read(&cache_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut all = Sha256::new();
    for f in &files {
        let md = std::fs::metadata(f).with_context(|| format!("cannot stat {}", f.display()))?;
        let mtime = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        // Keyed by file name, not full path: the sbatch templates stage the model to node-local
        // scratch (`cp -p` keeps size and mtime), and the copy must not be hashed again.
        let name = f.file_name().map_or_else(
            || f.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let key = format!("{name}|{}|{}", md.len(), mtime);
        let h = match cache.get(&key) {
            Some(h) => h.clone(),
            None => {
                let h = crate::fetch::sha256_file_unless(f, &crate::run::stop_requested)?;
                cache.insert(key, h.clone());
                h
            }
        };
        all.update(
            f.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        all.update(h);
    }
    std::fs::create_dir_all(out.root())
        .with_context(|| format!("cannot create {}", out.root().display()))?;
    crate::run::store::write_atomic(
        &cache_path,
        serde_json::to_string_pretty(&cache)?.as_bytes(),
    )?;
    Ok(hex::encode(all.finalize()))
}
