#!/bin/bash
# Two GPUs: NCCL tests, `paramx run --tp 2` vs `--tp 1` (tiny model; 72B-shaped 2-layer model),
# a rank that cannot open its GPU, USR1, a rank killed with -9 (gpucheck/run.sh).
set -u
OUTDIR=${OUT:-/tmp/out}; R=/tmp/r; rm -rf $R; mkdir -p $R $OUTDIR
export OUT=$R  # run.sh writes its logs here too; all of it comes back as one tarball
dev=$(cd "$(dirname "$0")/.." && pwd)
nvidia-smi --query-gpu=index,name,memory.total --format=csv | tee $R/gpus.txt
cd $dev && gunzip -kf it_gpu.gz && chmod +x it_gpu
timeout 400 ./it_gpu nccl_gpu:: --test-threads=1 --nocapture > $R/nccl_gpu.log 2>&1
echo "nccl_gpu exit $?"; grep -E "test result|panicked|TP=2 vs|all-reduce|checkpoints|SKIP" $R/nccl_gpu.log | head -20
bash $dev/gpucheck/run.sh > $R/tiny.txt 2>&1
grep -E "^==|same|DIFFER|differ|killed|Error|error" $R/tiny.txt | head -30
cd /tmp/gpucheck
timeout 200 python3 make72.py tiny-hf m72 2 2>&1 | grep -v Warn | tail -2
export CUDA_CACHE_PATH=/tmp/cudacache RAYON_NUM_THREADS=4
for tp in 1 2; do
cat > m72tp$tp.toml <<EOT
[model]
path = "m72"
[hardware]
device = "cuda"
tp = $tp
gpu = "h200"
[limits]
max_input_tokens = 6000
max_new_tokens = 200
[io]
inputs = ["papers"]
out_dir = "out-m72tp$tp"
schema = "schema.toml"
EOT
t0=$(date +%s%N)
timeout 400 ./paramx run --config m72tp$tp.toml > $R/m72tp$tp.stdout 2> $R/m72tp$tp.stderr
echo "== m72 tp$tp: exit $? in $(( ($(date +%s%N) - t0) / 1000000 )) ms"; tail -n 4 $R/m72tp$tp.stderr
done
cmp out-m72tp1/table.csv out-m72tp2/table.csv && echo "m72 table.csv: same bytes"
python3 - <<'EOT'
import json
for tp in (1, 2):
    for l in open(f"out-m72tp{tp}/results.jsonl"):
        v = json.loads(l)
        print(tp, v["source_file"], v["outcome"]["status"], v["outcome"].get("generated_tokens"), json.dumps(v.get("timing")))
EOT
cp -r out-m72tp1 out-m72tp2 $R/ 2>/dev/null; true

tar czf $OUTDIR/logs.tgz -C $R . && ls -la $OUTDIR
