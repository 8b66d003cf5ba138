#!/usr/bin/env python3
"""PyTorch + transformers on the same rank-0 shapes as `paramx bench-gpu` (Qwen2.5-72B TP=2,
rank 0: 80 layers, hidden 8192, 32 query heads / 4 KV heads of 128, MLP 14784, vocab 76032),
random bf16 weights built on the GPU from a config (no download), same scenarios:
ceilings (copy bandwidth, bf16 matmul), prefill tok/s (2k, 16k; batch 1), decode ms/step at
batch 1/4/16 after a 1024-token prompt, peak memory. With --rust-json it prints the side-by-side
table of both engines from one device call (ratios > 1: paramx faster).

Usage: python3 benches/torch_rank0.py --json OUT.json [--rust-json bench-gpu.json] [--tiny]
Under torchrun (`python3 -m torch.distributed.run --standalone --nproc_per_node 2 ...`) each
process holds one rank's share (the same shapes) with the all-reduces of a Megatron-style split
added as forward hooks, for a side-by-side with `paramx bench-gpu --tp 2`; rank 0 reports.
A benchmark, not a test: it asserts no speed.
"""
import argparse, builtins, json, statistics, sys, time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM


def config(tiny):
    if tiny:
        kw = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, head_dim=16, vocab_size=300)
    else:
        kw = dict(hidden_size=8192, intermediate_size=14784, num_hidden_layers=80,
                  num_attention_heads=32, num_key_value_heads=4, head_dim=128, vocab_size=76032)
    return Qwen2Config(max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-6,
                       tie_word_embeddings=False, use_sliding_window=False,
                       attn_implementation="sdpa", **kw)


def sync():
    torch.cuda.synchronize()


def timed(f, reps, warm=1):
    for _ in range(warm):
        f()
    sync()
    out = []
    for _ in range(reps):
        s = time.perf_counter()
        f()
        sync()
        out.append(time.perf_counter() - s)
    return statistics.median(out), out


def used():
    free, total = torch.cuda.mem_get_info()
    return total - free


def ceilings(tiny):
    n_el = (1 << 22) if tiny else (1 << 30)
    x = torch.randn(n_el, device="cuda", dtype=torch.bfloat16)
    y = torch.empty_like(x)
    t, _ = timed(lambda: y.copy_(x), 10)
    copy_gbs = 2 * x.numel() * 2 / t / 1e9
    del x, y
    n = 256 if tiny else 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    t, _ = timed(lambda: a @ b, 10)
    return dict(copy_gb_s=copy_gbs, matmul_n=n, matmul_tflops=2 * n ** 3 / t / 1e12)


def tp_group():
    """(rank, world size): under torchrun, joins the NCCL group on this rank's GPU."""
    import os
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local)
    dist.init_process_group("nccl", device_id=torch.device("cuda", local))
    return rank, world


def add_all_reduces(model):
    """The all-reduces of a tensor-parallel rank: after each row-parallel projection (o_proj,
    down_proj) and after the vocabulary-split embedding, as paramx does. (The lm_head's gather
    of the last position's logits is left out: one small gather per step.)"""
    import torch.distributed as dist

    def hook(_module, _inputs, out):
        dist.all_reduce(out)
        return out

    model.model.embed_tokens.register_forward_hook(hook)
    for layer in model.model.layers:
        layer.self_attn.o_proj.register_forward_hook(hook)
        layer.mlp.down_proj.register_forward_hook(hook)


def ids(b, n, vocab, seed):
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randint(0, vocab, (b, n), generator=g).cuda()


@torch.inference_mode()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--rust-json")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--prefill", default="2048,16384")
    ap.add_argument("--batches", default="1,4,16")
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    rank, world = tp_group()
    print = builtins.print if rank == 0 else (lambda *_a, **_k: None)  # rank 0 reports
    rep = dict(machine=torch.cuda.get_device_name(), torch=torch.__version__, world_size=world)
    import transformers
    rep["transformers"] = transformers.__version__
    rep["ceilings"] = ceilings(a.tiny)
    print("ceilings", rep["ceilings"], flush=True)
    cfg = config(a.tiny)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(cfg)
    model.eval()
    if world > 1:
        add_all_reduces(model)
    sync()
    rep["load_secs"] = time.perf_counter() - t0
    rep["weights_bytes_resident"] = used()
    print(f"model built in {rep['load_secs']:.1f}s, in use {used()/2**30:.2f} GiB", flush=True)
    V = cfg.vocab_size

    rep["prefill"] = []
    for p in [int(x) for x in a.prefill.split(",") if x]:
        x = ids(1, p, V, 1000 + p)
        torch.cuda.reset_peak_memory_stats()
        f = lambda: model(input_ids=x, use_cache=True, logits_to_keep=1).logits.argmax(-1)
        m, allt = timed(f, a.repeats)
        row = dict(prompt=p, secs_median=m, secs_all=allt, tokens_per_s=p / m,
                   peak_allocated_bytes=torch.cuda.max_memory_allocated(),
                   peak_reserved_bytes=torch.cuda.max_memory_reserved())
        print("prefill", row, flush=True)
        rep["prefill"].append(row)
        torch.cuda.empty_cache()

    rep["decode"] = []
    for b in [int(x) for x in a.batches.split(",") if x]:
        x = ids(b, a.context, V, 77 + b)
        torch.cuda.reset_peak_memory_stats()
        out = model(input_ids=x, use_cache=True, logits_to_keep=1)
        past = out.past_key_values
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        ms = []
        for step in range(a.steps + 3):
            sync()
            s = time.perf_counter()
            out = model(input_ids=nxt, past_key_values=past, use_cache=True, logits_to_keep=1)
            past = out.past_key_values
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            nxt.cpu()  # read back, as paramx does
            if step >= 3:
                ms.append((time.perf_counter() - s) * 1e3)
        row = dict(batch=b, context=a.context + 3 + a.steps // 2, ms_per_step_median=statistics.median(ms),
                   ms_all=ms, tokens_per_s=b / (statistics.median(ms) / 1e3),
                   peak_allocated_bytes=torch.cuda.max_memory_allocated(),
                   peak_reserved_bytes=torch.cuda.max_memory_reserved())
        print("decode", {k: v for k, v in row.items() if k != "ms_all"}, flush=True)
        rep["decode"].append(row)
        del past, out
        torch.cuda.empty_cache()

    if world > 1:
        torch.distributed.destroy_process_group()
        if rank != 0:
            return
    with open(a.json, "w") as f:
        json.dump(rep, f, indent=1)
    if a.rust_json:
        side_by_side(json.load(open(a.rust_json)), rep)


def side_by_side(r, t):
    print(f"\n## paramx vs PyTorch {t['torch']} + transformers {t['transformers']}, {t['machine']}, same call")
    rc, tc = r["ceilings"], t["ceilings"]
    print(f"ceilings: copy {rc['copy_gb_s']:.0f} (candle) / {tc['copy_gb_s']:.0f} (torch) GB/s; "
          f"bf16 matmul {rc['matmul_tflops']:.0f} / {tc['matmul_tflops']:.0f} TFLOP/s")
    # Ceilings are torch's (candle's copy is not a ceiling, see benches/NOTES.md).
    print("\n| workload | paramx kernels | paramx | torch | paramx speed-up | paramx vs ceiling |")
    print("|---|---|---|---|---|---|")
    tp = {p["prompt"]: p for p in t["prefill"]}
    for p in r["prefill"]:
        q = tp.get(p["prompt"])
        if q:
            frac = p["tflops"] / tc["matmul_tflops"]
            print(f"| prefill {p['prompt']} tok/s | {p.get('kernels', '')} | {p['tokens_per_s']:.0f} | "
                  f"{q['tokens_per_s']:.0f} | {p['tokens_per_s'] / q['tokens_per_s']:.2f}x | "
                  f"{100 * frac:.0f}% of {tc['matmul_tflops']:.0f} TFLOP/s |")
    td = {d["batch"]: d for d in t["decode"]}
    for d in r["decode"]:
        q = td.get(d["batch"])
        if q:
            floor = d["bytes_per_step"] / (tc["copy_gb_s"] * 1e9) * 1e3
            proj = d.get("projections_ms_median")
            extra = f"; projections alone {proj / floor:.2f}x" if proj else ""
            print(f"| decode b={d['batch']} ms/step | {d.get('kernels', '')} | {d['ms_per_step_median']:.2f} | "
                  f"{q['ms_per_step_median']:.2f} | {q['ms_per_step_median'] / d['ms_per_step_median']:.2f}x | "
                  f"{d['ms_per_step_median'] / floor:.2f}x floor ({floor:.1f} ms){extra} |")


if __name__ == "__main__":
    sys.exit(main())
