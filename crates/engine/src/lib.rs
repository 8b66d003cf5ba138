//! paramx's Qwen2 engine: one model implementation for the CPU, one GPU and N tensor-parallel
//! ranks.
//!
//! - [`model`]: loading (GGUF, safetensors, random weights at real shapes), the decoder, the
//!   fused CPU/CUDA kernels and the quantized matrix-vector products.
//! - [`generate`]: the decoding loop over a batch, with a shared prefix computed once.
//! - [`tp`]: the [`tp::Communicator`] the model is written against (one rank, or NCCL over N),
//!   and the launch of rank processes.
//!
//! The arrows point one way: `generate` → `model` → `tp`. Nothing here knows about PDFs, the
//! schema or the table: the binary crate asks questions and reads answers.

pub mod generate;
pub mod model;
pub mod tp;
