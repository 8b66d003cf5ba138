//! How much memory one GPU offers: a named preset, a number from the user, or (CUDA builds) the
//! driver's own answer.
//!
//! "Usable" is the total that `cuMemGetInfo` reports, i.e. what the driver lets a process
//! allocate from once nothing else runs on the card. It is less than the marketing size (ECC and
//! the driver's own reservation are gone). The CUDA context itself is *not* subtracted here: the
//! plan counts it as its own line.

use serde::Serialize;

const MIB: u64 = 1 << 20;

/// One GPU's memory, as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuMemory {
    /// Where the number came from: a preset name, `--gpu-mem-gib`, or the queried device name.
    pub name: String,
    pub usable_bytes: u64,
}

/// Known cards. Each value is the total `cuMemGetInfo` reports on an otherwise idle card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GpuPreset {
    /// A100-SXM4-80GB: 81,050 MiB (79.15 GiB) as reported by the CUDA runtime (PyTorch's
    /// `total_memory`); not measured here, override with `--gpu-mem-gib` if yours differs.
    #[value(name = "a100-80gb")]
    A100_80gb,
    /// H100 80GB HBM3: 85,017,493,504 bytes (79.18 GiB), measured with `cudaMemGetInfo` on the
    /// project's GPU test machine (driver 580.159.04).
    #[value(name = "h100-80gb")]
    H100_80gb,
    /// H200 141GB: 150,109,880,320 bytes (139.80 GiB), measured with `cudaMemGetInfo` on the
    /// project's GPU test machine (driver 580.159.04).
    #[value(name = "h200")]
    H200,
}

impl GpuPreset {
    pub fn memory(self) -> GpuMemory {
        let (name, usable_bytes) = match self {
            GpuPreset::A100_80gb => ("a100-80gb", 81_050 * MIB),
            GpuPreset::H100_80gb => ("h100-80gb", 85_017_493_504),
            GpuPreset::H200 => ("h200", 150_109_880_320),
        };
        GpuMemory {
            name: name.to_string(),
            usable_bytes,
        }
    }
}

impl GpuMemory {
    /// A user-given size in GiB (2^30 bytes). Refuses non-finite, zero or negative sizes.
    pub fn from_gib(gib: f64) -> anyhow::Result<Self> {
        if !gib.is_finite() || gib <= 0.0 {
            anyhow::bail!("--gpu-mem-gib must be a positive number of GiB, got {gib}");
        }
        Ok(Self {
            name: format!("{gib} GiB"),
            usable_bytes: (gib * (1u64 << 30) as f64) as u64,
        })
    }

    /// Asks the CUDA driver for GPU `ordinal`'s total memory. The smallest card of a job decides
    /// the plan, so the run command queries the ordinal each rank will use.
    #[cfg(feature = "cuda")]
    pub fn query(ordinal: usize) -> anyhow::Result<Self> {
        use anyhow::Context;
        let ctx = cudarc::driver::CudaContext::new(ordinal)
            .with_context(|| format!("cannot open CUDA device {ordinal}"))?;
        let name = ctx
            .name()
            .with_context(|| format!("cannot read the name of CUDA device {ordinal}"))?;
        let (_free, total) = ctx
            .mem_get_info()
            .with_context(|| format!("cannot query memory of CUDA device {ordinal}"))?;
        Ok(Self {
            name: format!("{name} (device {ordinal})"),
            usable_bytes: total as u64,
        })
    }

    /// Without the `cuda` feature there is no driver to ask: the error says what to do instead.
    #[cfg(not(feature = "cuda"))]
    pub fn query(ordinal: usize) -> anyhow::Result<Self> {
        anyhow::bail!(
            "this paramx was built without the `cuda` feature and cannot query GPU {ordinal}: \
             name a GPU preset (a100-80gb, h100-80gb, h200) or build with --features cuda"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_the_documented_sizes() {
        let gib = |p: GpuPreset| p.memory().usable_bytes as f64 / (1u64 << 30) as f64;
        // memory.md: ~79 GiB usable on 80 GB cards, ~139 GiB on H200.
        assert!((gib(GpuPreset::A100_80gb) - 79.15).abs() < 0.01);
        assert!((gib(GpuPreset::H100_80gb) - 79.18).abs() < 0.01);
        assert!((gib(GpuPreset::H200) - 139.80).abs() < 0.01);
    }

    #[test]
    fn gib_must_be_positive() {
        assert_eq!(GpuMemory::from_gib(1.0).unwrap().usable_bytes, 1 << 30);
        for bad in [0.0, -3.0, f64::NAN, f64::INFINITY] {
            assert!(GpuMemory::from_gib(bad).is_err());
        }
    }
}
