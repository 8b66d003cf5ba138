//! Causal grouped-query attention over the KV cache, computed in blocks of queries.
//!
//! Why blocks: the score matrix of a `t`-token chunk against `T` cached tokens is
//! `heads x t x T`; computing it `block` queries at a time bounds that term by
//! `heads x block x T` whatever the prompt length (see `../shared/docs/memory.md`). Why no
//! `repeat_kv`: the query heads that share a KV head are folded into the query rows, so K and V
//! are read as stored. Why an explicit mask: rows of a batch are left-padded to a common length
//! and padding keys must get zero weight. The mask value is a large finite negative number, not
//! `-inf`: a padding *query* row then has a finite (ignored) result instead of NaN, and NaN could
//! otherwise leak through `0 x NaN` into real rows via the padding values in V.

use super::fused::{masked_softmax_, matmul, softmax_part_, ScoreRows};
use candle_core::{DType, Device, Result, Tensor, D};

/// Additive mask value for forbidden keys (exp underflows to exactly 0 in f32).
const MASKED: f32 = -1.0e30;

/// Where the queries sit and which keys are padding.
#[derive(Debug, Clone, Copy)]
pub struct AttentionLayout<'a> {
    /// Left padding of each row: keys at slots `< pad[b]` are never attended to.
    pub pad: &'a [usize],
    /// Cache slot of the first query (queries occupy `q_slot0..q_slot0 + t`).
    pub q_slot0: usize,
    /// Queries per block (>= 1).
    pub block: usize,
}

/// One query block as the two paths see it: `qb` `(b, kv_heads, group x n, d)` holds the
/// queries of slots `q_slot0 + q0 ..` (`n` per row), attending over the first `keys` slots.
struct Block {
    qb: Tensor,
    q0: usize,
    n: usize,
    keys: usize,
}

/// The loop shared by both paths: checks the geometry, cuts the queries into blocks (keys after
/// a block's last query are causally invisible and never scored), turns each block into its
/// probabilities `(b, kv_heads, group x n, keys)` with `probs`, multiplies them by V as
/// stored, and stitches the blocks back to `(b, heads, t, d)`.
fn blocked(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    layout: AttentionLayout<'_>,
    mut probs: impl FnMut(&Block, &Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let (b, heads, t, d) = q.dims4()?;
    let (_, kv_heads, total, _) = k.dims4()?;
    if heads % kv_heads != 0 || total != layout.q_slot0 + t || layout.pad.len() != b {
        candle_core::bail!(
            "attention: q {:?}, k {:?}, q_slot0 {}, {} pad entries do not fit together",
            q.shape(),
            k.shape(),
            layout.q_slot0,
            layout.pad.len()
        )
    }
    let group = heads / kv_heads;
    let block = layout.block.max(1);
    let q = q.reshape((b, kv_heads, group, t, d))?;
    let mut outs = Vec::with_capacity(t.div_ceil(block));
    let mut q0 = 0;
    while q0 < t {
        let n = block.min(t - q0);
        let keys = layout.q_slot0 + q0 + n;
        let qb = q
            .narrow(3, q0, n)?
            .contiguous()?
            .reshape((b, kv_heads, group * n, d))?;
        let blk = Block { qb, q0, n, keys };
        let p = probs(&blk, &k.narrow(2, 0, keys)?)?;
        let out = matmul(&p, &v.narrow(2, 0, keys)?)?; // (b, kv, group*n, d)
        outs.push(out.reshape((b, kv_heads, group, n, d))?);
        q0 += n;
    }
    stitch(outs, (b, heads, t, d))
}

/// The same attention as [`attention`] with the score work in one kernel per block
/// ([`masked_softmax_`]: scale, causal and padding mask, softmax, in place, in the compute
/// dtype), so a block's scores take `2 x heads x block x keys` bytes in bf16 instead of three
/// f32 buffers, and no mask tensor is built. `pad` is the cache's `(b)` u32 padding tensor.
/// K and V are read through their cache views (no copies).
pub fn attention_fused(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    layout: AttentionLayout<'_>,
    pad: &Tensor,
) -> Result<Tensor> {
    let scale = (1.0 / (q.dim(3)? as f64).sqrt()) as f32;
    blocked(q, k, v, layout, |blk, kb| {
        let s = matmul(&blk.qb, &kb.t()?)?;
        let (_, kv_heads, rows, _) = blk.qb.dims4()?;
        masked_softmax_(
            &s,
            pad,
            ScoreRows {
                rows_per_seq: kv_heads * rows,
                queries: blk.n,
                q_slot0: layout.q_slot0 + blk.q0,
                scale,
            },
        )?;
        Ok(s)
    })
}

/// `q`: `(b, heads, t, d)`; `k`, `v`: `(b, kv_heads, T, d)` with `T = q_slot0 + t`.
/// Returns `(b, heads, t, d)`.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    layout: AttentionLayout<'_>,
) -> Result<Tensor> {
    let scale = 1.0 / (q.dim(3)? as f64).sqrt();
    let dtype = v.dtype();
    blocked(q, k, v, layout, |blk, kb| {
        let (b, kv_heads, rows, _) = blk.qb.dims4()?;
        let (n, keys) = (blk.n, blk.keys);
        // One f32 score buffer and at most one transient copy at a time (each reassignment
        // drops the previous tensor).
        let mut s = matmul(&blk.qb, &kb.t()?)?;
        s = s.to_dtype(DType::F32)?;
        s = s.affine(scale, 0.0)?;
        if let Some(mask) = block_mask(layout, blk.q0, n, keys, blk.qb.device())? {
            s = s
                .reshape((b, kv_heads, rows / n, n, keys))?
                .broadcast_add(&mask)?
                .reshape((b, kv_heads, rows, keys))?;
        }
        s = candle_nn::ops::softmax_last_dim(&s)?;
        s.to_dtype(dtype)
    })
}

/// Attention of rows that continue one shared prefix (cascade attention, as in Hydragen and
/// FlashInfer): `q` `(b, heads, t, d)` attends to the prefix's keys `(1, kv_heads, P, d)`, which
/// every row sees whole, and to its own keys `(b, kv_heads, T, d)` (`T = q_slot0 + t`, causal
/// and left-padded as in [`attention`]). Why two parts: the prefix is stored once, and its
/// part is one matrix product for all rows together (the rows' queries stacked), so its K/V
/// are read once per layer whatever the number of rows; the parts are joined exactly through
/// their softmax statistics (max and sum of each row's scores). Queries are cut into blocks of
/// `layout.block / b` per row, so the stacked prefix scores stay as large as one row's block.
/// `fused`: each part's softmax statistics in one kernel ([`softmax_part_`]) where the device
/// has it (the CPU); otherwise, and as the reference, candle's ops.
pub fn attention_shared(
    q: &Tensor,
    prefix_k: &Tensor,
    prefix_v: &Tensor,
    k: &Tensor,
    v: &Tensor,
    layout: AttentionLayout<'_>,
    fused: bool,
) -> Result<Tensor> {
    let (b, heads, t, d) = q.dims4()?;
    let (pb, kv_heads, _, _) = prefix_k.dims4()?;
    let (_, row_kv, total, _) = k.dims4()?;
    if pb != 1
        || row_kv != kv_heads
        || heads % kv_heads != 0
        || total != layout.q_slot0 + t
        || layout.pad.len() != b
    {
        candle_core::bail!(
            "shared attention: q {:?}, prefix k {:?}, k {:?}, q_slot0 {} do not fit together",
            q.shape(),
            prefix_k.shape(),
            k.shape(),
            layout.q_slot0
        )
    }
    let g = heads / kv_heads;
    let scale = 1.0 / (d as f64).sqrt();
    let dtype = v.dtype();
    let block = (layout.block / b).max(1);
    let q5 = q.reshape((b, kv_heads, g, t, d))?;
    let fused = fused && q.device().is_cpu();
    // Softmax statistics of one part: (max, sum of exp, exp-weighted sum of V), in f32. On
    // other devices the same through candle's ops; there the scores are dropped as soon as
    // they are shifted, so two score-sized buffers live at once, not three (the shifted
    // scores and their exp; the memory plan counts three copies).
    let part = |s: Tensor,
                vals: &Tensor,
                mask: Option<(ScoreRows, Option<Tensor>)>|
     -> Result<(Tensor, Tensor, Tensor)> {
        let mut s = s.to_dtype(DType::F32)?;
        if fused {
            let (m, l) = softmax_part_(&s, scale as f32, mask.map(|(r, _)| (layout.pad, r)))?;
            let o = matmul(&s, vals)?;
            return Ok((m, l, o));
        }
        s = s.affine(scale, 0.0)?;
        if let Some((_, Some(mask))) = mask {
            let (b, kv, rows, keys) = s.dims4()?;
            let n = mask.dim(3)?;
            s = s
                .reshape((b, kv, rows / n, n, keys))?
                .broadcast_add(&mask)?
                .reshape((b, kv, rows, keys))?;
        }
        let m = s.max_keepdim(D::Minus1)?;
        let shifted = s.broadcast_sub(&m)?;
        drop(s);
        let e = shifted.exp()?;
        drop(shifted);
        let l = e.sum_keepdim(D::Minus1)?;
        let o = matmul(&e.to_dtype(dtype)?, vals)?.to_dtype(DType::F32)?;
        Ok((m, l, o))
    };
    let mut outs = Vec::with_capacity(t.div_ceil(block));
    let mut q0 = 0;
    while q0 < t {
        let n = block.min(t - q0);
        let qb = q5.narrow(3, q0, n)?.contiguous()?; // (b, kv, g, n, d)
                                                     // The prefix: all rows' queries as one row.
        let qp = qb
            .permute((1, 0, 2, 3, 4))?
            .contiguous()?
            .reshape((1, kv_heads, b * g * n, d))?;
        let (mp, lp, op) = part(matmul(&qp, &prefix_k.t()?)?, prefix_v, None)?;
        let back = |x: Tensor, w: usize| -> Result<Tensor> {
            x.reshape((kv_heads, b, g * n, w))?
                .permute((1, 0, 2, 3))?
                .contiguous()
        };
        let (mp, lp, op) = (back(mp, 1)?, back(lp, 1)?, back(op, d)?);
        // The rows' own keys, under padding and causality.
        let keys = layout.q_slot0 + q0 + n;
        let qr = qb.reshape((b, kv_heads, g * n, d))?;
        let rows = ScoreRows {
            rows_per_seq: kv_heads * g * n,
            queries: n,
            q_slot0: layout.q_slot0 + q0,
            scale: scale as f32,
        };
        let mask = match fused {
            true => None,
            false => block_mask(layout, q0, n, keys, q.device())?,
        };
        let sr = matmul(&qr, &k.narrow(2, 0, keys)?.t()?)?;
        let (mr, lr, or) = part(sr, &v.narrow(2, 0, keys)?, Some((rows, mask)))?;
        // Join: rescale both parts to the common max.
        let m = mp.maximum(&mr)?;
        let ap = mp.broadcast_sub(&m)?.exp()?;
        let ar = mr.broadcast_sub(&m)?.exp()?;
        let num = (op.broadcast_mul(&ap)? + or.broadcast_mul(&ar)?)?;
        let den = (lp.mul(&ap)? + lr.mul(&ar)?)?;
        let out = num.broadcast_div(&den)?.to_dtype(dtype)?;
        outs.push(out.reshape((b, kv_heads, g, n, d))?);
        q0 += n;
    }
    stitch(outs, (b, heads, t, d))
}

/// Query blocks `(b, kv_heads, group, n, d)` back into one `(b, heads, t, d)` output.
fn stitch(mut outs: Vec<Tensor>, shape: (usize, usize, usize, usize)) -> Result<Tensor> {
    let out = match outs.len() {
        1 => outs.swap_remove(0),
        _ => Tensor::cat(&outs, 3)?,
    };
    out.reshape(shape)
}

/// The additive mask `(b, 1, 1, n, keys)` of one query block (broadcast over KV heads and the
/// query heads of a group), or `None` when every key is visible (a single query per row and no
/// padding: the usual decode step). Built on the device from index comparisons: a host-built
/// mask would cost `b x n x keys` host writes and a transfer per block and layer, which at long
/// prompts dwarfs the attention itself.
fn block_mask(
    layout: AttentionLayout<'_>,
    q0: usize,
    n: usize,
    keys: usize,
    device: &Device,
) -> Result<Option<Tensor>> {
    if n == 1 && layout.pad.iter().all(|&p| p == 0) {
        return Ok(None);
    }
    let b = layout.pad.len();
    let first = (layout.q_slot0 + q0) as u32;
    let slots = Tensor::arange(0u32, keys as u32, device)?.reshape((1, 1, 1, 1, keys))?;
    let queries = Tensor::arange(first, first + n as u32, device)?.reshape((1, 1, 1, n, 1))?;
    let pad: Vec<u32> = layout.pad.iter().map(|&p| p as u32).collect();
    let pad = Tensor::from_vec(pad, (b, 1, 1, 1, 1), device)?;
    // visible = (slot <= query slot) & (slot >= pad), as 0/1.
    let causal = slots.broadcast_le(&queries)?.to_dtype(DType::F32)?;
    let real = slots.broadcast_ge(&pad)?.to_dtype(DType::F32)?;
    let visible = causal.broadcast_mul(&real)?;
    // 1 -> 0, 0 -> MASKED (exactly: the two constants are the same f32 with opposite signs).
    Ok(Some(visible.affine(-(MASKED as f64), MASKED as f64)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    /// Plain attention with repeated KV heads and a full score matrix, for comparison.
    fn naive(q: &Tensor, k: &Tensor, v: &Tensor, pad: &[usize], q_slot0: usize) -> Result<Tensor> {
        let (b, heads, t, d) = q.dims4()?;
        let (_, kv, total, _) = k.dims4()?;
        let g = heads / kv;
        let rep = |x: &Tensor| -> Result<Tensor> {
            x.unsqueeze(2)?
                .expand((b, kv, g, total, d))?
                .reshape((b, heads, total, d))
        };
        let (k, v) = (rep(k)?, rep(v)?);
        let s = (q.matmul(&k.t()?)? / (d as f64).sqrt())?;
        let mut m = vec![];
        for &p in pad {
            for i in 0..t {
                m.extend((0..total).map(|s| {
                    if s >= p && s <= q_slot0 + i {
                        0f32
                    } else {
                        f32::NEG_INFINITY
                    }
                }));
            }
        }
        let m = Tensor::from_vec(m, (b, 1, t, total), q.device())?;
        candle_nn::ops::softmax_last_dim(&s.broadcast_add(&m)?)?.matmul(&v)
    }

    /// Rows on a shared prefix equal plain attention over `prefix ++ row` per row, through the
    /// fused CPU parts and through candle's ops (padding queries included).
    #[test]
    fn shared_prefix_attention_matches_attention_over_the_concatenation() -> Result<()> {
        let dev = Device::Cpu;
        let (b, heads, kv, d, t, q_slot0, plen) = (3, 4, 2, 8, 5, 2, 6);
        let total = q_slot0 + t;
        let q = Tensor::randn(0f32, 1., (b, heads, t, d), &dev)?;
        let pk = Tensor::randn(0f32, 1., (1, kv, plen, d), &dev)?;
        let pv = Tensor::randn(0f32, 1., (1, kv, plen, d), &dev)?;
        let k = Tensor::randn(0f32, 1., (b, kv, total, d), &dev)?;
        let v = Tensor::randn(0f32, 1., (b, kv, total, d), &dev)?;
        // Row 2's padding (4) reaches past the first blocks' last key (slot 2 or 3).
        let pad = [0usize, 1, 4];
        for (block, fused) in [1, 4, 64].into_iter().flat_map(|b| [(b, false), (b, true)]) {
            let got = attention_shared(
                &q,
                &pk,
                &pv,
                &k,
                &v,
                AttentionLayout {
                    pad: &pad,
                    q_slot0,
                    block,
                },
                fused,
            )?;
            for (r, &p) in pad.iter().enumerate() {
                // Row r alone: prefix then its real keys, no padding.
                let real = total - p;
                let kr = Tensor::cat(&[&pk, &k.narrow(0, r, 1)?.narrow(2, p, real)?], 2)?;
                let vr = Tensor::cat(&[&pv, &v.narrow(0, r, 1)?.narrow(2, p, real)?], 2)?;
                // Padding queries (slot < p) are undefined; the first real one sits after the
                // prefix and the row's real keys before it.
                let skip = p.saturating_sub(q_slot0);
                let qr = q.narrow(0, r, 1)?.narrow(2, skip, t - skip)?;
                let want = naive(&qr, &kr, &vr, &[0], plen + q_slot0 + skip - p)?;
                let got_r = got.narrow(0, r, 1)?.narrow(2, skip, t - skip)?;
                let diff = max_diff(&got_r, &want)?;
                assert!(
                    diff < 1e-5,
                    "block {block}, fused {fused}, row {r}: max diff {diff}"
                );
            }
            // Padding queries are undefined but finite (no NaN to leak into real rows).
            let all: Vec<f32> = got.flatten_all()?.to_vec1()?;
            assert!(
                all.iter().all(|x| x.is_finite()),
                "block {block}, fused {fused}"
            );
        }
        Ok(())
    }

    #[test]
    fn blocked_gqa_matches_naive_attention() -> Result<()> {
        let dev = Device::Cpu;
        let (b, heads, kv, d, t, q_slot0) = (2, 6, 2, 8, 7, 3);
        let total = q_slot0 + t;
        let q = Tensor::randn(0f32, 1., (b, heads, t, d), &dev)?;
        // K/V as a narrowed view of a larger buffer, like the cache hands out.
        let kbuf = Tensor::randn(0f32, 1., (b, kv, total + 5, d), &dev)?;
        let vbuf = Tensor::randn(0f32, 1., (b, kv, total + 5, d), &dev)?;
        let (k, v) = (kbuf.narrow(2, 0, total)?, vbuf.narrow(2, 0, total)?);
        let pad = [0usize, 2];
        let want = naive(&q, &k.contiguous()?, &v.contiguous()?, &pad, q_slot0)?;
        // Padding query rows (slot < pad) are undefined in both; compare real rows only.
        for block in [1, 3, 16] {
            let got = attention(
                &q,
                &k,
                &v,
                AttentionLayout {
                    pad: &pad,
                    q_slot0,
                    block,
                },
            )?;
            let diff = max_diff(&got, &want)?;
            assert!(diff < 1e-5, "block {block}: max diff {diff}");
        }
        Ok(())
    }
}
