//! The Qwen2 inference engine: configuration, weights, layers and the model itself.
//!
//! Data flow: [`load`] reads tensors (GGUF or safetensors, whole or one rank's slice) ->
//! [`qwen2::Qwen2`] runs token chunks through [`linear::Linear`] projections, [`rope`],
//! [`attention`] over a [`kv_cache::KvCache`] -> hidden states -> logits / greedy token.
//! Text in and out goes through [`tokenizer`] and [`chat`]; the decoding loop is
//! `crate::generate`.

pub mod attention;
pub mod chat;
pub mod config;
pub mod fused;
pub mod kv_cache;
pub mod linear;
pub mod load;
pub mod qgemv;
pub mod qwen2;
pub mod rope;
pub mod shapes;
pub mod tokenizer;

pub use config::Qwen2Config;
pub use qwen2::{ModelOptions, Qwen2};

use anyhow::{bail, Context, Result};
use std::path::Path;

/// A model ready to generate: weights (this rank's part) and tokenizer.
pub struct LoadedModel {
    pub model: Qwen2,
    pub tokenizer: tokenizer::Tokenizer,
}

/// Loads a Qwen2 model from a GGUF file or an HF model directory (`config.json`,
/// `tokenizer.json`, safetensors). Errors name the path and the reason (missing, truncated,
/// unknown architecture, ...).
pub fn load(path: &Path, opts: &ModelOptions) -> Result<LoadedModel> {
    check_stop(opts)?;
    if !path.exists() {
        bail!(
            "model {} not found (run `paramx fetch-model` or pass a GGUF file / HF directory)",
            path.display()
        );
    }
    if path.is_dir() {
        let cfg = Qwen2Config::from_hf_json(&path.join("config.json"))?;
        let src = load::safetensors::SafetensorsSource::open(path)?;
        let tokenizer = tokenizer::Tokenizer::from_hf_dir(path)?;
        let model = Qwen2::load(&cfg, &src, opts)?;
        return Ok(LoadedModel { model, tokenizer });
    }
    let src = load::gguf::GgufSource::open(path)?;
    let cfg =
        Qwen2Config::from_gguf(src.content()).with_context(|| format!("in {}", path.display()))?;
    check_stop(opts)?;
    let tokenizer = tokenizer::Tokenizer::from_gguf(src.content())
        .with_context(|| format!("building the tokenizer of {}", path.display()))?;
    let model = Qwen2::load(&cfg, &src, opts)?;
    Ok(LoadedModel { model, tokenizer })
}

/// The tokenizer (and chat template) of the model at `path`, read without its weights: a GGUF
/// file's header, or an HF directory's `tokenizer.json`. What a job's prompt limits are checked
/// with before the weights load.
pub fn load_tokenizer(path: &Path) -> Result<tokenizer::Tokenizer> {
    if path.is_dir() {
        return tokenizer::Tokenizer::from_hf_dir(path);
    }
    let src = load::gguf::GgufSource::open(path)?;
    tokenizer::Tokenizer::from_gguf(src.content())
        .with_context(|| format!("building the tokenizer of {}", path.display()))
}

/// Why a load ended early: the stop flag of [`ModelOptions::stop`] was set.
#[derive(Debug, thiserror::Error)]
#[error("stopped by signal while loading the model")]
pub struct LoadStopped;

/// Fails with [`LoadStopped`] once `opts.stop` is set.
pub(crate) fn check_stop(opts: &ModelOptions) -> Result<()> {
    match &opts.stop {
        Some(flag) if flag.load(std::sync::atomic::Ordering::SeqCst) => Err(LoadStopped.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// A stop flag set before or while the weights load ends the load with `LoadStopped`, which
    /// `paramx run` turns into the requeue exit code.
    #[test]
    fn a_stop_flag_ends_the_load() {
        let flag = Arc::new(AtomicBool::new(true));
        let opts = ModelOptions {
            stop: Some(flag.clone()),
            ..ModelOptions::cpu()
        };
        let err = load(Path::new("/no/such/model.gguf"), &opts)
            .err()
            .expect("a set flag stops before the file is read");
        assert!(err.is::<LoadStopped>(), "{err:#}");
        let cfg = crate::model::shapes::tiny();
        let src = crate::model::load::random::RandomSource::new(&cfg);
        let err = Qwen2::load(&cfg, &src, &opts)
            .err()
            .expect("a set flag stops between layers");
        assert!(err.is::<LoadStopped>(), "{err:#}");
        flag.store(false, Ordering::SeqCst);
        assert!(Qwen2::load(&cfg, &src, &opts).is_ok());
    }
}
