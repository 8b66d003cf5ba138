#!/usr/bin/env bash
# Quality of the main job on the dev gold, as the README reports it: one run of `paramx run`
# over the dev corpus (../shared/corpus, beside the checkout), then the strict scorer on
#   1. the whole dev gold, and
#   2. the dev gold restricted to the papers that have a PDF in the corpus (the three others,
#      Wang 2025, Evans 2025 and Taylor 2010, are misses for any extractor),
# each with its bootstrap interval and the constant answer beside it; the evidence report of the
# run; per-field TP/FP/FN. Prints a summary and writes one JSON.
#
#   benches/dev_quality.sh [MODEL] [THREADS] [OUT_DIR]
#   MODEL: qwen2.5-coder-1.5b (default) or qwen2.5-coder-0.5b. Reuses finished papers of OUT_DIR.
#   PARAMX_BIN=path runs that binary instead of building this checkout (a saved binary of an
#   earlier commit, for a side-by-side pair).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-qwen2.5-coder-1.5b}
threads=${2:-2}
out=${3:-out/dev-${model}}
mkdir -p "$(dirname "$out")"
gold=../shared/corpus/gold/gold_standard.csv
[ -f "$gold" ] || { echo "dev_quality: $gold not found (the dev corpus lives beside the checkout)" >&2; exit 2; }
if [ -n "${PARAMX_BIN:-}" ]; then
  bin=$PARAMX_BIN
else
  cargo build --release --locked -q
  bin=target/release/paramx
fi
$bin fetch-model --model "$model" --dir models >/dev/null
start=$(date +%s)
$bin run --config configs/dev-cpu.toml --model "models/${model}-instruct-q4_k_m.gguf" \
  --out "$out" --threads "$threads" >"$out.run.txt" 2>"$out.run.log" || true
end=$(date +%s)
restricted=$(mktemp --suffix=.csv)
python3 - "$gold" "$restricted" <<'PY'
import csv, sys
no_pdf = ("wang2025", "evans2025", "taylor2010")
with open(sys.argv[1], newline="") as f:
    rows = list(csv.reader(f))
with open(sys.argv[2], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(rows[0])
    for r in rows[1:]:
        if not r or not r[0].lower().startswith(no_pdf):
            w.writerow(r)
PY
$bin eval --gold "$gold" --pred "$out/table.csv" --json "$out/eval-all.json" >"$out/eval-all.txt"
$bin eval --gold "$restricted" --pred "$out/table.csv" --json "$out/eval-with-pdf.json" >"$out/eval-with-pdf.txt"
$bin eval --gold "$gold" --pred "$out/table.csv" --mismatches >"$out/mismatches.txt" || true
rm -f "$restricted"
mkdir -p benches/results
python3 - "$out" "$model" "$threads" "$((end - start))" <<'PY'
import json, sys, platform, os
out, model, threads, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def summary(name):
    d = json.load(open(f"{out}/{name}"))
    s, b = d["result"]["summary"], d["constant_baseline"]["summary"]
    fields = {f["name"]: f["counts"] for f in d["result"]["outcome"]["fields"]}
    return {"micro_f1": s["f1"], "precision": s["precision"], "recall": s["recall"], "ci95": s["ci95"],
            "reads_paper_f1": s["reads_paper_f1"], "constant_f1": b["f1"], "constant_ci95": b["ci95"],
            "constant_reads_paper_f1": b["reads_paper_f1"], "fields": fields,
            "papers": [(p["id"], p["matched"], p["counts"]) for p in d["result"]["outcome"]["papers"]]}
res = {"model": model, "threads": threads, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
       "wall_secs_this_invocation": secs, "all": summary("eval-all.json"),
       "with_pdf": summary("eval-with-pdf.json"),
       "evidence": json.load(open(f"{out}/evidence.json"))}
man = json.load(open(f"{out}/manifest.json"))
res["run"] = man.get("run", {})
path = f"benches/results/dev-quality-{model}.json"
json.dump(res, open(path, "w"), indent=1)
for k in ("all", "with_pdf"):
    s = res[k]
    print(f"{k:9s} strict micro-F1 {s['micro_f1']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]  "
          f"reads-the-paper {s['reads_paper_f1']:.3f}  constant {s['constant_f1']:.3f}")
e = res["evidence"]["total"]
print(f"evidence: {e['kept']} values, {e['supported']} supported, numbers {e['with_numbers_supported']}/{e['with_numbers']}, "
      f"shared quote {e['shared_quote']}, dropped unsupported {e['dropped_unsupported']}")
print(f"wrote {path}")
PY
