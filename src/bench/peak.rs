//! Peak device memory in use while a closure runs, as the driver sees it (`cuMemGetInfo`:
//! total - free, so the CUDA context, cuBLAS workspace and the stream-ordered pool's reserved
//! blocks all count, exactly the things the memory plan budgets for).
//!
//! Why sampling: candle allocates through cudarc without statistics, and the driver has no
//! high-water mark. A thread polls every ~100 µs; a transient shorter than that could be missed,
//! so the benchmark also reads the level after each phase. On the CPU there is nothing to read.

use anyhow::Result;
use candle_core::Device;

/// Bytes in use now on the device (`None` on the CPU).
pub fn used_now(device: &Device) -> Result<Option<u64>> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => {
            let ctx = d.cuda_stream().context().clone();
            let (free, total) = ctx.mem_get_info()?;
            Ok(Some((total - free) as u64))
        }
        _ => Ok(None),
    }
}

/// Runs `f` while sampling device memory every ~100 µs; returns its result and the peak bytes in
/// use.
pub fn with_peak<T>(device: &Device, f: impl FnOnce() -> Result<T>) -> Result<(T, Option<u64>)> {
    with_peak_every(device, std::time::Duration::from_micros(100), f)
}

/// [`with_peak`] with a chosen sampling interval: timed runs sample rarely (every few ms) so that
/// the driver calls of the sampler do not perturb the timing.
pub fn with_peak_every<T>(
    device: &Device,
    interval: std::time::Duration,
    f: impl FnOnce() -> Result<T>,
) -> Result<(T, Option<u64>)> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => {
            use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
            use std::sync::Arc;
            let ctx = d.cuda_stream().context().clone();
            let stop = Arc::new(AtomicBool::new(false));
            let peak = Arc::new(AtomicU64::new(used_now(device)?.unwrap_or(0)));
            let (s, p) = (stop.clone(), peak.clone());
            let sampler = std::thread::spawn(move || -> Result<()> {
                while !s.load(Ordering::Relaxed) {
                    let (free, total) = ctx.mem_get_info()?;
                    p.fetch_max((total - free) as u64, Ordering::Relaxed);
                    std::thread::sleep(interval);
                }
                Ok(())
            });
            let out = f().and_then(|v| {
                device.synchronize()?;
                Ok(v)
            });
            if let Some(now) = used_now(device)? {
                peak.fetch_max(now, Ordering::Relaxed);
            }
            stop.store(true, Ordering::Relaxed);
            let sampled = sampler
                .join()
                .map_err(|_| anyhow::anyhow!("memory sampler thread panicked"))?;
            sampled?;
            Ok((out?, Some(peak.load(Ordering::Relaxed))))
        }
        _ => {
            let _ = interval;
            Ok((f()?, None))
        }
    }
}
