//! Keeping the ranks of a tensor-parallel run in step.
//!
//! With `hardware.tp = N > 1` every rank runs the same pipeline over its slice of the model, and
//! every collective inside the model must be called by all ranks in the same order with the same
//! shapes. So every decision that changes what is run must be the same on every rank:
//!
//! - **What to run** is decided by rank 0 alone, the [`Role::Leader`]: it extracts the text,
//!   looks up finished records, writes the error records of broken PDFs, and then *sends* the
//!   list of papers to run (their documents and record keys) to the followers
//!   ([`Lockstep::share`]). Followers never read a PDF or the record store, so a page timeout,
//!   a text cache or a record written meanwhile cannot make them disagree. From there on each
//!   step is a deterministic function of what was shared: prompt packing (the model's own
//!   tokenizer), grammar, greedy choice from the gathered full logits, parsing and grounding.
//! - **When to stop** (SIGUSR1/SIGTERM) is voted: every rank calls [`Lockstep::stop_vote`] at
//!   the same points (before each batch, before each prefill chunk and once per decode step,
//!   inside the grammar hook) and
//!   all stop when any rank has been asked to. The decision is sticky, so a batch cut short is
//!   known as such on every rank.
//! - **Errors**: a generation error on one rank leaves its peers inside a collective, so under
//!   tensor parallelism it ends the run (see `Runner::extract_batch`); the communicators time
//!   out rather than hang, and the launcher reports the rank that failed first.
//!
//! Only the leader writes anything (records, outputs, manifest, progress lines): see `run` and
//! `run::driver`. With one rank all of this is free: nothing is serialized or exchanged.

use crate::model::Qwen2;
use crate::tp::comm::{any_rank, broadcast_from_rank0};
use crate::tp::Communicator;
use anyhow::{Context, Result};
use candle_core::Device;
use serde::{de::DeserializeOwned, Serialize};
use std::cell::Cell;
use std::sync::Arc;

/// What a rank does in a run besides computing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role<'a> {
    /// Rank 0, or the only rank: decides what to run, shares it, and writes every record and
    /// output. Only the leader needs the model files' hash (it keys the records).
    Leader { model_hash: &'a str },
    /// Ranks 1..N: compute in step with the leader and write nothing.
    Follower,
}

impl<'a> Role<'a> {
    /// The role of `rank`: rank 0 leads, and only it needs `model_hash` (a follower need not
    /// hash hundreds of gigabytes of weights; what it is given is ignored).
    pub fn of_rank(rank: usize, model_hash: Option<&'a str>) -> Result<Self> {
        if rank > 0 {
            return Ok(Role::Follower);
        }
        let model_hash = model_hash.context("rank 0 leads the run and needs the model's hash")?;
        Ok(Role::Leader { model_hash })
    }

    pub fn is_leader(&self) -> bool {
        matches!(self, Role::Leader { .. })
    }
}

/// The run's side of the communicator: shared decisions and stop votes.
pub struct Lockstep {
    comm: Arc<dyn Communicator>,
    device: Device,
    /// Sticky: once a vote said stop, every later question gets "stopped".
    stopped: Cell<bool>,
}

impl Lockstep {
    pub fn new(model: &Qwen2) -> Self {
        Self {
            comm: model.comm().clone(),
            device: model.device().clone(),
            stopped: Cell::new(false),
        }
    }

    pub fn world_size(&self) -> usize {
        self.comm.world_size()
    }

    /// The leader's `value` on every rank: the leader passes `Some`, followers `None`. With
    /// more than one rank it travels as JSON through the communicator.
    pub fn share<T: Serialize + DeserializeOwned>(&self, value: Option<T>) -> Result<T> {
        if self.world_size() == 1 {
            return value.context("a single rank is always the leader and has the value");
        }
        let bytes = value
            .as_ref()
            .map(serde_json::to_vec)
            .transpose()
            .context("cannot serialize the work to share with the other ranks")?;
        let got = broadcast_from_rank0(self.comm.as_ref(), &self.device, bytes.as_deref())
            .context("cannot share the work with the other ranks")?;
        match value {
            Some(v) => Ok(v),
            None => {
                serde_json::from_slice(&got).context("the work received from rank 0 is malformed")
            }
        }
    }

    /// Whether the run must stop now: asked of every rank at the same point; `true` when any
    /// rank's stop flag (`run::stop_requested`) is set, and from then on.
    pub fn stop_vote(&self) -> Result<bool> {
        if !self.stopped.get() {
            let here = super::stop_requested();
            let any = any_rank(self.comm.as_ref(), &self.device, here)
                .context("cannot agree with the other ranks on whether to stop")?;
            self.stopped.set(any);
        }
        Ok(self.stopped.get())
    }

    /// Whether a vote has already decided to stop (no communication).
    pub fn stopped(&self) -> bool {
        self.stopped.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_zero_leads_and_needs_the_model_hash() {
        let role = Role::of_rank(0, Some("abc")).unwrap();
        assert_eq!(role, Role::Leader { model_hash: "abc" });
        assert!(role.is_leader());
        assert_eq!(Role::of_rank(1, None).unwrap(), Role::Follower);
        assert_eq!(Role::of_rank(3, Some("abc")).unwrap(), Role::Follower);
        assert!(Role::of_rank(0, None).is_err());
    }
}
