//! paramx: PDFs -> text -> LLM extraction -> parameter table -> score.
//!
//! The binary crate: the pipeline of a run ([`run`]), the review page ([`report`]), the text
//! job ([`text`]), model fetching ([`fetch`]), the benchmarks' measuring code ([`bench`]) and
//! the thin command layer ([`cmd`]). The layers below live in their own crates, re-exported here under the module names
//! the rest of the code uses:
//!
//! | module | crate | job |
//! |---|---|---|
//! | [`pdf`] | `paramx-pdf` | PDF bytes to text, sections and metadata |
//! | [`plan`] | `paramx-plan` | the model's shape and a job's GPU memory plan |
//! | [`eval`], [`schema`], [`table`] | `paramx-eval` | fields, tables and scoring |
//! | [`model`], [`generate`], [`tp`] | `paramx-engine` | the Qwen2 engine |
//! | [`rng`] | `paramx-rng` | the seeded generator |
//!
//! See `ARCHITECTURE.md` for what flows between them.

pub mod bench;
pub mod cmd;
pub mod fetch;
pub mod report;
pub mod run;
pub mod text;

pub use paramx_engine::{generate, model, tp};
pub use paramx_eval as eval;
pub use paramx_eval::{schema, table};
pub use paramx_pdf as pdf;
pub use paramx_plan as plan;
pub use paramx_rng as rng;
