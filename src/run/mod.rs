//! `paramx run`: PDFs -> prompts -> constrained generation -> grounded, normalized rows.

pub mod answer;
pub mod constrain;
pub mod job;
pub mod locate;
pub mod store;
