# A Qwen2.5-72B-shaped random model with few layers (HF safetensors, bf16), tokenizer of tiny-hf.
import json, os, shutil, sys, torch
from safetensors.torch import save_file
src, dst, layers = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = json.load(open(f"{src}/config.json"))
cfg.update(hidden_size=8192, intermediate_size=29568, num_hidden_layers=layers,
           num_attention_heads=64, num_key_value_heads=8, max_window_layers=layers,
           torch_dtype="bfloat16")
os.makedirs(dst, exist_ok=True)
json.dump(cfg, open(f"{dst}/config.json", "w"))
for f in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(f"{src}/{f}", dst)
g = torch.Generator(device="cuda").manual_seed(0)
h, f, V, q, kv = 8192, 29568, cfg["vocab_size"], 8192, 1024
def r(*s, std=0.02):
    return (torch.randn(*s, generator=g, device="cuda") * std).to(torch.bfloat16).cpu()
t = {"model.embed_tokens.weight": r(V, h, std=1.0), "lm_head.weight": r(V, h),
     "model.norm.weight": torch.ones(h, dtype=torch.bfloat16)}
for i in range(layers):
    p = f"model.layers.{i}."
    t[p + "input_layernorm.weight"] = torch.ones(h, dtype=torch.bfloat16)
    t[p + "post_attention_layernorm.weight"] = torch.ones(h, dtype=torch.bfloat16)
    for n, o in (("q", q), ("k", kv), ("v", kv)):
        t[p + f"self_attn.{n}_proj.weight"] = r(o, h)
        t[p + f"self_attn.{n}_proj.bias"] = r(o)
    t[p + "self_attn.o_proj.weight"] = r(h, q)
    t[p + "mlp.gate_proj.weight"] = r(f, h)
    t[p + "mlp.up_proj.weight"] = r(f, h)
    t[p + "mlp.down_proj.weight"] = r(h, f)
save_file(t, f"{dst}/model.safetensors")
print(f"{dst}: {sum(v.numel() for v in t.values())/1e9:.2f} B parameters")
