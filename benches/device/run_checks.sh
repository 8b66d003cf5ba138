#!/bin/bash
# GPU check of `paramx run --tp 2` (launcher + NCCL ranks) on the tiny random model.
set -u
here=$(cd "$(dirname "$0")" && pwd)
work=/tmp/gpucheck; rm -rf $work; cp -r "$here" $work; cd $work
gunzip -c paramx.gz > paramx && chmod +x paramx
export CUDA_CACHE_PATH=/tmp/cudacache RAYON_NUM_THREADS=4
R=${OUT:-/tmp/out}; mkdir -p $R
nvidia-smi -L
job() { # name tp max_new
cat > $1.toml <<EOT
[model]
path = "tiny-hf"
[hardware]
device = "cuda"
tp = $2
gpu = "h200"
[limits]
max_input_tokens = 6000
max_new_tokens = $3
[io]
inputs = ["papers"]
out_dir = "out-$1"
schema = "schema.toml"
EOT
}
run() { # name, then args; records time and exit code
  local name=$1; shift
  local t0=$(date +%s%N)
  timeout 400 ./paramx run --config $name.toml "$@" > $R/$name.stdout 2> $R/$name.stderr
  local rc=$?
  echo "== $name: exit $rc in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  tail -n 6 $R/$name.stderr
}
job tp1 1 300; run tp1
job tp2 2 300; run tp2
cmp out-tp1/table.csv out-tp2/table.csv && echo "table.csv: same bytes"
cmp out-tp1/errors.jsonl out-tp2/errors.jsonl && echo "errors.jsonl: same bytes"
python3 - <<'EOT'
import json
def load(p):
    out=[]
    for l in open(p):
        v=json.loads(l); v.pop("timing",None); v["key"].pop("job_hash",None); out.append(v)
    return out
a,b=load("out-tp1/results.jsonl"),load("out-tp2/results.jsonl")
print("results.jsonl (no timing/job hash): same" if a==b else "results.jsonl: DIFFER")
for r in b: print(r["source_file"], r["outcome"]["status"], r["outcome"].get("generated_tokens"))
EOT
# A rank that cannot open its GPU: rank 1 sees only one device.
job fail 2 300; CUDA_VISIBLE_DEVICES=0 run fail
# USR1 to the launcher mid-run: every rank stops, exit 75; the rerun finishes.
job usr1 2 2000
./paramx run --config usr1.toml > $R/usr1.stdout 2> $R/usr1.stderr & pid=$!
for i in $(seq 1 3000); do
  grep -q "broken.pdf: FAILED" $R/usr1.stderr 2>/dev/null && break; sleep 0.05; done
sleep 1; t0=$(date +%s%N); kill -USR1 $pid
wait $pid; rc=$?
echo "== usr1: exit $rc, $(( ($(date +%s%N) - t0) / 1000000 )) ms after USR1"
tail -n 8 $R/usr1.stderr
ls out-usr1/papers | wc -l
run usr1
# A rank killed (-9) mid-run: the launcher ends the job naming it.
job kill 2 2000
./paramx run --config kill.toml > $R/kill.stdout 2> $R/kill.stderr & lpid=$!
for i in $(seq 1 3000); do grep -q "broken.pdf: FAILED" $R/kill.stderr 2>/dev/null && break; sleep 0.05; done
sleep 1
for c in $(ps -o pid= --ppid $lpid); do
  if tr '\0' '\n' < /proc/$c/environ | grep -qx PARAMX_RANK=1; then kill -9 $c; echo "killed rank 1 (pid $c)"; fi
done
t0=$(date +%s%N); wait $lpid; rc=$?
echo "== kill: exit $rc, $(( ($(date +%s%N) - t0) / 1000000 )) ms after the kill"
tail -n 4 $R/kill.stderr
cp -r out-tp1 out-tp2 $R/ 2>/dev/null
