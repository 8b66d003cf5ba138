//! GGUF files (llama.cpp's format): quantized weights, plus the tokenizer and chat template in
//! the metadata (read by `crate::model::tokenizer` / `chat`).
//!
//! The whole file is checked before any tensor is read: the architecture must be `qwen2` and
//! every tensor's bytes must lie inside the file, so a truncated download fails with a message
//! naming the file and the first missing tensor instead of a bare "failed to fill buffer".

use super::{slice_bytes, EmbeddingTable, Slice, WeightSource};
use crate::model::config::Qwen2Config;
use crate::model::linear::Weight;
use anyhow::{bail, Context, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{DType, Device, Tensor};
use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub struct GgufSource {
    path: PathBuf,
    content: gguf_file::Content,
    file: Mutex<File>,
}

impl GgufSource {
    /// Opens and validates a GGUF file.
    pub fn open(path: &Path) -> Result<Self> {
        let mut file =
            File::open(path).with_context(|| format!("opening model file {}", path.display()))?;
        let file_len = file
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        let content = gguf_file::Content::read(&mut file)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "{} is not a readable GGUF file (truncated or corrupt?)",
                    path.display()
                )
            })?;
        // Architecture first: an unknown one is a clearer message than a missing tensor.
        Qwen2Config::from_gguf(&content).with_context(|| format!("in {}", path.display()))?;
        for (name, info) in &content.tensor_infos {
            let bytes = info.shape.elem_count() / info.ggml_dtype.block_size()
                * info.ggml_dtype.type_size();
            let end = content.tensor_data_offset + info.offset + bytes as u64;
            if end > file_len {
                bail!(
                    "{} is truncated: tensor {name} ends at byte {end} but the file has {file_len} bytes",
                    path.display()
                );
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            content,
            file: Mutex::new(file),
        })
    }

    pub fn content(&self) -> &gguf_file::Content {
        &self.content
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn qtensor(&self, hf_name: &str, device: &Device) -> Result<QTensor> {
        let name =
            gguf_name(hf_name).with_context(|| format!("no GGUF name for tensor {hf_name}"))?;
        let mut file = self
            .file
            .lock()
            .map_err(|_| anyhow::anyhow!("GGUF reader poisoned"))?;
        let q = self
            .content
            .tensor(&mut *file, &name, device)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("reading tensor {name} from {}", self.path.display()))?;
        if q.dtype() == GgmlDType::Q5_0 {
            // candle multiplies Q5_0 with a scalar loop (measured: ~80% of the 0.5B's time);
            // its Q8_0 kernel is vectorised, and Q5_0 converts to Q8_0 without any loss.
            let data =
                q5_0_to_q8_0(&q.data()?).with_context(|| format!("converting tensor {name}"))?;
            let storage = QStorage::from_data(Cow::Owned(data), device, GgmlDType::Q8_0)?;
            return Ok(QTensor::new(storage, q.shape().clone())?);
        }
        Ok(q)
    }

    /// One slice of a quantized tensor, cut at block boundaries without dequantizing.
    fn qtensor_slice(
        &self,
        hf_name: &str,
        slice: Option<Slice>,
        device: &Device,
    ) -> Result<QTensor> {
        let q = self.qtensor(hf_name, device)?;
        let Some(slice) = slice else { return Ok(q) };
        let dtype = q.dtype();
        let dims = q.shape().dims().to_vec();
        let (bs, ts) = (dtype.block_size(), dtype.type_size());
        let [rows, cols] = dims[..] else {
            bail!("{hf_name}: can only slice 2-D quantized tensors, got {dims:?}")
        };
        let blocks = cols / bs;
        let bytes = q.data()?;
        let (data, shape) = match slice.dim {
            0 => (
                slice_bytes(&bytes, &[rows, blocks], ts, slice)?,
                (slice.len, cols),
            ),
            1 => {
                if slice.start % bs != 0 || slice.len % bs != 0 {
                    bail!("{hf_name}: column slice {slice:?} is not aligned to {dtype:?} blocks of {bs}");
                }
                let s = Slice {
                    dim: 1,
                    start: slice.start / bs,
                    len: slice.len / bs,
                };
                (
                    slice_bytes(&bytes, &[rows, blocks], ts, s)?,
                    (rows, slice.len),
                )
            }
            d => bail!("{hf_name}: bad slice dimension {d}"),
        };
        let storage = QStorage::from_data(Cow::Owned(data), device, dtype)?;
        Ok(QTensor::new(storage, shape)?)
    }
}

/// Bytes of one Q5_0 block: f16 scale, 32 high bits, 16 bytes of low nibbles.
const Q5_0_BLOCK: usize = 22;
/// Bytes of one Q8_0 block: f16 scale, 32 signed bytes.
const Q8_0_BLOCK: usize = 34;

/// Re-encodes Q5_0 blocks as Q8_0 blocks with the same scale. A Q5_0 value is `d * (q - 16)`
/// with `q` in `0..32`, so `q - 16` fits an `i8` and the Q8_0 block holds exactly the same
/// numbers (ggml's layout: element `j` uses the low nibble of `qs[j]` and bit `j` of `qh`,
/// element `j + 16` the high nibble of `qs[j]` and bit `j + 16`).
fn q5_0_to_q8_0(src: &[u8]) -> Result<Vec<u8>> {
    if !src.len().is_multiple_of(Q5_0_BLOCK) {
        bail!(
            "Q5_0 data of {} bytes is not a whole number of blocks",
            src.len()
        );
    }
    let mut out = Vec::with_capacity(src.len() / Q5_0_BLOCK * Q8_0_BLOCK);
    for b in src.chunks_exact(Q5_0_BLOCK) {
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let qs = &b[6..22];
        out.extend_from_slice(&b[0..2]);
        let mut vals = [0i8; 32];
        for j in 0..16 {
            let lo = (qs[j] & 0x0F) | ((((qh >> j) << 4) & 0x10) as u8);
            let hi = (qs[j] >> 4) | (((qh >> (j + 12)) & 0x10) as u8);
            vals[j] = lo as i8 - 16;
            vals[j + 16] = hi as i8 - 16;
        }
        out.extend(vals.iter().map(|&v| v as u8));
    }
    Ok(out)
}

/// HF tensor name -> llama.cpp GGUF name. Public so that the tests write their GGUF files with
/// the very map the loader reads them by.
pub fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (idx, rest) = rest.split_once('.')?;
    let (module, kind) = rest.rsplit_once('.')?;
    let g = match module {
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        _ => return None,
    };
    Some(format!("blk.{idx}.{g}.{kind}"))
}

impl WeightSource for GgufSource {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn contains(&self, name: &str) -> bool {
        gguf_name(name).is_some_and(|g| self.content.tensor_infos.contains_key(&g))
    }

    fn tensor(
        &self,
        name: &str,
        slice: Option<Slice>,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let t = self.qtensor(name, device)?.dequantize(device)?;
        let t = match slice {
            Some(s) => t.narrow(s.dim, s.start, s.len)?,
            None => t,
        };
        Ok(t.to_dtype(dtype)?.contiguous()?)
    }

    fn linear_weight(
        &self,
        name: &str,
        slice: Option<Slice>,
        dtype: DType,
        device: &Device,
    ) -> Result<Weight> {
        let q = self.qtensor_slice(name, slice, device)?;
        // Unquantized matrices (F32/F16/BF16 in the file) run as dense matmuls in `dtype`.
        if matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) {
            return Ok(Weight::Dense(q.dequantize(device)?.to_dtype(dtype)?));
        }
        Ok(Weight::Quantized(QMatMul::from_qtensor(q)?))
    }

    fn embedding(
        &self,
        name: &str,
        slice: Option<Slice>,
        dtype: DType,
        device: &Device,
    ) -> Result<EmbeddingTable> {
        let q = self.qtensor_slice(name, slice, device)?;
        if matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) {
            return Ok(EmbeddingTable::Dense(
                q.dequantize(device)?.to_dtype(dtype)?,
            ));
        }
        Ok(EmbeddingTable::Quantized(Arc::new(q)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q5_0_converts_to_q8_0_exactly() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (4, 64), &dev)?;
        let q5 = QTensor::quantize(&x, GgmlDType::Q5_0)?;
        let q8 = q5_0_to_q8_0(&q5.data()?)?;
        let q8 = QTensor::new(
            QStorage::from_data(Cow::Owned(q8), &dev, GgmlDType::Q8_0)?,
            (4, 64),
        )?;
        let (a, b) = (q5.dequantize(&dev)?, q8.dequantize(&dev)?);
        assert_eq!(
            a.flatten_all()?.to_vec1::<f32>()?,
            b.flatten_all()?.to_vec1::<f32>()?
        );
        Ok(())
    }

    #[test]
    fn maps_hf_names_to_gguf() {
        assert_eq!(
            gguf_name("model.layers.12.mlp.down_proj.weight").as_deref(),
            Some("blk.12.ffn_down.weight")
        );
        assert_eq!(
            gguf_name("model.layers.0.self_attn.q_proj.bias").as_deref(),
            Some("blk.0.attn_q.bias")
        );
        assert_eq!(
            gguf_name("model.embed_tokens.weight").as_deref(),
            Some("token_embd.weight")
        );
        assert_eq!(gguf_name("model.layers.0.self_attn.rotary.inv_freq"), None);
    }
}
