//! HF model directories: `config.json`, `tokenizer.json`, and one `model.safetensors` or
//! shards listed in `model.safetensors.index.json`; bf16 / f16 / f32 weights.
//!
//! Files are memory-mapped and a [`Slice`] copies only its own bytes, so a tensor-parallel rank
//! reads (pages in) only its part of each tensor.

use super::{slice_bytes, EmbeddingTable, Slice, Stacked, WeightSource};
use crate::model::linear::Weight;
use anyhow::{bail, Context, Result};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub struct SafetensorsSource {
    dir: PathBuf,
    files: MmapedSafetensors,
}

impl SafetensorsSource {
    /// Opens the weight files of an HF model directory.
    pub fn open(dir: &Path) -> Result<Self> {
        let files = weight_files(dir)?;
        // SAFETY: the mapped files must not be modified while mapped; model files are read-only
        // inputs. This is the contract of every mmap-based weight loader.
        let files = unsafe { MmapedSafetensors::multi(&files) }
            .map_err(anyhow::Error::from)
            .with_context(|| format!("opening safetensors in {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
        })
    }
}

/// The weight files of `dir`: those named in the index json, or the single `model.safetensors`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index)
            .with_context(|| format!("reading {}", index.display()))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", index.display()))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .with_context(|| format!("{} has no weight_map object", index.display()))?;
        let names: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
        let files: Vec<PathBuf> = names.into_iter().map(|n| dir.join(n)).collect();
        for f in &files {
            if !f.exists() {
                bail!(
                    "{} names {} but that file is missing",
                    index.display(),
                    f.display()
                );
            }
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    bail!(
        "{} has neither model.safetensors nor model.safetensors.index.json",
        dir.display()
    )
}

fn candle_dtype(d: ::safetensors::Dtype) -> Result<DType> {
    Ok(match d {
        ::safetensors::Dtype::BF16 => DType::BF16,
        ::safetensors::Dtype::F16 => DType::F16,
        ::safetensors::Dtype::F32 => DType::F32,
        other => bail!("unsupported weight dtype {other:?} (expected bf16, f16 or f32)"),
    })
}

impl SafetensorsSource {
    /// A tensor's file dtype, shape (after slicing) and, when sliced, the slice's bytes
    /// (`None`: the whole tensor, read in place from the mapping by [`Self::whole`]).
    fn raw(
        &self,
        name: &str,
        slice: Option<Slice>,
    ) -> Result<(Option<Vec<u8>>, Vec<usize>, DType)> {
        let view = self
            .files
            .get(name)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("tensor {name} not found in {}", self.dir.display()))?;
        let file_dtype = candle_dtype(view.dtype()).with_context(|| format!("tensor {name}"))?;
        let mut shape = view.shape().to_vec();
        let bytes = match slice {
            None => None,
            Some(s) => {
                let b = slice_bytes(view.data(), &shape, file_dtype.size_in_bytes(), s)
                    .with_context(|| format!("slicing tensor {name}"))?;
                shape[s.dim] = s.len;
                Some(b)
            }
        };
        Ok((bytes, shape, file_dtype))
    }

    /// The mapped bytes of a tensor that [`Self::raw`] found.
    fn whole(&self, name: &str) -> &[u8] {
        self.files.get(name).map(|v| v.data()).unwrap_or_default()
    }
}

impl WeightSource for SafetensorsSource {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn contains(&self, name: &str) -> bool {
        self.files.get(name).is_ok()
    }

    fn tensor(
        &self,
        name: &str,
        slice: Option<Slice>,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let (bytes, shape, file_dtype) = self.raw(name, slice)?;
        let data = bytes.as_deref().unwrap_or_else(|| self.whole(name));
        Ok(Tensor::from_raw_buffer(data, file_dtype, &shape, device)?.to_dtype(dtype)?)
    }

    /// Stacks the parts' bytes on the host (row-stacking row-major matrices is concatenating
    /// their bytes) and uploads once: the device never holds the parts.
    fn stacked_linear_weight(
        &self,
        parts: &[(&str, Option<Slice>)],
        dtype: DType,
        device: &Device,
    ) -> Result<Stacked> {
        let mut bytes = Vec::new();
        let (mut rows, mut width) = (0, None);
        for (name, slice) in parts {
            let (part, shape, file_dtype) = self.raw(name, *slice)?;
            let [r, c] = shape[..] else {
                bail!("tensor {name} has shape {shape:?}, not a matrix");
            };
            if width.is_some_and(|w| w != (c, file_dtype)) {
                bail!(
                    "cannot stack {name} ({shape:?}, {file_dtype:?}) under {}: widths or dtypes differ",
                    parts[0].0
                );
            }
            width = Some((c, file_dtype));
            rows += r;
            bytes.extend_from_slice(part.as_deref().unwrap_or_else(|| self.whole(name)));
        }
        let Some((cols, file_dtype)) = width else {
            bail!("nothing to stack");
        };
        let t = Tensor::from_raw_buffer(&bytes, file_dtype, &[rows, cols], device)?;
        Ok(Stacked::One(t.to_dtype(dtype)?))
    }

    fn linear_weight(
        &self,
        name: &str,
        slice: Option<Slice>,
        dtype: DType,
        device: &Device,
    ) -> Result<Weight> {
        Ok(Weight::Dense(self.tensor(name, slice, dtype, device)?))
    }

    fn embedding(
        &self,
        name: &str,
        slice: Option<Slice>,
        dtype: DType,
        device: &Device,
    ) -> Result<EmbeddingTable> {
        Ok(EmbeddingTable::Dense(
            self.tensor(name, slice, dtype, device)?,
        ))
    }
}
