//! Tensor parallelism: how ranks talk to each other, and how their processes are started.
//!
//! The model code (`crate::model`) is written once against [`Communicator`]; a single-rank run
//! uses [`SingleRank`] (every collective is the identity), CI runs N ranks as N threads of one
//! process on the CPU ([`local::LocalGroup`]), and the cluster binary runs one process per GPU
//! over NCCL (`nccl` feature, [`nccl`]), started by [`launch`].

pub mod comm;
pub mod launch;
pub mod local;
#[cfg(feature = "nccl")]
pub mod nccl;

pub use comm::{Communicator, SingleRank};
