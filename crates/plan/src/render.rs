//! The terminal table of a [`Plan`]: one line per budget term, GiB and exact bytes.

use super::{gib, Phase, Plan};
use std::fmt::Write;

const GIB: f64 = (1u64 << 30) as f64;

fn row(out: &mut String, indent: usize, label: &str, bytes: u64) {
    let label = format!("{:indent$}{label}", "");
    let _ = writeln!(
        out,
        "  {label:<54} {:>8.2} {:>15}",
        bytes as f64 / GIB,
        bytes
    );
}

pub(super) fn table(plan: &Plan) -> String {
    let req = &plan.request;
    let (m, r, job, b) = (req.model(), req.rank(), req.job(), &plan.budget);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "paramx plan: {} ({:.2} B params, {}) on {} x {}, tensor parallel {}",
        m.name,
        m.total_params() as f64 / 1e9,
        job.dtype,
        r.tp,
        req.gpu().name,
        r.tp
    );
    let headroom = match job.activation_headroom {
        Some(h) => gib(h),
        None => "= peak".to_string(),
    };
    let _ = writeln!(
        out,
        "job: max_input_tokens {} + max_new_tokens {} = context {}, batch {}, prefill chunk {}, \
         query block {}, activation headroom {headroom}",
        job.max_input_tokens,
        job.max_new_tokens,
        b.context,
        job.batch,
        job.prefill_chunk,
        job.query_block
    );
    let _ = writeln!(
        out,
        "per GPU, rank 0: {:.2} B params; {} of {} query heads, {} of {} KV heads, {} of {} MLP \
         columns, {} of {} vocabulary rows",
        b.params.total() as f64 / 1e9,
        r.heads,
        m.heads,
        r.kv_heads,
        m.kv_heads,
        r.intermediate,
        m.intermediate,
        r.vocab,
        m.vocab
    );
    let _ = writeln!(out, "  {:<54} {:>8} {:>15}", "term", "GiB", "bytes");
    row(&mut out, 0, "usable GPU memory", b.usable);
    row(&mut out, 0, "weights", b.weights);
    let per_token = r.kv_elems_per_token() * job.dtype.bytes();
    row(
        &mut out,
        0,
        &match job.question_tokens {
            None => format!(
                "KV cache ({} seq x {} tok x {:.1} KiB)",
                job.batch,
                b.context,
                per_token as f64 / 1024.0
            ),
            Some(q) => format!(
                "KV cache (prefix {} + {} x {} tok, x {:.1} KiB)",
                job.max_input_tokens,
                job.batch,
                q + job.max_new_tokens,
                per_token as f64 / 1024.0
            ),
        },
        b.kv_cache,
    );
    let reserved = if job.activation_headroom.is_some() {
        "activations (reserved headroom)"
    } else {
        "activations (reserved = peak)"
    };
    row(&mut out, 0, reserved, b.activation_reserved);
    let s = b.peak_step;
    let phase = match b.peak_phase {
        Phase::Prefill => "prefill",
        Phase::Decode => "decode",
    };
    row(
        &mut out,
        2,
        &format!(
            "peak: {phase}, {} x {} tok vs {} keys, block {}",
            s.seqs,
            s.new_tokens,
            s.keys,
            s.query_block.min(s.new_tokens)
        ),
        b.activation_peak,
    );
    for (name, bytes) in b.peak_terms.named() {
        row(&mut out, 4, name, bytes);
    }
    row(&mut out, 0, "rope tables", b.rope_tables);
    row(&mut out, 0, "CUDA context", b.cuda_context);
    row(&mut out, 0, "cuBLAS workspace", b.cublas_workspace);
    row(&mut out, 0, "NCCL buffers", b.nccl_buffers);
    row(&mut out, 0, "allocator slack", b.allocator_slack);
    row(&mut out, 0, "total", b.total);
    if b.total <= b.usable {
        row(&mut out, 0, "free", b.free());
    } else {
        row(&mut out, 0, "OVER BY", b.total - b.usable);
    }
    let limit = m.max_position_embeddings;
    let show = |n: Option<u64>| n.map_or("none".to_string(), |n| n.to_string());
    let edges = [
        ("within the headroom", plan.largest.within_headroom),
        ("raising the headroom", plan.largest.raising_headroom),
    ];
    for (how, e) in edges {
        let _ = writeln!(
            out,
            "{how:<21}: largest batch at context {} = {}; largest context at batch {} = {} \
             tokens{}",
            b.context,
            show(e.batch),
            job.batch,
            show(e.context),
            match e.context {
                Some(n) if n > limit => format!(" (model limit {limit})"),
                _ => String::new(),
            }
        );
    }
    let _ = writeln!(
        out,
        "verdict: {}",
        if plan.check().is_ok() {
            "fits"
        } else {
            "DOES NOT FIT"
        }
    );
    out
}
