#!/usr/bin/env bash
# CPU engine benchmark (not a test): prefill and decode tok/s of paramx's Qwen2 engine beside
# llama.cpp's llama-bench, on the same GGUF files, prompt length and threads, in one run; also
# paramx with candle's quantized kernels in place of ours (the "before" of crates/engine/src/model/qgemv,
# with a greedy-token comparison). llama.cpp is built from a pinned, hash-checked source by
# benches/llama_cpp.sh. Prints a markdown table and writes JSON (default target/bench-cpu.json).
#   benches/cpu_engine.sh [--threads N] [--repeats N] [--prompt-tokens 512] [--new-tokens 128]
#                         [--engines paramx paramx-candle-kernels llama.cpp candle] [--json PATH]
# Run it on a quiet machine: no build beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
for m in qwen2.5-coder-0.5b qwen2.5-coder-1.5b; do
  ./target/release/paramx fetch-model --model "$m" --dir models ${PARAMX_WHEEL_DIR:+--wheel-dir "$PARAMX_WHEEL_DIR"}
done
LB=$(benches/llama_cpp.sh | tail -1)
exec ./target/release/paramx bench-cpu --dir models --llama-bench "$LB" "$@"
