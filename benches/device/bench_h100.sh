#!/usr/bin/env bash
# One device call: fused-kernel checks on the GPU, bench-gpu (fused + plain side by side),
# PyTorch on the same shapes. Logs + JSON in $OUT.
set -o pipefail
cd "$(dirname "$0")"
gunzip -kf paramx.gz it_gpu.gz && chmod +x paramx it_gpu
which nsys ncu 2>&1 | head -2; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee $OUT/smi.txt
export CUDA_CACHE_PATH=/tmp/cudacache
echo "== kernels tests (GPU + CPU)"
timeout 120 ./it_gpu kernels:: --test-threads=1 --nocapture > $OUT/kernels_gpu.log 2>&1
echo "kernels exit $?"; grep -E "cuda|test result|panicked|SKIP" $OUT/kernels_gpu.log | head -40
echo "== bench-gpu"
timeout ${BENCH_TIMEOUT:-300} ./paramx bench-gpu $BENCH_ARGS --json $OUT/bench-gpu.json > $OUT/bench-gpu.table 2> $OUT/bench-gpu.log
echo "bench-gpu exit $?"; grep -iE "error|failed" $OUT/bench-gpu.log | head; tail -3 $OUT/bench-gpu.log
cat $OUT/bench-gpu.table
if [ -n "$TORCH" ]; then
  echo "== torch"
  PYTHONUNBUFFERED=1 timeout 170 python3 torch_rank0.py --json $OUT/torch.json --rust-json $OUT/bench-gpu.json > $OUT/torch.log 2>&1
  echo "torch exit $?"; grep -v Warning $OUT/torch.log | tail -4
  sed -n '/## paramx vs/,$p' $OUT/torch.log
fi
