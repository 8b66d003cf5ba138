//! Device-memory housekeeping that the plan relies on.
//!
//! candle allocates through CUDA's stream-ordered pool, which keeps freed blocks reserved for
//! reuse. Loading packs projections (`q | k | v`, `gate | up`) by concatenation, so every layer
//! frees its parts after the packed copy is made; measured on an H100 (72B rank 0), the pool then
//! still held 1.5 GiB after the load, memory the plan does not count and the activations cannot
//! always reuse (their sizes differ). Trimming the pool once after loading returns it.

use anyhow::Result;
use candle_core::Device;

/// Waits for the device and hands the memory pool's unused reserve back to the driver
/// (nothing to do on the CPU).
pub fn release_cached(device: &Device) -> Result<()> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => {
            use candle_core::backend::BackendDevice;
            use candle_core::cuda_backend::cudarc::driver::result;
            d.synchronize()?;
            let cu_device = d.cuda_stream().context().cu_device();
            // SAFETY: `cu_device` comes from a live context; the pool is the device's current
            // one (the pool candle's stream-ordered allocations come from), trimmed after the
            // synchronize above so no allocation is in flight.
            unsafe {
                let pool = result::device::get_mem_pool(cu_device)?;
                result::mem_pool::trim_to(pool, 0)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
