#!/usr/bin/env bash
# CPU engine benchmark (not a test): prefill/decode tok/s and peak RSS of paramx's Qwen2 engine
# beside candle-transformers' quantized_qwen2 on the same GGUF files, batch 1 and 4.
# Prints a markdown table and writes JSON (default target/bench-cpu.json).
#   benches/cpu_engine.sh [--threads N] [--repeats N] [--json PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
for m in qwen2.5-coder-0.5b qwen2.5-coder-1.5b; do
  ./target/release/paramx fetch-model --model "$m" --dir models ${PARAMX_WHEEL_DIR:+--wheel-dir "$PARAMX_WHEEL_DIR"}
done
exec ./target/release/paramx bench-cpu --dir models "$@"
