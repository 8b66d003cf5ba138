//! paramx: PDFs -> text -> LLM extraction -> parameter table -> score.
//!
//! See `ARCHITECTURE.md` for the modules and what flows between them.

pub mod bench;
pub mod cmd;
pub mod eval;
pub mod fetch;
pub mod generate;
pub mod model;
pub mod pdf;
pub mod plan;
pub mod report;
pub mod rng;
pub mod run;
pub mod schema;
pub mod table;
pub mod tp;
