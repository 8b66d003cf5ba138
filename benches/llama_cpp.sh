#!/usr/bin/env bash
# Build llama.cpp's `llama-bench` (CPU only) from a pinned, hash-checked source.
#
# Why: issue 18 compares paramx's CPU engine side by side with llama.cpp on the same GGUF
# files. To make that comparison reproducible, llama.cpp must come from a fixed source: the
# llama-cpp-python sdist on PyPI (pinned version + sha256 below) vendors llama.cpp under
# vendor/llama.cpp. Nothing is fetched from GitHub.
#
# What it does (all under target/llama.cpp/, nothing system-wide, nothing else in target/):
#   1. venv/   : a venv with cmake + scikit-build-core from PyPI, pinned by version and hash
#                (pip needs the sdist's build backend and cmake just to download an sdist;
#                the same pinned cmake then configures llama.cpp).
#   2. dl/     : `pip download` of the llama-cpp-python sdist, checked against PINNED_SHA256.
#   3. llama_cpp_python-VER/ : the unpacked sdist.
#   4. build-VER/ : cmake Release build of the `llama-bench` target only, -DGGML_NATIVE=ON
#                (tuned to THIS cpu: rebuild on each machine), static libs, no HTTPS/curl,
#                tests/examples/server/app off. build-VER/BUILD_INFO.txt records the versions.
# Idempotent: if build-VER/bin/llama-bench exists with a stamp for the pinned hash and the
# same cmake options, it prints the path at once and exits 0.
#
# Run:   benches/llama_cpp.sh                    # progress on stderr
#        LB=$(benches/llama_cpp.sh | tail -1)    # last stdout line = path of llama-bench
#        JOBS=1 nice -n 19 benches/llama_cpp.sh  # on a busy machine (default JOBS=$(nproc))
# Needs: python3 (with venv + pip), a C/C++ compiler, make, sha256sum, tar.
set -euo pipefail

VER=0.3.36
SDIST="llama_cpp_python-${VER}.tar.gz"
PINNED_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/target/llama.cpp"
VENV="$OUT/venv"
SRC="$OUT/llama_cpp_python-${VER}"
LLAMA_SRC="$SRC/vendor/llama.cpp"
BUILD="$OUT/build-${VER}"
BIN="$BUILD/bin/llama-bench"
STAMP="$BUILD/.stamp"

log() { printf '[llama_cpp.sh] %s\n' "$*" >&2; }
die() { printf '[llama_cpp.sh] ERROR: %s\n' "$*" >&2; exit 1; }

CMAKE_OPTS=(
  -DCMAKE_BUILD_TYPE=Release
  -DGGML_NATIVE=ON
  -DBUILD_SHARED_LIBS=OFF
  -DLLAMA_OPENSSL=OFF           # HTTPS model download (LLAMA_CURL is deprecated in this tree)
  -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES=OFF
  -DLLAMA_BUILD_SERVER=OFF
  -DLLAMA_BUILD_APP=OFF
  -DLLAMA_BUILD_TOOLS=ON        # llama-bench lives in tools/
  -DLLAMA_BUILD_COMMON=ON
  # Without AMX: this llama.cpp's AMX tile kernels die with SIGILL (`tileloadd` in
  # tinygemm_kernel_amx, the first prompt of llama-bench) on the dev box, 2026-12-06. GCC lets
  # an explicit -mno-* win over -march=native whatever the order; AVX-512 VNNI stays.
  "-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
)
WANT_STAMP="sha256=$PINNED_SHA256 opts=${CMAKE_OPTS[*]}"

# 4. Fast path: already built from the pinned sdist with the same options.
if [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT_STAMP" ]]; then
  log "up to date: llama-bench from llama-cpp-python $VER (sha256 $PINNED_SHA256)"
  echo "$BIN"
  exit 0
fi

mkdir -p "$OUT"

# 1. Pinned build tools in a venv (never system-wide).
REQ="$OUT/requirements-tools.txt"
cat >"$REQ" <<'EOF'
# written by benches/llama_cpp.sh: build tools, pinned by version and hash (wheels only)
cmake==4.4.5 \
    --hash=sha256:85625a9b6d5e88ff99c7eb79123d85570844e77ac076366cf75c609cc0b1b579 \
    --hash=sha256:25fc8469e67857124ef10c002331c0ab416eb7b8d9e1d6e4c58e84e730013ece \
    --hash=sha256:56851f57f3017d81187793fa61f269d583c500c2904aff99cf5208cd341dec79 \
    --hash=sha256:7d7ef56092bc46b202c3d87796444a0a1db3145cea48523cdd4ebd13fef847b7 \
    --hash=sha256:e07a5716b4233dc9c69d6ca6993f4405eefc7687e718d9f6eebbb6cc1be304ef
scikit-build-core==1.1.2 \
    --hash=sha256:7f4f959a467692db50bdd1ea7ce1507f2c7972e6023b753ee302d169bc4cec85
packaging==26.4 \
    --hash=sha256:81383611a09c1bc0b08b76e0fd5829d7c6824c65b27a6aee339da133f4233ea2
pathspec==1.1.1 \
    --hash=sha256:a00ce642f577bf7f473932318056212bc4f8bfdf53128c78bbd5af0b9b20b189
tomli==2.5.0 ; python_version < "3.11" \
    --hash=sha256:32a7b79ac57a2e83670ce329ccf675798bc5a2094783a63676866b70503f2e2b
exceptiongroup==1.3.2 ; python_version < "3.11" \
    --hash=sha256:41c6a70dfec22050d3d8b43386b059a4dc0bca3f3d40a40971cb206fff1785af
typing-extensions==4.16.0 ; python_version < "3.11" \
    --hash=sha256:481caa481374e813c1b176ada14e97f1f67a4539ce9cfeb3f350d78d6370c2e8
EOF
if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  log "creating venv $VENV"
  python3 -m venv "$VENV" >&2 || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
fi
if ! "$VENV/bin/python" -m pip install --quiet --no-deps --require-hashes --only-binary :all: \
       -r "$REQ" >&2; then
  die "pinned install of cmake/scikit-build-core failed (see $REQ)"
fi
CMAKE="$VENV/bin/cmake"
[[ -x "$CMAKE" ]] || die "cmake missing from $VENV after install"
log "cmake: $("$CMAKE" --version | head -1)"

# 2. Download the sdist with pip and check its sha256.
DL="$OUT/dl"
mkdir -p "$DL"
if [[ ! -f "$DL/$SDIST" ]]; then
  log "downloading llama-cpp-python==$VER sdist from PyPI"
  # --no-build-isolation: pip prepares the sdist's metadata with the pinned scikit-build-core
  # and cmake of the venv instead of fetching (and building) unpinned ones.
  PATH="$VENV/bin:$PATH" "$VENV/bin/python" -m pip download --no-deps --no-binary :all: \
    --no-build-isolation "llama-cpp-python==$VER" --dest "$DL" >&2 \
    || die "pip download of llama-cpp-python==$VER failed"
fi
[[ -f "$DL/$SDIST" ]] || die "pip did not produce $DL/$SDIST"
GOT_SHA256=$(sha256sum "$DL/$SDIST" | cut -d' ' -f1)
if [[ "$GOT_SHA256" != "$PINNED_SHA256" ]]; then
  die "sha256 mismatch for $DL/$SDIST
  expected: $PINNED_SHA256
  got:      $GOT_SHA256
delete the file to retry the download; if PyPI really changed, do NOT just update the pin."
fi
log "sha256 ok: $SDIST $GOT_SHA256"

# 3. Unpack (fresh, so a half-unpacked tree never survives).
if [[ ! -f "$SRC/.unpacked-$PINNED_SHA256" ]]; then
  log "unpacking into $SRC"
  rm -rf "$SRC"
  tar -xzf "$DL/$SDIST" -C "$OUT"
  [[ -f "$LLAMA_SRC/CMakeLists.txt" ]] || die "no vendor/llama.cpp in $SDIST"
  touch "$SRC/.unpacked-$PINNED_SHA256"
fi

# Vendored llama.cpp version: the sdist has no git metadata, so the build number is pinned to 0
# (llama.cpp's "unknown"; also keeps git from reading the enclosing repo) and the commit is
# taken from the sdist's CHANGELOG entry for this version.
LLAMA_COMMIT=$(awk -v v="## [$VER]" '$0==v{f=1;next} f&&/^## \[/{exit}
  f&&match($0,/ggml-org\/llama\.cpp@[0-9a-f]+/){print substr($0,RSTART+19,RLENGTH-19);exit}' \
  "$SRC/CHANGELOG.md" 2>/dev/null || true)
if [[ -n "$LLAMA_COMMIT" ]]; then
  LLAMA_DESC="ggml-org/llama.cpp@$LLAMA_COMMIT (vendored by llama-cpp-python $VER)"
else
  LLAMA_COMMIT="llama-cpp-python-$VER"
  LLAMA_DESC="vendored by llama-cpp-python $VER"
fi
log "llama.cpp: $LLAMA_DESC"

# 5. Configure and build only llama-bench.
JOBS="${JOBS:-$(nproc)}"
rm -f "$STAMP"
log "configuring $BUILD: ${CMAKE_OPTS[*]}"
"$CMAKE" -S "$LLAMA_SRC" -B "$BUILD" "${CMAKE_OPTS[@]}" \
  -DLLAMA_BUILD_COMMIT="$LLAMA_COMMIT" -DLLAMA_BUILD_NUMBER=0 >&2
log "building llama-bench with -j $JOBS"
start=$SECONDS
"$CMAKE" --build "$BUILD" --target llama-bench -j "$JOBS" >&2
[[ -x "$BIN" ]] || die "build finished but $BIN is missing"
log "built in $((SECONDS - start)) s"
if command -v ldd >/dev/null && ldd "$BIN" | grep -q 'not found'; then
  ldd "$BIN" >&2
  die "$BIN has missing shared libraries"
fi

{
  echo "llama-cpp-python $VER sdist sha256 $PINNED_SHA256"
  echo "llama.cpp: $LLAMA_DESC"
  echo "cmake: $("$CMAKE" --version | head -1)"
  echo "compiler: $(grep -m1 '^CMAKE_CXX_COMPILER:' "$BUILD/CMakeCache.txt" | cut -d= -f2-) $("$(grep -m1 '^CMAKE_CXX_COMPILER:' "$BUILD/CMakeCache.txt" | cut -d= -f2-)" -dumpfullversion 2>/dev/null || true)"
  echo "cmake options: ${CMAKE_OPTS[*]} -DLLAMA_BUILD_COMMIT=$LLAMA_COMMIT -DLLAMA_BUILD_NUMBER=0"
  echo "host cpu: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //')"
} >"$BUILD/BUILD_INFO.txt"
echo "$WANT_STAMP" >"$STAMP"
log "wrote $BUILD/BUILD_INFO.txt"
echo "$BIN"
