#!/usr/bin/env bash
# The README's screenshots of the review page: renders OUT's page (with a gold) and takes a
# headless-Chromium screenshot with one value opened (`#show=PAPER,ROW,COLUMN`, 0-based; column
# index in configs/schema.toml order).
#   benches/review_screenshots.sh OUT GOLD.csv PNG [P,R,C] [PDF_DIR]
set -euo pipefail
out=$1; gold=$2; png=$3; cell=${4:-0,0,7}; pdfs=${5:-}
paramx=${PARAMX:-target/release/paramx}
args=(report "$out" --gold "$gold")
[ -n "$pdfs" ] && args+=(--input "$pdfs")
"$paramx" "${args[@]}"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# A window tall enough that the opened value needs no scrolling (headless screenshots of a
# scrolled page come out blank; HEIGHT=… for a value further down).
chromium --headless --no-sandbox --disable-gpu --no-first-run --hide-scrollbars \
  --user-data-dir="$profile" --window-size=1440,${HEIGHT:-1150} --screenshot="$png" \
  "file://$(realpath "$out")/report.html#show=$cell" 2>/dev/null
ls -l "$png"
