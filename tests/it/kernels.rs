//! Every fused op of `paramx::model::fused` against the plain candle path it replaces, on fresh
//! random inputs (candle's unseeded `randn`: different numbers on every run), on every device
//! this build can reach: the CPU always (the CPU implementations; this runs in CI), and CUDA
//! device 0 when built with `--features cuda` on a GPU machine (`slurm/build-cuda.sh --tests`
//! packs this binary). Each check states its relative error: max |fused - plain| over max
//! |plain|; a NaN or infinity anywhere in the fused output fails, and so does a NaN error (the
//! comparison is written so that NaN never passes).
//!
//! Tolerances: f32 1e-5 (same arithmetic, different order); bf16 2e-2 (the plain path rounds
//! intermediate results, e.g. q + bias, to bf16 before rotating; the fused ops round once).

use candle_core::{DType, Device, IndexOp, Result, Tensor, D};
use paramx::model::attention::{attention, attention_fused, attention_shared, AttentionLayout};
use paramx::model::fused::{self, Heads, Kernels, ScoreRows};
use paramx::model::load::random::RandomSource;
use paramx::model::{ModelOptions, Qwen2, Qwen2Config};
use std::sync::Arc;

/// The devices and dtypes to check: (device, dtype, label).
fn targets() -> Vec<(Device, DType, &'static str)> {
    let mut v = vec![
        (Device::Cpu, DType::F32, "cpu f32"),
        (Device::Cpu, DType::BF16, "cpu bf16"),
    ];
    if cfg!(feature = "cuda") {
        match Device::new_cuda(0) {
            Ok(d) => {
                v.push((d.clone(), DType::F32, "cuda f32"));
                v.push((d, DType::BF16, "cuda bf16"));
            }
            Err(e) => eprintln!("SKIP cuda checks: no CUDA device 0 ({e})"),
        }
    }
    v
}

fn tolerance(dtype: DType) -> f32 {
    match dtype {
        DType::F32 => 1e-5,
        _ => 2e-2,
    }
}

fn randn(shape: &[usize], dtype: DType, dev: &Device) -> Result<Tensor> {
    Tensor::randn(0f32, 1.0, shape, dev)?.to_dtype(dtype)
}

/// max |got - want| / max |want|, computed in f32 on the CPU; NaN if either holds a NaN.
fn rel_err(got: &Tensor, want: &Tensor) -> Result<f32> {
    let g = got
        .to_dtype(DType::F32)?
        .to_device(&Device::Cpu)?
        .flatten_all()?;
    let w = want
        .to_dtype(DType::F32)?
        .to_device(&Device::Cpu)?
        .flatten_all()?;
    let (g, w) = (g.to_vec1::<f32>()?, w.to_vec1::<f32>()?);
    assert_eq!(g.len(), w.len(), "shapes differ");
    if g.iter().chain(&w).any(|x| !x.is_finite()) {
        return Ok(f32::NAN);
    }
    let scale = w.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
    let diff = g
        .iter()
        .zip(&w)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    Ok(diff / scale)
}

fn check(label: &str, what: &str, err: f32, dtype: DType) {
    let tol = tolerance(dtype);
    eprintln!("{label:9} {what:28} relative error {err:.2e} (tolerance {tol:.0e})");
    // Written so that NaN fails: `err <= tol` is false for NaN.
    assert!(
        err <= tol,
        "{label} {what}: relative error {err} > {tol} (or NaN)"
    );
}

#[test]
fn silu_mul_matches_plain() -> Result<()> {
    for (dev, dt, label) in targets() {
        for shape in [[1, 1, 2 * 37], [3, 5, 2 * 96]] {
            let gu = randn(&shape, dt, &dev)?;
            let f = shape[2] / 2;
            let plain = (candle_nn::ops::silu(&gu.narrow(D::Minus1, 0, f)?)?
                * gu.narrow(D::Minus1, f, f)?)?;
            let got = fused::silu_mul(&gu)?;
            assert_eq!(got.dims(), plain.dims());
            check(
                label,
                &format!("silu_mul {shape:?}"),
                rel_err(&got, &plain)?,
                dt,
            );
        }
    }
    Ok(())
}

#[test]
fn add_rms_norm_matches_plain() -> Result<()> {
    for (dev, dt, label) in targets() {
        // The 72B rank's width (the vector path of the GPU kernel), a row wider than that path
        // holds, a width that is not a whole number of 16-byte vectors in bf16.
        for shape in [
            [1, 1, 64],
            [2, 5, 640],
            [1, 1, 8192],
            [2, 3, 20000],
            [1, 2, 100],
        ] {
            let x = randn(&shape, dt, &dev)?;
            let y = randn(&shape, dt, &dev)?;
            let w = randn(&shape[2..], dt, &dev)?;
            let sum = (&x + &y)?;
            let plain = candle_nn::ops::rms_norm(&sum, &w, 1e-6)?;
            let (s, n) = fused::add_rms_norm(&x, &y, &w, 1e-6)?;
            check(
                label,
                &format!("add_rms_norm sum {shape:?}"),
                rel_err(&s, &sum)?,
                dt,
            );
            check(
                label,
                &format!("add_rms_norm norm {shape:?}"),
                rel_err(&n, &plain)?,
                dt,
            );
        }
        // A view one element into its buffer: off the 16-byte boundary (the scalar path).
        let h = 512;
        let x = randn(&[h + 1], dt, &dev)?
            .narrow(0, 1, h)?
            .reshape((1, 1, h))?;
        let y = randn(&[1, 1, h], dt, &dev)?;
        let w = randn(&[h], dt, &dev)?;
        let plain = candle_nn::ops::rms_norm(&(&x + &y)?, &w, 1e-6)?;
        let (_, n) = fused::add_rms_norm(&x, &y, &w, 1e-6)?;
        check(
            label,
            "add_rms_norm unaligned view",
            rel_err(&n, &plain)?,
            dt,
        );
    }
    Ok(())
}

/// The plain path of q: bias, split heads, transpose, rotate with candle's RoPE.
fn plain_heads(
    qkv: &Tensor,
    bias: &Tensor,
    cs: &Tensor,
    from: usize,
    n: usize,
    hd: usize,
    rotate: bool,
) -> Result<Tensor> {
    let (b, t, _) = qkv.dims3()?;
    let x = qkv
        .broadcast_add(bias)?
        .narrow(2, from * hd, n * hd)?
        .reshape((b, t, n, hd))?
        .transpose(1, 2)?
        .contiguous()?;
    if !rotate {
        return Ok(x);
    }
    let half = hd / 2;
    let cos = cs.narrow(2, 0, half)?.contiguous()?;
    let sin = cs.narrow(2, half, half)?.contiguous()?;
    candle_nn::rotary_emb::rope(&x, &cos, &sin)
}

/// Random cos/sin tables of real angles (so that cos² + sin² = 1 as in the model).
fn cos_sin(b: usize, t: usize, hd: usize, dt: DType, dev: &Device) -> Result<Tensor> {
    let angles = (Tensor::rand(0f32, 100.0, (b, t, hd / 2), dev)?).to_dtype(DType::F32)?;
    Tensor::cat(&[angles.cos()?, angles.sin()?], 2)?.to_dtype(dt)
}

#[test]
fn rope_q_and_kv_append_match_plain() -> Result<()> {
    for (dev, dt, label) in targets() {
        for (b, t, heads, kv, hd, slot0) in [(1, 1, 8, 2, 16, 5), (2, 7, 4, 1, 32, 0)] {
            let geo = Heads {
                heads,
                kv_heads: kv,
                head_dim: hd,
            };
            let qkv = randn(&[b, t, geo.width()], dt, &dev)?;
            let bias = randn(&[geo.width()], dt, &dev)?;
            let cs = cos_sin(b, t, hd, dt, &dev)?;
            let q = fused::rope_q(&qkv, &bias, &cs, geo)?;
            let q_plain = plain_heads(&qkv, &bias, &cs, 0, heads, hd, true)?;
            check(
                label,
                &format!("rope_q b{b} t{t}"),
                rel_err(&q, &q_plain)?,
                dt,
            );

            // The cache starts random (old tokens must survive untouched).
            let cap = slot0 + t + 3;
            let cache = randn(&[2, b, kv, cap, hd], dt, &dev)?;
            let before = cache.copy()?;
            fused::kv_append(&cache, &qkv, &bias, &cs, geo, slot0)?;
            let want = before.copy()?;
            let k = plain_heads(&qkv, &bias, &cs, heads, kv, hd, true)?;
            let v = plain_heads(&qkv, &bias, &cs, heads + kv, kv, hd, false)?;
            want.i(0)?.slice_set(&k, 2, slot0)?;
            want.i(1)?.slice_set(&v, 2, slot0)?;
            check(
                label,
                &format!("kv_append b{b} t{t}"),
                rel_err(&cache, &want)?,
                dt,
            );
            // Slots outside the write are bit-identical.
            let outside = |x: &Tensor| -> Result<Tensor> {
                Tensor::cat(
                    &[
                        x.narrow(3, 0, slot0)?,
                        x.narrow(3, slot0 + t, cap - slot0 - t)?,
                    ],
                    3,
                )
            };
            assert_eq!(
                rel_err(&outside(&cache)?, &outside(&before)?)?,
                0.0,
                "{label}: kv_append wrote outside its slots"
            );
            // A write past the capacity is refused, not performed.
            assert!(fused::kv_append(&cache, &qkv, &bias, &cs, geo, cap - t + 1).is_err());
        }
    }
    Ok(())
}

#[test]
fn masked_softmax_matches_plain() -> Result<()> {
    for (dev, dt, label) in targets() {
        // (b, kv, group, n, q_slot0, pads): decode-like and prefill-like blocks, with padding.
        for (b, kv, group, n, q_slot0, pads) in [
            (1usize, 2usize, 4usize, 1usize, 40usize, vec![0u32]),
            (2, 1, 2, 6, 3, vec![0, 5]),
            (1, 1, 1, 3, 700, vec![0]),
        ] {
            let keys = q_slot0 + n;
            let rows = kv * group * n;
            let scale = 0.125f32;
            let s = randn(&[b, kv, group * n, keys], dt, &dev)?.affine(4.0, 0.0)?;
            // Plain: f32, scale, -inf outside the visible keys, softmax; rows without a visible
            // key (padding queries) are zero in the fused contract.
            let mut mask = Vec::with_capacity(b * rows * keys);
            let mut empty = Vec::with_capacity(b * rows);
            for &p in &pads {
                for r in 0..rows {
                    let slot = q_slot0 + r % n;
                    mask.extend((0..keys).map(|k| {
                        if k >= p as usize && k <= slot {
                            0f32
                        } else {
                            f32::NEG_INFINITY
                        }
                    }));
                    empty.push(slot < p as usize);
                }
            }
            let mask = Tensor::from_vec(mask, (b, kv, group * n, keys), &dev)?;
            let logits = (s.to_dtype(DType::F32)?.affine(scale as f64, 0.0)? + mask)?;
            let plain = candle_nn::ops::softmax_last_dim(&logits)?;
            let empty_t = Tensor::from_vec(
                empty
                    .iter()
                    .map(|&e| if e { 0f32 } else { 1.0 })
                    .collect::<Vec<_>>(),
                (b, kv, group * n, 1),
                &dev,
            )?;
            // NaN rows of the plain softmax (all -inf) become 0 through where_cond.
            let plain = empty_t
                .broadcast_as(plain.shape())?
                .ne(0f32)?
                .where_cond(&plain, &plain.zeros_like()?)?;
            let pad = Tensor::new(pads.as_slice(), &dev)?;
            let got = s.copy()?;
            fused::masked_softmax_(
                &got,
                &pad,
                ScoreRows {
                    rows_per_seq: rows,
                    queries: n,
                    q_slot0,
                    scale,
                },
            )?;
            let what = format!("masked_softmax b{b} n{n} keys{keys}");
            check(label, &what, rel_err(&got, &plain)?, dt);
        }
    }
    Ok(())
}

#[test]
fn fused_attention_matches_plain_attention() -> Result<()> {
    for (dev, dt, label) in targets() {
        let (b, heads, kv, d, t, q_slot0) = (2, 8, 2, 32, 9, 4);
        let total = q_slot0 + t;
        let q = randn(&[b, heads, t, d], dt, &dev)?;
        // K/V as views of a cache with room to spare, as the model hands them out.
        let cache = randn(&[2, b, kv, total + 6, d], dt, &dev)?;
        let (k, v) = (
            cache.i(0)?.narrow(2, 0, total)?,
            cache.i(1)?.narrow(2, 0, total)?,
        );
        let pad_v = [0usize, 3];
        let pad = Tensor::new(&[0u32, 3], &dev)?;
        for block in [1, 4, 64] {
            let layout = AttentionLayout {
                pad: &pad_v,
                q_slot0,
                block,
            };
            let got = attention_fused(&q, &k, &v, layout, &pad)?;
            let want = attention(&q, &k, &v, layout)?;
            // Row 1's first query slots (< pad 3) are padding queries: undefined in both paths.
            // Its queries start at slot 4 >= 3, so every query row here is real.
            let what = format!("attention block {block}");
            check(label, &what, rel_err(&got, &want)?, dt);
        }
    }
    Ok(())
}

#[test]
fn attention_decode_matches_plain() -> Result<()> {
    for (dev, dt, label) in targets() {
        // (b, t, heads, kv, hd, q_slot0, pads): one query over a long cache (several splits of
        // 64 keys), a few queries with left padding, a padding query (slot < pad: zeros).
        for (b, t, heads, kv, hd, q_slot0, pads) in [
            (
                1usize,
                1usize,
                8usize,
                2usize,
                32usize,
                200usize,
                vec![0u32],
            ),
            (2, 3, 4, 1, 16, 5, vec![0, 2]),
            (2, 2, 4, 2, 16, 1, vec![0, 3]),
            // The 72B rank's heads (8 per KV head, hd 128) with padding past the first split,
            // and the most queries per step at hd 64.
            (2, 4, 16, 2, 128, 130, vec![0, 70]),
            (1, 16, 8, 1, 64, 300, vec![0]),
        ] {
            let geo = Heads {
                heads,
                kv_heads: kv,
                head_dim: hd,
            };
            let cap = q_slot0 + t + 4;
            let qkv = randn(&[b, t, geo.width()], dt, &dev)?;
            let bias = randn(&[geo.width()], dt, &dev)?;
            let cs = cos_sin(b, t, hd, dt, &dev)?;
            let cache = randn(&[2, b, kv, cap, hd], dt, &dev)?;
            fused::kv_append(&cache, &qkv, &bias, &cs, geo, q_slot0)?;
            let pad = Tensor::new(pads.as_slice(), &dev)?;
            let got = fused::attention_decode(&qkv, &bias, &cs, &cache, &pad, geo, q_slot0)?;
            // A second launch gives the same bits: on the GPU the per-row counters that pick
            // the combining block are back at zero after each launch.
            let again = fused::attention_decode(&qkv, &bias, &cs, &cache, &pad, geo, q_slot0)?;
            let diff = (got.to_dtype(DType::F32)? - again.to_dtype(DType::F32)?)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            assert_eq!(
                diff, 0.0,
                "{label}: attention_decode differs between two launches"
            );
            // Plain, in f32 on the same (rounded) inputs: rotated q, the cache views, plain
            // blocked attention, o_proj layout. A bf16 reference would round the scores and
            // probabilities itself and, over a few hundred keys, measure its own error.
            let f32s = |x: &Tensor| x.to_dtype(DType::F32);
            let q = plain_heads(&f32s(&qkv)?, &f32s(&bias)?, &f32s(&cs)?, 0, heads, hd, true)?;
            let total = q_slot0 + t;
            let cache32 = f32s(&cache)?;
            let (k, v) = (
                cache32.i(0)?.narrow(2, 0, total)?,
                cache32.i(1)?.narrow(2, 0, total)?,
            );
            let pad_v: Vec<usize> = pads.iter().map(|&p| p as usize).collect();
            let layout = AttentionLayout {
                pad: &pad_v,
                q_slot0,
                block: 4,
            };
            let want =
                attention(&q, &k, &v, layout)?
                    .transpose(1, 2)?
                    .reshape((b, t, heads * hd))?;
            // Padding queries (slot < pad) are undefined in the plain path and zero here:
            // compare the real ones, and check the padding ones are exactly zero.
            for (bi, &p) in pads.iter().enumerate() {
                for ti in 0..t {
                    let (g, w) = (got.i((bi, ti))?, want.i((bi, ti))?);
                    if q_slot0 + ti < p as usize {
                        let zero = g
                            .to_dtype(DType::F32)?
                            .abs()?
                            .sum_all()?
                            .to_scalar::<f32>()?;
                        assert_eq!(zero, 0.0, "{label}: padding query not zero");
                    } else {
                        let what = format!("attention_decode b{bi} t{ti} keys{total}");
                        check(label, &what, rel_err(&g, &w)?, dt);
                    }
                }
            }
        }
    }
    Ok(())
}

#[test]
fn cascade_decode_matches_shared_attention() -> Result<()> {
    for (dev, dt, label) in targets() {
        if dev.is_cuda() && dt != DType::BF16 {
            // The GPU kernel is bf16 only (tensor-core operands); the model keeps the candle
            // path for other dtypes (`fused::cascade_fits`).
            eprintln!("SKIP {label} attention_cascade_decode: bf16 only on the GPU");
            continue;
        }
        // (b, t, heads, kv, hd, prefix keys, q_slot0, pads). Prefix lengths are no multiple of
        // the 64-key tile; rows with no own key besides the new token (pad == q_slot0, or
        // q_slot0 == 0); ragged padding; b = 1, 3, 16; groups of 2 to 16 query heads per KV
        // head; 128 query rows per KV head (one row tile, the 72B rank's decode) and 256 (two);
        // a few queries per row with a padding query (slot < pad: the prefix alone).
        let ragged: Vec<u32> = (0..16u32).map(|i| (i * 23) % 71).collect();
        type Case = (usize, usize, usize, usize, usize, usize, usize, Vec<u32>);
        let cases: Vec<Case> = vec![
            (1, 1, 8, 2, 128, 1000, 0, vec![0]),
            (3, 1, 8, 1, 64, 333, 20, vec![0, 7, 20]),
            (16, 1, 16, 2, 128, 4133, 70, ragged),
            (16, 1, 32, 2, 64, 700, 10, (0..16).map(|i| i % 11).collect()),
            (2, 3, 4, 1, 32, 65, 4, vec![0, 5]),
            (2, 1, 8, 4, 16, 130, 3, vec![3, 0]),
        ];
        for (b, t, heads, kv, hd, plen, q_slot0, pads) in cases {
            let geo = Heads {
                heads,
                kv_heads: kv,
                head_dim: hd,
            };
            let cap = q_slot0 + t + 4;
            let qkv = randn(&[b, t, geo.width()], dt, &dev)?;
            let bias = randn(&[geo.width()], dt, &dev)?;
            let cs = cos_sin(b, t, hd, dt, &dev)?;
            let cache = randn(&[2, b, kv, cap, hd], dt, &dev)?;
            fused::kv_append(&cache, &qkv, &bias, &cs, geo, q_slot0)?;
            // The prefix's cache with room to spare past its keys, as the model holds it.
            let prefix = randn(&[2, 1, kv, plen + 7, hd], dt, &dev)?;
            let pad = Tensor::new(pads.as_slice(), &dev)?;
            let run = || {
                fused::attention_cascade_decode(
                    &qkv, &bias, &cs, &cache, &pad, &prefix, plen, geo, q_slot0,
                )
            };
            let got = run()?;
            assert_eq!(got.dims(), [b, t, heads * hd]);
            // A second launch gives the same bits (the decode kernel's counters are reset).
            let again = run()?;
            let diff = (got.to_dtype(DType::F32)? - again.to_dtype(DType::F32)?)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            assert_eq!(
                diff, 0.0,
                "{label}: cascade decode differs between launches"
            );
            // The candle-op path in f32 on the same (rounded) inputs, as the model ran it
            // before: rotated q, the cache views, `attention_shared`, o_proj layout.
            let f32s = |x: &Tensor| x.to_dtype(DType::F32);
            let q = plain_heads(&f32s(&qkv)?, &f32s(&bias)?, &f32s(&cs)?, 0, heads, hd, true)?;
            let total = q_slot0 + t;
            let (c32, p32) = (f32s(&cache)?, f32s(&prefix)?);
            let (k, v) = (
                c32.i(0)?.narrow(2, 0, total)?,
                c32.i(1)?.narrow(2, 0, total)?,
            );
            let (pk, pv) = (p32.i(0)?.narrow(2, 0, plen)?, p32.i(1)?.narrow(2, 0, plen)?);
            let pad_v: Vec<usize> = pads.iter().map(|&p| p as usize).collect();
            let layout = AttentionLayout {
                pad: &pad_v,
                q_slot0,
                block: 64,
            };
            let want = attention_shared(&q, &pk, &pv, &k, &v, layout, false)?
                .transpose(1, 2)?
                .reshape((b, t, heads * hd))?;
            let what = format!("cascade b{b} t{t} g{} hd{hd} prefix{plen}", heads / kv);
            check(label, &what, rel_err(&got, &want)?, dt);
            // Row by row too, so that a wrong row cannot hide behind larger ones.
            for (bi, pad) in pads.iter().enumerate() {
                let what = format!("cascade b{b} row {bi} (pad {pad})");
                check(label, &what, rel_err(&got.i(bi)?, &want.i(bi)?)?, dt);
            }
        }
    }
    Ok(())
}

/// A small GQA model (4 query heads per KV head) with random weights on `dev`.
fn random_model(dev: &Device, dt: DType, kernels: Kernels) -> anyhow::Result<Qwen2> {
    let cfg = Qwen2Config {
        vocab_size: 512,
        hidden_size: 128,
        intermediate_size: 192,
        num_hidden_layers: 3,
        num_attention_heads: 8,
        num_key_value_heads: 2,
        head_dim: 16,
        max_position_embeddings: 256,
        rope_theta: 1_000_000.0,
        rms_norm_eps: 1e-6,
        tie_word_embeddings: false,
    };
    let opts = ModelOptions {
        device: dev.clone(),
        dtype: dt,
        attention_block: 4,
        max_positions: None,
        comm: Arc::new(paramx::tp::SingleRank),
        prefill_dense_min_tokens: None,
        kernels,
        stop: None,
    };
    Qwen2::load(&cfg, &RandomSource::new(&cfg), &opts)
}

#[test]
fn whole_model_fused_matches_plain() -> anyhow::Result<()> {
    for (dev, dt, label) in targets() {
        let mut model = random_model(&dev, dt, Kernels::Fused)?;
        // Two left-padded rows, a chunked prefill and three decode steps, both paths on the same
        // weights; logits of every step compared.
        let run = |model: &Qwen2| -> anyhow::Result<Vec<Tensor>> {
            let pad = vec![0usize, 3];
            let mut cache = model.new_cache(pad, 24)?;
            let ids: Vec<u32> = (0..20).map(|i| (i * 37 + 11) % 512).collect();
            let mut out = Vec::new();
            for chunk in [&ids[0..7], &ids[7..10]] {
                let x = Tensor::new(chunk, &dev)?.unsqueeze(0)?.repeat((2, 1))?;
                let h = model.forward(&x, &mut cache)?;
                out.push(model.logits(&Qwen2::last_hidden(&h)?)?);
            }
            for step in 0..3u32 {
                let x = Tensor::new(&[[step + 1], [step + 2]], &dev)?;
                let h = model.forward(&x, &mut cache)?;
                out.push(model.logits(&Qwen2::last_hidden(&h)?)?);
            }
            Ok(out)
        };
        let fused = run(&model)?;
        model.set_kernels(Kernels::Plain);
        let plain = run(&model)?;
        for (i, (f, p)) in fused.iter().zip(&plain).enumerate() {
            // Row 1 has 3 padding slots: its first chunk's last position is real, so every
            // compared logit row is real.
            check(
                label,
                &format!("model logits, step {i}"),
                rel_err(f, p)?,
                dt,
            );
            if dt == DType::F32 {
                let (fa, pa) = (f.argmax(D::Minus1)?, p.argmax(D::Minus1)?);
                assert_eq!(
                    fa.to_vec1::<u32>()?,
                    pa.to_vec1::<u32>()?,
                    "{label}: greedy tokens"
                );
            }
        }
    }
    Ok(())
}
