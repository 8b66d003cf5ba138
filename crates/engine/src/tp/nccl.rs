//! The NCCL communicator: one process per GPU, collectives on the device's own stream.
//!
//! Setup ([`NcclComm::from_rank_env`]): the rank opens CUDA device `device_ordinal` with its own
//! stream; rank 0 creates the NCCL unique id and publishes it in the job's private rendezvous
//! directory ([`super::launch::publish`]), the others wait for that file; then every rank joins
//! the communicator. No TCP port is chosen by us (NCCL's bootstrap picks an ephemeral one and
//! puts it in the id) and nothing outside the job's directory is touched.
//!
//! Collectives are candle [`CustomOp1`]s: the NCCL call is enqueued on the same CUDA stream as
//! the surrounding kernels, so no host synchronisation is added to a forward pass.
//!
//! Nothing hangs: NCCL collectives block the *stream*, not the host, so a dead peer shows up as
//! work that never completes. A watchdog thread records an event after every collective and
//! polls NCCL's asynchronous error state; when a collective is not complete after the timeout, or
//! NCCL reports an error (a peer's connection dropped), it aborts the communicator
//! (`ncclCommAbort`, which releases the stuck kernels), prints the reason, and exits the process
//! with status [`EXIT_COLLECTIVE_FAILED`]. The launcher then ends the other ranks and reports
//! this one. Joining the communicator (`ncclCommInitRank`, which waits for every rank and cannot
//! be aborted before it returns) is guarded the same way.

use super::comm::Communicator;
use super::launch::{publish, wait_for, RankEnv};
use anyhow::Context as _;
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::{CudaStorage, WrapErr};
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor};
use cudarc::driver::{CudaEvent, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr};
use cudarc::nccl::{result as nccl, sys, NcclType};
use half::{bf16, f16};
use std::collections::VecDeque;
use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Exit status of a rank whose collective failed or timed out.
pub const EXIT_COLLECTIVE_FAILED: i32 = 3;

/// Name of the unique-id file in the rendezvous directory.
const ID_FILE: &str = "nccl-id";

/// How often the watchdog looks at the outstanding collectives.
const POLL: Duration = Duration::from_millis(50);

/// A `ncclComm_t` that may move between threads.
struct RawComm(sys::ncclComm_t);

// SAFETY: an NCCL communicator is a heap object owned by the NCCL library, not tied to the
// thread that created it. Calls that enqueue work on it are serialised by `Inner::enqueue`;
// `ncclCommGetAsyncError` and `ncclCommAbort` are documented as callable from another thread
// while the communicator is in use (that is what they are for).
unsafe impl Send for RawComm {}
unsafe impl Sync for RawComm {}

struct Pending {
    seq: u64,
    op: &'static str,
    enqueued: Instant,
    done: CudaEvent,
}

struct Inner {
    comm: RawComm,
    rank: usize,
    world: usize,
    stream: Arc<CudaStream>,
    timeout: Duration,
    /// Next collective number; the lock also serialises enqueueing (NCCL forbids concurrent
    /// calls on one communicator).
    enqueue: Mutex<u64>,
    pending: Mutex<VecDeque<Pending>>,
    stop: AtomicBool,
}

impl Inner {
    fn last_error(&self) -> String {
        // SAFETY: the communicator is valid for the lifetime of `self`; NCCL returns a pointer to
        // a NUL-terminated string it owns (or null).
        let p = unsafe { sys::ncclGetLastError(self.comm.0) };
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: non-null, NUL-terminated, owned by NCCL and not freed while we copy it.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    }

    fn error(&self, what: &str, e: nccl::NcclError) -> candle_core::Error {
        candle_core::Error::Msg(format!(
            "rank {}: NCCL {what} failed: {:?} {}",
            self.rank,
            e.0,
            self.last_error()
        ))
    }

    /// Enqueues one collective with `launch(src, dst, comm, stream)` and registers it with the
    /// watchdog. `out_len` is the number of output elements.
    fn collective<T: DeviceRepr + NcclType>(
        &self,
        op: &'static str,
        src: &CudaSlice<T>,
        (start, end): (usize, usize),
        out_len: usize,
        launch: impl FnOnce(
            *const c_void,
            *mut c_void,
            usize,
        ) -> std::result::Result<(), nccl::NcclError>,
    ) -> Result<CudaSlice<T>> {
        let mut seq = self.enqueue.lock().unwrap_or_else(PoisonError::into_inner);
        let view = src.slice(start..end);
        // SAFETY: every element is written by the collective before anything reads it.
        let mut dst = unsafe { self.stream.alloc::<T>(out_len) }.w()?;
        {
            let (s, _read) = view.device_ptr(&self.stream);
            let (d, _write) = dst.device_ptr_mut(&self.stream);
            launch(s as *const c_void, d as *mut c_void, end - start)
                .map_err(|e| self.error(op, e))?;
        }
        let done = self.stream.record_event(None).w()?;
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(Pending {
                seq: *seq,
                op,
                enqueued: Instant::now(),
                done,
            });
        *seq += 1;
        Ok(dst)
    }

    fn all_reduce<T: DeviceRepr + NcclType>(
        &self,
        src: &CudaSlice<T>,
        range: (usize, usize),
    ) -> Result<CudaSlice<T>> {
        let (comm, stream) = (self.comm.0, self.stream.cu_stream() as sys::cudaStream_t);
        self.collective(
            "all_reduce_sum",
            src,
            range,
            range.1 - range.0,
            |s, d, n| {
                // SAFETY: `s` and `d` point to `n` elements of `T` on this rank's device, ordered on
                // `stream` by the device_ptr guards; the communicator is alive.
                unsafe {
                    nccl::all_reduce(
                        s,
                        d,
                        n,
                        T::as_nccl_type(),
                        sys::ncclRedOp_t::ncclSum,
                        comm,
                        stream,
                    )
                }
                .map(|_| ())
            },
        )
    }

    fn all_gather<T: DeviceRepr + NcclType>(
        &self,
        src: &CudaSlice<T>,
        range: (usize, usize),
    ) -> Result<CudaSlice<T>> {
        let (comm, stream) = (self.comm.0, self.stream.cu_stream() as sys::cudaStream_t);
        let out = (range.1 - range.0) * self.world;
        self.collective("all_gather", src, range, out, |s, d, n| {
            // SAFETY: `s` holds `n` elements, `d` holds `n x world`, both on this rank's device
            // and ordered on `stream`; the communicator is alive.
            unsafe { nccl::all_gather(s, d, n, T::as_nccl_type(), comm, stream) }.map(|_| ())
        })
    }

    /// The watchdog's one job: never let a collective wait forever. See the module docs.
    fn watch(self: Arc<Self>) {
        if let Err(e) = self.stream.context().bind_to_thread() {
            self.die(&format!("watchdog cannot bind the CUDA context: {e:?}"));
        }
        while !self.stop.load(Ordering::Relaxed) {
            let mut state = sys::ncclResult_t::ncclSuccess;
            // SAFETY: valid communicator; `state` is a valid out-pointer.
            unsafe { sys::ncclCommGetAsyncError(self.comm.0, &mut state) };
            if !matches!(
                state,
                sys::ncclResult_t::ncclSuccess | sys::ncclResult_t::ncclInProgress
            ) {
                self.die(&format!("NCCL reported {state:?} {}", self.last_error()));
            }
            let overdue = {
                let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                loop {
                    match p.front().map(|f| f.done.try_is_complete()) {
                        Some(Ok(true)) => {
                            p.pop_front();
                        }
                        Some(Ok(false)) | None => break,
                        Some(Err(e)) => {
                            let f = &p[0];
                            let msg = format!("{} (collective #{}) failed: {e:?}", f.op, f.seq);
                            drop(p);
                            self.die(&msg);
                        }
                    }
                }
                p.front()
                    .filter(|f| f.enqueued.elapsed() > self.timeout)
                    .map(|f| (f.op, f.seq))
            };
            if let Some((op, seq)) = overdue {
                self.die(&format!(
                    "{op} (collective #{seq}) did not complete within {:?}: a peer rank died, \
                     hung, or is not calling the same collectives",
                    self.timeout
                ));
            }
            thread::sleep(POLL);
        }
    }

    fn die(&self, reason: &str) -> ! {
        eprintln!(
            "paramx rank {} of {}: {reason}; aborting the NCCL communicator",
            self.rank, self.world
        );
        // SAFETY: valid communicator; abort is the documented way to release a hung one from
        // another thread. The process exits right after, so the handle is never used again.
        unsafe {
            let _ = nccl::comm_abort(self.comm.0);
        }
        std::process::exit(EXIT_COLLECTIVE_FAILED)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Abort rather than finalize: finalizing waits for peers, which may be gone.
        // SAFETY: last owner of a valid communicator.
        unsafe {
            let _ = nccl::comm_abort(self.comm.0);
        }
    }
}

/// One rank of an NCCL group, bound to one GPU.
pub struct NcclComm {
    inner: Arc<Inner>,
    device: Device,
    watchdog: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for NcclComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclComm")
            .field("rank", &self.inner.rank)
            .field("world", &self.inner.world)
            .field("device", &self.device)
            .finish()
    }
}

impl NcclComm {
    /// Joins the job's NCCL group as the rank the launcher started (see module docs). Every
    /// wait (the id file, joining the group, each collective) gives up after `timeout`.
    pub fn from_rank_env(env: &RankEnv, timeout: Duration) -> anyhow::Result<Self> {
        let (rank, world) = (env.rank, env.world_size);
        let device = Device::new_cuda_with_stream(env.device_ordinal).with_context(|| {
            format!(
                "rank {rank}: cannot open CUDA device {} (CUDA_VISIBLE_DEVICES={:?})",
                env.device_ordinal,
                std::env::var("CUDA_VISIBLE_DEVICES").ok()
            )
        })?;
        let stream = device.as_cuda_device()?.cuda_stream();
        let id = if rank == 0 {
            let id = nccl::get_uniqueid()
                .map_err(|e| anyhow::anyhow!("rank 0: ncclGetUniqueId failed: {:?}", e.0))?;
            let bytes: Vec<u8> = id.internal.iter().map(|&c| c as u8).collect();
            publish(&env.rendezvous, ID_FILE, &bytes)?;
            id
        } else {
            let bytes = wait_for(&env.rendezvous, ID_FILE, timeout)
                .with_context(|| format!("rank {rank}: no NCCL id from rank 0"))?;
            let mut internal = [0 as std::ffi::c_char; 128];
            if bytes.len() != internal.len() {
                anyhow::bail!(
                    "rank {rank}: {} holds {} bytes, an NCCL id has 128",
                    env.rendezvous.join(ID_FILE).display(),
                    bytes.len()
                );
            }
            for (d, s) in internal.iter_mut().zip(&bytes) {
                *d = *s as std::ffi::c_char;
            }
            sys::ncclUniqueId { internal }
        };
        // ncclCommInitRank waits for every rank and cannot be interrupted: guard it from outside.
        let (joined, guard) = mpsc::channel::<()>();
        thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = guard.recv_timeout(timeout) {
                eprintln!(
                    "paramx rank {rank} of {world}: the NCCL group did not form within \
                     {timeout:?} (a peer rank did not join)"
                );
                std::process::exit(EXIT_COLLECTIVE_FAILED);
            }
        });
        stream
            .context()
            .bind_to_thread()
            .map_err(|e| anyhow::anyhow!("rank {rank}: cannot bind the CUDA context: {e:?}"))?;
        let mut comm = std::ptr::null_mut();
        // SAFETY: `comm` is a valid out-pointer; the id came from rank 0 of this job; the
        // device's context is current on this thread.
        unsafe { nccl::comm_init_rank(&mut comm, world as i32, id, rank as i32) }
            .map_err(|e| anyhow::anyhow!("rank {rank}: ncclCommInitRank failed: {:?}", e.0))?;
        let _ = joined.send(());
        let inner = Arc::new(Inner {
            comm: RawComm(comm),
            rank,
            world,
            stream,
            timeout,
            enqueue: Mutex::new(0),
            pending: Mutex::new(VecDeque::new()),
            stop: AtomicBool::new(false),
        });
        let watchdog = {
            let inner = inner.clone();
            thread::Builder::new()
                .name(format!("nccl-watchdog-{rank}"))
                .spawn(move || inner.watch())
                .context("cannot start the NCCL watchdog")?
        };
        Ok(Self {
            inner,
            device,
            watchdog: Some(watchdog),
        })
    }

    /// The rank's GPU. The model must live on this device (its stream carries the collectives).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Gathers along dimension 0 when every rank holds the same shape.
    fn gather_dim0(&self, t: &Tensor) -> Result<Tensor> {
        t.contiguous()?.apply_op1_no_bwd(&Gather(&self.inner))
    }
}

impl Drop for NcclComm {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.watchdog.take() {
            let _ = h.join();
        }
    }
}

fn contiguous(l: &Layout, op: &str) -> Result<(usize, usize)> {
    l.contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: the input is not contiguous")))
}

/// Runs `$f::<T>` on the storage's slice for each supported dtype.
macro_rules! by_dtype {
    ($s:expr, $op:expr, |$slice:ident| $body:expr) => {{
        let s: &CudaStorage = $s;
        let dev = s.device.clone();
        match s.dtype() {
            DType::BF16 => {
                let $slice = s.as_cuda_slice::<bf16>()?;
                CudaStorage::wrap_cuda_slice($body?, dev)
            }
            DType::F16 => {
                let $slice = s.as_cuda_slice::<f16>()?;
                CudaStorage::wrap_cuda_slice($body?, dev)
            }
            DType::F32 => {
                let $slice = s.as_cuda_slice::<f32>()?;
                CudaStorage::wrap_cuda_slice($body?, dev)
            }
            DType::F64 => {
                let $slice = s.as_cuda_slice::<f64>()?;
                CudaStorage::wrap_cuda_slice($body?, dev)
            }
            DType::U32 => {
                let $slice = s.as_cuda_slice::<u32>()?;
                CudaStorage::wrap_cuda_slice($body?, dev)
            }
            DType::I64 => {
                let $slice = s.as_cuda_slice::<i64>()?;
                CudaStorage::wrap_cuda_slice($body?, dev)
            }
            DType::U8 => {
                let $slice = s.as_cuda_slice::<u8>()?;
                CudaStorage::wrap_cuda_slice($body?, dev)
            }
            dt => candle_core::bail!("{}: dtype {dt:?} is not supported by NCCL here", $op),
        }
    }};
}

/// Sum over ranks, as a candle op on the device's stream.
struct AllReduce<'a>(&'a Inner);

impl CustomOp1 for AllReduce<'_> {
    fn name(&self) -> &'static str {
        "nccl-all-reduce-sum"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the NCCL all-reduce needs a CUDA tensor, this one is on the CPU")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let range = contiguous(l, self.name())?;
        let out = by_dtype!(s, self.name(), |slice| self.0.all_reduce(slice, range));
        Ok((out, l.shape().clone()))
    }
}

/// Concatenation over ranks along dimension 0 (every rank the same shape).
struct Gather<'a>(&'a Inner);

impl CustomOp1 for Gather<'_> {
    fn name(&self) -> &'static str {
        "nccl-all-gather"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the NCCL all-gather needs a CUDA tensor, this one is on the CPU")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let range = contiguous(l, self.name())?;
        let mut dims = l.shape().dims().to_vec();
        if dims.is_empty() {
            candle_core::bail!("{}: cannot gather a scalar", self.name());
        }
        dims[0] *= self.0.world;
        let out = by_dtype!(s, self.name(), |slice| self.0.all_gather(slice, range));
        Ok((out, Shape::from(dims)))
    }
}

impl Communicator for NcclComm {
    fn rank(&self) -> usize {
        self.inner.rank
    }

    fn world_size(&self) -> usize {
        self.inner.world
    }

    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        t.contiguous()?.apply_op1_no_bwd(&AllReduce(&self.inner))
    }

    /// NCCL gathers equal-sized blocks along the flat buffer, so the gathered dimension is moved
    /// to the front first, and uneven pieces (an uneven vocabulary split) are padded to the
    /// largest piece, gathered, and cut out again. The piece sizes are exchanged first (a tiny
    /// extra collective and one host read).
    fn all_gather(&self, t: &Tensor, dim: usize) -> Result<Tensor> {
        let world = self.inner.world;
        let front = if dim == 0 {
            t.clone()
        } else {
            t.transpose(0, dim)?
        };
        let n = front.dim(0)?;
        let size = Tensor::new(&[n as u32], t.device())?;
        let sizes: Vec<usize> = self
            .gather_dim0(&size)?
            .to_vec1::<u32>()?
            .into_iter()
            .map(|s| s as usize)
            .collect();
        let max = sizes.iter().copied().max().unwrap_or(n);
        let padded = if n < max {
            let mut pad_shape = front.dims().to_vec();
            pad_shape[0] = max - n;
            let pad = Tensor::zeros(pad_shape, front.dtype(), front.device())?;
            Tensor::cat(&[&front, &pad], 0)?
        } else {
            front
        };
        let gathered = self.gather_dim0(&padded)?;
        let joined = if sizes.iter().all(|&s| s == max) {
            gathered
        } else {
            let pieces = (0..world)
                .map(|r| gathered.narrow(0, r * max, sizes[r]))
                .collect::<Result<Vec<_>>>()?;
            Tensor::cat(&pieces, 0)?
        };
        if dim == 0 {
            Ok(joined)
        } else {
            joined.transpose(0, dim)?.contiguous()
        }
    }
}
