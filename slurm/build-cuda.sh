#!/usr/bin/env bash
# Build the CUDA + NCCL paramx binary on a machine without a GPU and pack it for the GPU host.
# Follows ../shared/docs/gpu.md: CUDA 13.0 build pieces from PyPI wheels (../shared/scripts/
# cuda13-build-env.sh, ~1.4 GB once, into /tmp/cuda13py), then a release build with the `nccl`
# feature (~9-13 min from scratch on 2 cores, seconds when incremental).
#
# Usage: slurm/build-cuda.sh [--tests]
#   --tests   also build the integration-test binary (tests/it: its nccl_gpu:: and kernels::
#             groups run on the GPU) and pack it beside paramx
# Environment:
#   PARAMX_CUDA_TARGET_DIR  cargo target dir (default: target-cuda in the repo)
#   PARAMX_SHARED           the shared inputs folder (default: ../shared next to the repo)
#   CUDA13_PREFIX           where the CUDA 13.0 wheels go (default: /tmp/cuda13py)
#   CUDA_COMPUTE_CAP        80 (default: PTX for A100, JIT-compiled on H100/H200) or 90
# Output: .device/paramx.gz (+ .device/it_gpu.gz with --tests) and
# their sha256 sums.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
with_tests=0
for arg in "$@"; do
  case $arg in
    --tests) with_tests=1 ;;
    *) echo "build-cuda.sh: unknown argument $arg (usage: slurm/build-cuda.sh [--tests])" >&2; exit 2 ;;
  esac
done
target_dir=${PARAMX_CUDA_TARGET_DIR:-$repo/target-cuda}
shared=${PARAMX_SHARED:-$repo/../shared}
env_script=$shared/scripts/cuda13-build-env.sh
if [ ! -f "$env_script" ]; then
  echo "build-cuda.sh: $env_script not found (set PARAMX_SHARED to the shared folder)" >&2
  exit 2
fi
# The env script is not written for `set -u`.
set +u
# The env script takes its install prefix as $1: pass it explicitly, never our own arguments.
# shellcheck source=/dev/null
source "$env_script" "${CUDA13_PREFIX:-/tmp/cuda13py}"
set -euo pipefail

cargo build --release --locked --features nccl --target-dir "$target_dir"
mkdir -p .device
gzip -9 -c "$target_dir/release/paramx" > .device/paramx.gz
if [ "$with_tests" = 1 ]; then
  # The one integration-test binary (tests/it); run a group with a filter on the GPU host,
  # e.g. `./it_gpu kernels::` or `./it_gpu nccl_gpu::`.
  # `--message-format` gives the test executable's path without guessing the hash suffix.
  exe=$(cargo test --release --locked --features nccl --target-dir "$target_dir" \
          --test it --no-run --message-format=json \
        | grep -o "\"executable\":\"[^\"]*/deps/it-[^\"]*\"" | tail -n 1 | cut -d'"' -f4)
  [ -n "$exe" ] || { echo "build-cuda.sh: no test executable for tests/it" >&2; exit 1; }
  gzip -9 -c "$exe" > .device/it_gpu.gz
fi
( cd .device && sha256sum ./*.gz > SHA256SUMS && ls -l ./*.gz )
echo "build-cuda.sh: done; on the GPU host: gunzip paramx.gz && chmod +x paramx"
