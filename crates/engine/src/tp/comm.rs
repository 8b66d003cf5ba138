//! The communicator abstraction shared by every tensor-parallel implementation.

use candle_core::{DType, Device, Result, Tensor};

/// Collectives that a tensor-parallel Qwen2 needs. Implementations must be deterministic: the
/// same inputs on every rank give bit-identical outputs on every rank (greedy decoding across
/// ranks depends on it), and a failed or vanished peer must surface as an error, never a hang.
pub trait Communicator: Send + Sync {
    /// This process's rank, in `0..world_size()`.
    fn rank(&self) -> usize;
    /// Number of ranks taking part.
    fn world_size(&self) -> usize;
    /// Element-wise sum of `t` over all ranks; every rank gets the result. Used after the
    /// row-parallel projections (`o_proj`, `down_proj`).
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor>;
    /// Concatenation of every rank's `t` along dimension `dim`, in rank order. Used to join
    /// vocabulary-split logits and the per-rank (max, argmax) pairs of greedy decoding.
    fn all_gather(&self, t: &Tensor, dim: usize) -> Result<Tensor>;
}

/// The trivial communicator of a one-rank run: every collective returns its input.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleRank;

impl Communicator for SingleRank {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.clone())
    }
    fn all_gather(&self, t: &Tensor, _dim: usize) -> Result<Tensor> {
        Ok(t.clone())
    }
}

/// Rank 0's `bytes` on every rank. Built on `all_reduce_sum` (the one collective every
/// communicator has): rank 0 contributes its bytes, the others zeros, so the sum is rank 0's
/// bytes exactly (`x + 0` never overflows). The length goes first, so only rank 0 needs to know
/// it. Every rank must call this at the same point; ranks other than 0 pass `None`.
pub fn broadcast_from_rank0(
    comm: &dyn Communicator,
    device: &Device,
    bytes: Option<&[u8]>,
) -> Result<Vec<u8>> {
    let rank = comm.rank();
    match (rank, bytes) {
        (0, None) => candle_core::bail!("broadcast: rank 0 has nothing to send"),
        (0, Some(_)) | (_, None) => {}
        (_, Some(_)) => candle_core::bail!("broadcast: only rank 0 sends (this is rank {rank})"),
    }
    if comm.world_size() == 1 {
        return Ok(bytes.unwrap_or_default().to_vec());
    }
    let own_len = bytes.map_or(0, <[u8]>::len);
    let len = u32::try_from(own_len)
        .map_err(|_| candle_core::Error::Msg(format!("broadcast: {own_len} bytes is too much")))?;
    let len = comm
        .all_reduce_sum(&Tensor::new(&[len], device)?)?
        .to_vec1::<u32>()?[0] as usize;
    if len == 0 {
        return Ok(Vec::new());
    }
    let mine = match bytes {
        Some(b) => Tensor::from_slice(b, len, device)?,
        None => Tensor::zeros(len, DType::U8, device)?,
    };
    comm.all_reduce_sum(&mine)?.to_vec1::<u8>()
}

/// Whether `flag` is true on at least one rank; every rank gets the same answer. Every rank
/// must call this at the same point.
pub fn any_rank(comm: &dyn Communicator, device: &Device, flag: bool) -> Result<bool> {
    if comm.world_size() == 1 {
        return Ok(flag);
    }
    let votes = comm.all_reduce_sum(&Tensor::new(&[u32::from(flag)], device)?)?;
    Ok(votes.to_vec1::<u32>()?[0] > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn single_rank_collectives_are_identity() -> Result<()> {
        let t = Tensor::new(&[1f32, -2.5, 3.0], &Device::Cpu)?;
        let c = SingleRank;
        assert_eq!((c.rank(), c.world_size()), (0, 1));
        assert_eq!(
            c.all_reduce_sum(&t)?.to_vec1::<f32>()?,
            vec![1.0, -2.5, 3.0]
        );
        assert_eq!(c.all_gather(&t, 0)?.to_vec1::<f32>()?, vec![1.0, -2.5, 3.0]);
        Ok(())
    }

    #[test]
    fn rank0_bytes_reach_every_rank_and_any_rank_agrees() {
        use crate::tp::local::LocalGroup;
        use std::time::Duration;
        let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 255) as u8).collect();
        let results = LocalGroup::run(3, Duration::from_secs(60), |rank, comm| {
            let dev = Device::Cpu;
            let sent = (rank == 0).then_some(payload.as_slice());
            let got = broadcast_from_rank0(comm.as_ref(), &dev, sent)?;
            let empty = broadcast_from_rank0(comm.as_ref(), &dev, sent.map(|_| &[][..]))?;
            let any = any_rank(comm.as_ref(), &dev, rank == 2)?;
            let none = any_rank(comm.as_ref(), &dev, false)?;
            Ok((got, empty, any, none))
        })
        .unwrap();
        for (got, empty, any, none) in results {
            assert_eq!(got, payload);
            assert!(empty.is_empty());
            assert!(any && !none);
        }
        let one = broadcast_from_rank0(&SingleRank, &Device::Cpu, Some(b"abc")).unwrap();
        assert_eq!(one, b"abc");
        assert!(broadcast_from_rank0(&SingleRank, &Device::Cpu, None).is_err());
    }
}
