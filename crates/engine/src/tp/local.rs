//! N ranks as N threads of one process: the communicator CI runs tensor parallelism with.
//!
//! Each collective is a *round* numbered by how many collectives the rank has called before
//! (ranks call the same collectives in the same order, as with NCCL). Every rank deposits its
//! tensor in the round; the last one to arrive computes the result once, in rank order
//! (`((t0 + t1) + t2) + ...`), and every rank takes its own copy of that one result. So all ranks
//! get bit-identical outputs, whatever order the threads arrive in.
//!
//! Nothing blocks forever: a wait ends with an error when the round is not complete after the
//! group's timeout, when a rank that has not yet contributed drops its communicator (a rank that
//! returned an error or panicked), or when another rank found the group broken. The first
//! failure breaks the group for good, since the rounds of the ranks no longer line up.

use super::comm::Communicator;
use candle_core::{Result, Tensor};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Why a local collective failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalCommError {
    #[error(
        "rank {rank}: {op} (collective #{seq}) timed out after {after:?} waiting for rank(s) \
         {missing:?}"
    )]
    Timeout {
        rank: usize,
        op: Op,
        seq: u64,
        after: Duration,
        missing: Vec<usize>,
    },
    #[error("rank {rank}: {op} (collective #{seq}) cannot complete: rank {peer} {why}")]
    PeerGone {
        rank: usize,
        op: Op,
        seq: u64,
        peer: usize,
        why: &'static str,
    },
    #[error(
        "rank {rank}: collective #{seq} mismatch: this rank called {op}, rank {peer} called \
         {other}"
    )]
    Mismatch {
        rank: usize,
        seq: u64,
        op: Op,
        peer: usize,
        other: Op,
    },
    #[error("rank {rank}: {op} (collective #{seq}) failed: {reason}")]
    Failed {
        rank: usize,
        op: Op,
        seq: u64,
        reason: String,
    },
    #[error("rank {rank}: the tensor-parallel group is broken: {cause}")]
    Broken { rank: usize, cause: String },
}

/// The collective a round performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    AllReduceSum,
    AllGather { dim: usize },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::AllReduceSum => f.write_str("all_reduce_sum"),
            Op::AllGather { dim } => write!(f, "all_gather(dim {dim})"),
        }
    }
}

/// Creates the ranks of an in-process group.
pub struct LocalGroup;

impl LocalGroup {
    /// How long a collective waits for its peers by default. Generous: a CPU rank may spend a
    /// long time in a large matmul between collectives while its peer already waits.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

    /// `n` communicators, rank `i` at index `i`, each to be moved to its own thread. `n = 0`
    /// gives an empty group.
    #[allow(clippy::new_ret_no_self)] // a group *is* its ranks; there is no group object to keep
    pub fn new(n: usize) -> Vec<LocalComm> {
        Self::with_timeout(n, Self::DEFAULT_TIMEOUT)
    }

    /// Like [`LocalGroup::new`] with a chosen timeout for every collective.
    pub fn with_timeout(n: usize, timeout: Duration) -> Vec<LocalComm> {
        let shared = Arc::new(Shared {
            world: n,
            timeout,
            state: Mutex::new(State {
                rounds: BTreeMap::new(),
                departed: vec![None; n],
                broken: None,
            }),
            cv: Condvar::new(),
        });
        (0..n)
            .map(|rank| LocalComm {
                rank,
                shared: shared.clone(),
                next_seq: AtomicU64::new(0),
            })
            .collect()
    }
}

impl LocalGroup {
    /// Runs `body(rank, communicator)` for every rank of a new group, one thread per rank, and
    /// returns each rank's value in rank order, or the error that *came first*.
    ///
    /// Why "first": when one rank fails, its peers' next collectives fail too (`PeerGone`,
    /// `Broken`); those are consequences, and reporting them would hide the cause. Each rank's
    /// error is timed before its communicator can be dropped (this function keeps one handle
    /// until then), so the cause is always timed before the failures it provokes. A panicking
    /// rank is an error like any other (`rank i panicked: ...`). The error names its rank.
    pub fn run<T: Send>(
        n: usize,
        timeout: Duration,
        body: impl Fn(usize, Arc<LocalComm>) -> anyhow::Result<T> + Sync,
    ) -> anyhow::Result<Vec<T>> {
        let comms = Self::with_timeout(n, timeout);
        let body = &body;
        let outcomes: Vec<(Instant, anyhow::Result<T>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = comms
                .into_iter()
                .map(|comm| {
                    let rank = comm.rank;
                    let handle = std::thread::Builder::new()
                        .name(format!("paramx-rank-{rank}"))
                        .spawn_scoped(scope, move || {
                            let comm = Arc::new(comm);
                            let held = comm.clone();
                            let result =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    body(rank, comm)
                                }))
                                .unwrap_or_else(|panic| {
                                    Err(anyhow::anyhow!("panicked: {}", panic_message(&panic)))
                                });
                            let at = Instant::now();
                            // Only now may the peers learn that this rank is gone.
                            drop(held);
                            (at, result)
                        });
                    (rank, handle)
                })
                .collect();
            handles
                .into_iter()
                .map(|(rank, h)| match h {
                    Ok(h) => h.join().unwrap_or_else(|_| {
                        (
                            Instant::now(),
                            Err(anyhow::anyhow!("rank {rank}: its thread panicked")),
                        )
                    }),
                    Err(e) => (
                        Instant::now(),
                        Err(anyhow::anyhow!(
                            "cannot start the thread of rank {rank}: {e}"
                        )),
                    ),
                })
                .collect()
        });
        let first_failure = outcomes
            .iter()
            .enumerate()
            .filter(|(_, (_, r))| r.is_err())
            .min_by_key(|(rank, (at, _))| (*at, *rank))
            .map(|(rank, _)| rank);
        let mut values = Vec::with_capacity(n);
        for (rank, (_, result)) in outcomes.into_iter().enumerate() {
            match result {
                Ok(v) => values.push(v),
                Err(e) if Some(rank) == first_failure => {
                    return Err(e.context(format!("rank {rank} of {n} failed")));
                }
                Err(_) => {}
            }
        }
        Ok(values)
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

struct Shared {
    world: usize,
    timeout: Duration,
    state: Mutex<State>,
    cv: Condvar,
}

struct State {
    rounds: BTreeMap<u64, Round>,
    /// `Some(why)` once a rank dropped its communicator.
    departed: Vec<Option<&'static str>>,
    /// The first failure; every later collective on any rank reports it.
    broken: Option<String>,
}

struct Round {
    op: Op,
    /// First caller's rank, to name it in a mismatch.
    opened_by: usize,
    inputs: Vec<Option<Tensor>>,
    output: Option<std::result::Result<Tensor, String>>,
    taken: usize,
}

/// One rank of a [`LocalGroup`]. Use it from one thread: the round numbering assumes the rank's
/// collectives are called in program order.
pub struct LocalComm {
    rank: usize,
    shared: Arc<Shared>,
    next_seq: AtomicU64,
}

impl fmt::Debug for LocalComm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalComm")
            .field("rank", &self.rank)
            .field("world", &self.shared.world)
            .finish()
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // No code panics while holding the lock; recover the state anyway rather than cascade.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The result of a complete round, computed once, in rank order.
fn combine(op: Op, inputs: &[Tensor]) -> Result<Tensor> {
    let first = &inputs[0];
    match op {
        Op::AllReduceSum => {
            let mut acc = first.clone();
            for (peer, t) in inputs.iter().enumerate().skip(1) {
                if t.shape() != first.shape() || t.dtype() != first.dtype() {
                    candle_core::bail!(
                        "rank {peer} sent {:?} {:?}, rank 0 sent {:?} {:?}",
                        t.dtype(),
                        t.shape(),
                        first.dtype(),
                        first.shape()
                    );
                }
                acc = (acc + t)?;
            }
            Ok(acc)
        }
        Op::AllGather { dim } => Tensor::cat(inputs, dim),
    }
}

impl LocalComm {
    fn fail(&self, st: &mut State, err: LocalCommError) -> candle_core::Error {
        if st.broken.is_none() {
            st.broken = Some(err.to_string());
        }
        self.shared.cv.notify_all();
        candle_core::Error::wrap(err)
    }

    fn collective(&self, op: Op, t: &Tensor) -> Result<Tensor> {
        let (rank, world) = (self.rank, self.shared.world);
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + self.shared.timeout;
        let mut st = lock(&self.shared.state);
        if let Some(cause) = &st.broken {
            let cause = cause.clone();
            return Err(candle_core::Error::wrap(LocalCommError::Broken {
                rank,
                cause,
            }));
        }
        let round = st.rounds.entry(seq).or_insert_with(|| Round {
            op,
            opened_by: rank,
            inputs: vec![None; world],
            output: None,
            taken: 0,
        });
        if round.op != op {
            let (peer, other) = (round.opened_by, round.op);
            let err = LocalCommError::Mismatch {
                rank,
                seq,
                op,
                peer,
                other,
            };
            return Err(self.fail(&mut st, err));
        }
        round.inputs[rank] = Some(t.clone());
        if round.inputs.iter().all(Option::is_some) {
            let inputs: Vec<Tensor> = round.inputs.iter_mut().filter_map(Option::take).collect();
            round.output = Some(combine(op, &inputs).map_err(|e| e.to_string()));
            self.shared.cv.notify_all();
        }
        loop {
            let Some(round) = st.rounds.get_mut(&seq) else {
                // Unreachable by construction: a round is removed only after every rank took
                // its result, including this one.
                let reason = "round vanished".to_string();
                let err = LocalCommError::Failed {
                    rank,
                    op,
                    seq,
                    reason,
                };
                return Err(self.fail(&mut st, err));
            };
            if let Some(output) = &round.output {
                let output = output.clone();
                round.taken += 1;
                if round.taken == world {
                    st.rounds.remove(&seq);
                }
                drop(st);
                return match output {
                    // A private copy: a rank may later mutate its tensor in place.
                    Ok(t) => t.copy(),
                    Err(reason) => {
                        let err = LocalCommError::Failed {
                            rank,
                            op,
                            seq,
                            reason,
                        };
                        let mut st = lock(&self.shared.state);
                        Err(self.fail(&mut st, err))
                    }
                };
            }
            let missing: Vec<usize> = (0..world).filter(|&r| round.inputs[r].is_none()).collect();
            if let Some(cause) = &st.broken {
                let cause = cause.clone();
                return Err(candle_core::Error::wrap(LocalCommError::Broken {
                    rank,
                    cause,
                }));
            }
            if let Some((peer, why)) = missing
                .iter()
                .find_map(|&r| st.departed[r].map(|why| (r, why)))
            {
                let err = LocalCommError::PeerGone {
                    rank,
                    op,
                    seq,
                    peer,
                    why,
                };
                return Err(self.fail(&mut st, err));
            }
            let now = Instant::now();
            if now >= deadline {
                let after = self.shared.timeout;
                let err = LocalCommError::Timeout {
                    rank,
                    op,
                    seq,
                    after,
                    missing,
                };
                return Err(self.fail(&mut st, err));
            }
            st = self
                .shared
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for LocalComm {
    /// Tells waiting peers that this rank will never contribute again, so they fail at once
    /// instead of waiting out the timeout.
    fn drop(&mut self) {
        let why = if std::thread::panicking() {
            "panicked"
        } else {
            "left the group (its communicator was dropped)"
        };
        let mut st = lock(&self.shared.state);
        st.departed[self.rank] = Some(why);
        self.shared.cv.notify_all();
    }
}

impl Communicator for LocalComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.shared.world
    }
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        self.collective(Op::AllReduceSum, t)
    }
    fn all_gather(&self, t: &Tensor, dim: usize) -> Result<Tensor> {
        self.collective(Op::AllGather { dim }, t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use std::thread;

    /// Runs `f(comm)` on one thread per rank and returns each rank's result in rank order.
    fn on_ranks<T: Send + 'static>(
        comms: Vec<LocalComm>,
        f: impl Fn(LocalComm) -> T + Send + Sync + 'static,
    ) -> Vec<thread::Result<T>> {
        let f = Arc::new(f);
        let handles: Vec<_> = comms
            .into_iter()
            .map(|c| {
                let f = f.clone();
                thread::spawn(move || f(c))
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    }

    fn rank_tensor(rank: usize) -> Tensor {
        // Values whose f32 sum depends on the order of addition.
        let v: Vec<f32> = (0..257)
            .map(|i| ((i * 7919 + rank * 104729) % 1000) as f32 * 1e-3 + (rank as f32) * 1e7)
            .collect();
        Tensor::from_vec(v, (257,), &Device::Cpu).unwrap()
    }

    #[test]
    fn all_reduce_sum_is_rank_ordered_and_bit_identical() {
        for world in [1, 2, 3, 4] {
            let results = on_ranks(LocalGroup::new(world), |c| {
                let t = rank_tensor(c.rank());
                (0..5)
                    .map(|_| c.all_reduce_sum(&t).unwrap().to_vec1::<f32>().unwrap())
                    .collect::<Vec<_>>()
            });
            let mut expected = rank_tensor(0);
            for r in 1..world {
                expected = (expected + rank_tensor(r)).unwrap();
            }
            let expected: Vec<u32> = expected
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect();
            for res in results {
                for round in res.unwrap() {
                    let bits: Vec<u32> = round.iter().map(|x| x.to_bits()).collect();
                    assert_eq!(bits, expected, "world {world}");
                }
            }
        }
    }

    #[test]
    fn all_gather_concatenates_in_rank_order() {
        let results = on_ranks(LocalGroup::new(3), |c| {
            let r = c.rank() as f32;
            let t = Tensor::new(&[[r, r + 0.5]], &Device::Cpu).unwrap(); // (1, 2)
            let rows = c.all_gather(&t, 0).unwrap().to_vec2::<f32>().unwrap();
            let cols = c.all_gather(&t, 1).unwrap().to_vec2::<f32>().unwrap();
            (rows, cols)
        });
        for res in results {
            let (rows, cols) = res.unwrap();
            assert_eq!(rows, vec![vec![0.0, 0.5], vec![1.0, 1.5], vec![2.0, 2.5]]);
            assert_eq!(cols, vec![vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]]);
        }
    }

    #[test]
    fn interleaved_collectives_with_uneven_gather_sizes() {
        let results = on_ranks(LocalGroup::new(2), |c| {
            // Rank 0 holds 3 rows, rank 1 two (an uneven vocabulary split).
            let n = 3 - c.rank();
            let t = Tensor::arange(0u32, n as u32, &Device::Cpu).unwrap();
            let g = c.all_gather(&t, 0).unwrap().to_vec1::<u32>().unwrap();
            let s = c
                .all_reduce_sum(&Tensor::ones(4, DType::F64, &Device::Cpu).unwrap())
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            (g, s)
        });
        for res in results {
            let (g, s) = res.unwrap();
            assert_eq!(g, vec![0, 1, 2, 0, 1]);
            assert_eq!(s, vec![2.0; 4]);
        }
    }

    #[test]
    fn missing_peer_times_out_with_its_rank() {
        let mut comms = LocalGroup::with_timeout(2, Duration::from_millis(200));
        let idle = comms.pop().unwrap(); // rank 1 stays alive but never calls
        let r0 = comms.pop().unwrap();
        let t = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
        let err = r0.all_reduce_sum(&t).unwrap_err().to_string();
        assert!(
            err.contains("rank 0: all_reduce_sum (collective #0) timed out"),
            "{err}"
        );
        assert!(err.contains("waiting for rank(s) [1]"), "{err}");
        // The group stays broken: the late rank learns why instead of hanging.
        let err = idle.all_reduce_sum(&t).unwrap_err().to_string();
        assert!(
            err.contains("rank 1: the tensor-parallel group is broken"),
            "{err}"
        );
        assert!(err.contains("timed out"), "{err}");
    }

    #[test]
    fn a_panicking_rank_gives_an_error_to_the_others() {
        // Long timeout: the error must come from the panic, not from the clock.
        let comms = LocalGroup::with_timeout(3, Duration::from_secs(600));
        let results = on_ranks(comms, |c| {
            let t = Tensor::ones(2, DType::F32, &Device::Cpu).unwrap();
            c.all_reduce_sum(&t)?;
            if c.rank() == 2 {
                panic!("rank 2 fails between collectives");
            }
            c.all_reduce_sum(&t)?;
            Ok::<_, candle_core::Error>(())
        });
        assert!(results[2].is_err(), "rank 2 panicked");
        for r in [0, 1] {
            let err = results[r]
                .as_ref()
                .unwrap()
                .as_ref()
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("rank 2 panicked") || err.contains("group is broken"),
                "rank {r}: {err}"
            );
            assert!(!err.contains("timed out"), "{err}");
        }
    }

    #[test]
    fn a_rank_returning_early_unblocks_the_others() {
        let comms = LocalGroup::with_timeout(2, Duration::from_secs(600));
        let results = on_ranks(comms, |c| {
            let t = Tensor::ones(2, DType::F32, &Device::Cpu).unwrap();
            if c.rank() == 1 {
                return Err("rank 1 could not load its shard".to_string());
            }
            c.all_reduce_sum(&t).map(|_| ()).map_err(|e| e.to_string())
        });
        let err = results[0].as_ref().unwrap().as_ref().unwrap_err();
        assert!(err.contains("rank 1 left the group"), "{err}");
    }

    #[test]
    fn run_reports_the_failing_rank_not_its_peers_consequences() {
        // Rank 1 fails after one collective; rank 0 goes on calling collectives and fails with
        // PeerGone. The job's error is rank 1's own, at once (not after the 600 s timeout).
        let start = Instant::now();
        let err = LocalGroup::run(2, Duration::from_secs(600), |rank, comm| {
            let t = Tensor::ones(2, DType::F32, &Device::Cpu)?;
            comm.all_reduce_sum(&t)?;
            if rank == 1 {
                anyhow::bail!("cannot read model shard 2");
            }
            for _ in 0..100 {
                comm.all_reduce_sum(&t)?;
            }
            Ok(rank)
        })
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.starts_with("rank 1 of 2 failed"), "{msg}");
        assert!(msg.contains("cannot read model shard 2"), "{msg}");
        assert!(!msg.contains("left the group"), "{msg}");
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn run_turns_a_panic_into_that_ranks_error_and_returns_values_in_rank_order() {
        let err = LocalGroup::run(3, Duration::from_secs(600), |rank, comm| {
            let t = Tensor::ones(2, DType::F32, &Device::Cpu)?;
            if rank == 2 {
                panic!("boom in rank two");
            }
            comm.all_reduce_sum(&t)?;
            Ok(())
        })
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.starts_with("rank 2 of 3 failed"), "{msg}");
        assert!(msg.contains("panicked: boom in rank two"), "{msg}");

        let values = LocalGroup::run(3, Duration::from_secs(60), |rank, comm| {
            let t = Tensor::new(&[rank as f32], &Device::Cpu)?;
            Ok((rank, comm.all_reduce_sum(&t)?.to_vec1::<f32>()?[0]))
        })
        .unwrap();
        assert_eq!(values, vec![(0, 3.0), (1, 3.0), (2, 3.0)]);
    }

    #[test]
    fn mismatched_collectives_and_shapes_are_errors_on_every_rank() {
        let results = on_ranks(LocalGroup::new(2), |c| {
            let t = Tensor::ones(2, DType::F32, &Device::Cpu).unwrap();
            if c.rank() == 0 {
                c.all_reduce_sum(&t).map(|_| ())
            } else {
                c.all_gather(&t, 0).map(|_| ())
            }
        });
        let errs: Vec<String> = results
            .into_iter()
            .map(|r| r.unwrap().unwrap_err().to_string())
            .collect();
        assert!(errs.iter().any(|e| e.contains("mismatch")), "{errs:?}");

        let results = on_ranks(LocalGroup::new(2), |c| {
            let t = Tensor::ones(2 + c.rank(), DType::F32, &Device::Cpu).unwrap();
            c.all_reduce_sum(&t).map(|_| ())
        });
        for r in results {
            let e = r.unwrap().unwrap_err().to_string();
            assert!(
                e.contains("all_reduce_sum (collective #0) failed: rank 1 sent"),
                "{e}"
            );
        }
    }
}
