#!/usr/bin/env bash
# ncu on the decode glue kernels of bench-gpu (light config). Reports in $OUT.
cd "$(dirname "$0")"
gunzip -kf paramx.gz && chmod +x paramx
export CUDA_CACHE_PATH=/tmp/cudacache
NCU=/usr/local/cuda/bin/ncu
ARGS="bench-gpu --memory-prompts 1024 --prefill-prompts 2048 --prefill-repeats 1 --decode-batches 1 --decode-steps 2 --json $OUT/light.json"
for k in ${KERNELS:-attn_decode_bf16_128}; do
  timeout 240 $NCU --kernel-name $k --launch-skip ${SKIP:-200} --launch-count 2 --set full \
    --print-summary none ./paramx $ARGS > $OUT/ncu-$k.txt 2> $OUT/ncu-$k.err
  echo "$k exit $?"
  grep -E "attn_decode|add_rms|Duration|Registers Per|Achieved Occupancy|Theoretical Occupancy|Waves Per SM|Block Limit|Memory Throughput|DRAM Throughput|L2 Hit|Grid Size|Executed Instructions|Elapsed Cycles|Stall|Warp Cycles Per Issued|Issued Warp|No Eligible|One or More" $OUT/ncu-$k.txt | head -40
done
