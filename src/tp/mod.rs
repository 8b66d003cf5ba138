//! Tensor parallelism: how ranks talk to each other.
//!
//! The model code (`crate::model`) is written once against [`Communicator`]; a single-rank run
//! uses [`SingleRank`] (every collective is the identity), CI runs two ranks in one process on
//! the CPU, and the cluster binary runs one process per GPU over NCCL (`nccl` feature).

pub mod comm;

pub use comm::{Communicator, SingleRank};
