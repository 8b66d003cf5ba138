#!/usr/bin/env bash
# paramx bench-gpu --tp 2 and PyTorch + transformers TP=2 (torchrun, all-reduce hooks) on the
# same two GPUs, same call. Logs + JSON in $OUT.
cd "$(dirname "$0")"
gunzip -kf paramx.gz && chmod +x paramx
export CUDA_CACHE_PATH=/tmp/cudacache
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee $OUT/gpus.txt
A="--memory-prompts 1024 --prefill-prompts 2048,16384 --decode-batches 1,4,16"
t0=$(date +%s)
timeout 200 ./paramx bench-gpu --tp 2 $A --json $OUT/tp2.json > $OUT/tp2.table 2> $OUT/tp2.log
echo "paramx tp2 exit $? in $(( $(date +%s) - t0 )) s"; grep -iE "error|failed" $OUT/tp2.log | head -5
t0=$(date +%s)
PYTHONUNBUFFERED=1 timeout 300 python3 -m torch.distributed.run --standalone --nproc_per_node 2 \
  torch_rank0.py --json $OUT/torch_tp2.json --rust-json $OUT/tp2.json > $OUT/torch_tp2.log 2>&1
echo "torch tp2 exit $? in $(( $(date +%s) - t0 )) s"; grep -v Warning $OUT/torch_tp2.log | grep -iE "error|Traceback" -A3 | head -20
grep -E "^(prefill|decode|model built)" $OUT/torch_tp2.log | cut -c1-160
sed -n '/## paramx vs/,$p' $OUT/torch_tp2.log
