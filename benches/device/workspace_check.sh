#!/usr/bin/env bash
# One device call after a restructure: the `--features nccl` build still works on a GPU.
# Build here with `slurm/build-cuda.sh --tests`, then run from the repo root on the device with
# `.device` carried: `bash benches/device/workspace_check.sh`. It runs the kernels:: tests on the
# GPU, writes the tiny random model with the test binary, runs `paramx run` on it on CUDA (exit 1
# is expected: the inputs include a broken PDF), checks the plan's refusal of tp = 3, and runs
# bench-gpu on the tiny shape and on rank 0 of the 72B at TP=2. Logs and JSON go to $OUT.
set -u
R=$OUT; root=$PWD; w=/tmp/w; mkdir -p $w; cd $w
[ -e /work/main ] || { mkdir -p /work && ln -s "$root" /work/main; }
gunzip -c $root/.device/paramx.gz > paramx; gunzip -c $root/.device/it_gpu.gz > it_gpu; chmod +x paramx it_gpu
export CUDA_CACHE_PATH=/tmp/cc RAYON_NUM_THREADS=8
nvidia-smi -L
echo "== kernels:: on the GPU"; timeout 200 ./it_gpu kernels:: --test-threads=1 > $R/kernels.log 2>&1; echo "exit $?"; grep -E "test result|panicked|FAILED" $R/kernels.log | head
echo "== tiny model"; PARAMX_TINY_OUT=$w/t timeout 100 ./it_gpu --ignored --exact run_tp::write_tiny_model_and_inputs_for_a_gpu_check > $R/tiny.log 2>&1; echo "exit $?"; ls $w/t
cat > job.toml <<EOT
[model]
path = "$w/t/tiny-hf"
[hardware]
device = "cuda"
tp = 1
gpu = "h100-80gb"
[limits]
max_input_tokens = 6000
max_new_tokens = 300
[io]
inputs = ["$w/t/papers"]
out_dir = "$w/out"
schema = "$root/configs/schema.toml"
EOT
echo "== paramx run on cuda"; timeout 300 ./paramx run --config job.toml > $R/run.stdout 2> $R/run.stderr; echo "exit $?"; tail -4 $R/run.stderr; wc -l $w/out/table.csv; cp $w/out/table.csv $R/ 2>/dev/null
echo "== plan refusal"; timeout 60 ./paramx run --config job.toml --tp 3 2>&1 | tail -2
echo "== bench-gpu tiny"; timeout 200 ./paramx bench-gpu --shape tiny --json $R/bench-tiny.json > $R/bench-tiny.table 2> $R/bench-tiny.log; echo "exit $?"; tail -5 $R/bench-tiny.table
echo "== bench-gpu 72B rank0"; timeout 420 ./paramx bench-gpu --json $R/bench-72b.json > $R/bench-72b.table 2> $R/bench-72b.log; echo "exit $?"; head -40 $R/bench-72b.table
