#!/usr/bin/env bash
# The whole 72B model (random bf16 weights) over two GPUs through NCCL, beside rank 0's share
# alone on one of them, same call. Logs + JSON in $OUT.
cd "$(dirname "$0")"
gunzip -kf paramx.gz && chmod +x paramx
export CUDA_CACHE_PATH=/tmp/cudacache
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader | tee $OUT/gpus.txt
A="--memory-prompts 1024,8192,30000 --prefill-prompts 2048,16384 --decode-batches 1,4,16"
t0=$(date +%s)
timeout 330 ./paramx bench-gpu --tp 2 $A --json $OUT/tp2.json > $OUT/tp2.table 2> $OUT/tp2.log
echo "tp2 exit $? in $(( $(date +%s) - t0 )) s"; grep -iE "error|failed|model built|rank 1" $OUT/tp2.log | head -8
cat $OUT/tp2.table
t0=$(date +%s)
timeout 200 ./paramx bench-gpu --tp 1 --memory-prompts 1024 --prefill-prompts 2048,16384 --decode-batches 1,4,16 --json $OUT/tp1.json > $OUT/tp1.table 2> $OUT/tp1.log
echo "tp1 exit $? in $(( $(date +%s) - t0 )) s"; grep -iE "error|failed" $OUT/tp1.log | head -5
grep -A5 "decode batch" $OUT/tp1.table; grep -A4 "prefill tokens" $OUT/tp1.table
