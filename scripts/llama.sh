#!/usr/bin/env bash
# llama.sh [--model] [--no-build] [--print-dir] — build llama.cpp's llama-server from the
# source bundled in the pinned `node-llama-cpp` npm package (DESIGN §6) and,
# with --model, generate the random-weight test model next to it.
#
# Needs no network except the npm registry: the package tarball is fetched
# with `npm pack`, its llama/gitRelease.bundle (a git bundle of llama.cpp) is
# cloned, and only the `llama-server` target is built (Release, CPU only,
# static, no curl/openssl, no web UI, portable -march). Everything lives in a
# cache outside the source tree and is reused:
#
#   $CONFIDE_CACHE/llama-<node-llama-cpp version>/   (default ~/.cache/confide)
#       node-llama-cpp-<v>.tgz   the npm tarball (integrity-checked, below)
#       src/                     llama.cpp checked out from the bundle
#       build/                   cmake build tree (kept for incremental reuse)
#       bin/llama-server         the installed binary
#       gguf-py -> src/gguf-py   put this on PYTHONPATH for the gguf package
#       model/tiny-llama.gguf    the test model (--model, scripts/make-model.py)
#
# --no-build: only report the paths; fail (exit 3) if something is missing
# instead of building it (the tests use this: no 15-minute build inside a test).
# --print-dir: print the cache directory and exit.
#
# Idempotent: when bin/llama-server (and the model, with --model) exist it
# prints their paths and exits at once. Output: the last line(s) on stdout are
# KEY=VALUE lines (LLAMA_SERVER=..., CONFIDE_LLAMA_MODEL=...) for `eval`;
# progress goes to stderr.
#
# Env: CONFIDE_CACHE (cache root), LLAMA_JOBS (default 2), LLAMA_NICE
# (default 10; the build shares CPUs with everything else).
set -euo pipefail

# Pinned: version and the registry's sha512 integrity of its tarball.
NLC_VERSION=3.22.1
NLC_INTEGRITY="sha512-bltIipuWmc123H7tMIgDGKSsSrhmhlQYeVUC48XTjVW7XGJJiJJyCdlTMzQ/LiWoPkGDpcL4FviDpgw7qfTiDw=="

root=$(cd "$(dirname "$0")/.." && pwd)
cache_root=${CONFIDE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/confide}
dir="$cache_root/llama-$NLC_VERSION"
bin="$dir/bin/llama-server"
model="$dir/model/tiny-llama.gguf"
jobs=${LLAMA_JOBS:-2}
nice_level=${LLAMA_NICE:-10}

want_model=0
print_dir=0
no_build=0
for a in "$@"; do
    case "$a" in
    --model) want_model=1 ;;
    --print-dir) print_dir=1 ;;
    --no-build) no_build=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "llama.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done
if [ "$print_dir" = 1 ]; then echo "$dir"; exit 0; fi

log() { echo "llama.sh: $*" >&2; }

if [ "$no_build" = 1 ]; then
    if [ ! -x "$bin" ] || { [ "$want_model" = 1 ] && [ ! -s "$model" ]; }; then
        log "llama-server or the test model is missing in $dir: run scripts/e2e-prepare.sh"
        exit 3
    fi
    echo "LLAMA_SERVER=$bin"
    [ "$want_model" = 0 ] || echo "CONFIDE_LLAMA_MODEL=$model"
    exit 0
fi

mkdir -p "$dir"
# One builder at a time per cache (CI and parallel test runs share it).
exec 9>"$dir/.lock"
flock 9

fetch_source() {
    local tgz="$dir/node-llama-cpp-$NLC_VERSION.tgz"
    if [ ! -s "$tgz" ]; then
        log "fetching node-llama-cpp@$NLC_VERSION from npm"
        local tmp
        tmp=$(mktemp -d "$dir/.pack.XXXXXX")
        (cd "$tmp" && npm pack --silent "node-llama-cpp@$NLC_VERSION" >/dev/null)
        mv "$tmp/node-llama-cpp-$NLC_VERSION.tgz" "$tgz.part"
        rmdir "$tmp"
        local got
        got="sha512-$(openssl dgst -sha512 -binary "$tgz.part" | base64 -w0)"
        if [ "$got" != "$NLC_INTEGRITY" ]; then
            log "integrity mismatch for node-llama-cpp@$NLC_VERSION: got $got"
            rm -f "$tgz.part"
            exit 1
        fi
        mv "$tgz.part" "$tgz"
    fi
    if [ ! -f "$dir/src/.confide-ok" ]; then
        log "unpacking llama.cpp from the bundle"
        rm -rf "$dir/src" "$dir/unpack"
        mkdir -p "$dir/unpack"
        tar -xzf "$tgz" -C "$dir/unpack" package/llama/gitRelease.bundle package/llama/llama.cpp.info.json
        git -c advice.detachedHead=false clone -q "$dir/unpack/package/llama/gitRelease.bundle" "$dir/src"
        cp "$dir/unpack/package/llama/llama.cpp.info.json" "$dir/src/.node-llama-cpp-info.json"
        rm -rf "$dir/unpack"
        touch "$dir/src/.confide-ok"
    fi
    ln -sfn src/gguf-py "$dir/gguf-py"
}

build_server() {
    fetch_source
    command -v cmake >/dev/null || { log "cmake missing: run scripts/deps.sh"; exit 1; }
    log "building llama-server (cmake, -j$jobs, nice $nice_level); ~10-20 min on 2 cores"
    local t0=$SECONDS
    # Static, CPU only, portable: the binary must work wherever the cache is
    # restored. No curl/openssl (no model downloads), no web UI (the prebuilt
    # one would be downloaded from Hugging Face), no tests/examples/app.
    nice -n "$nice_level" cmake -S "$dir/src" -B "$dir/build" \
        -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
        -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
        -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
        -DGGML_NATIVE=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF \
        -DGGML_HIP=OFF -DGGML_SYCL=OFF -DGGML_OPENCL=OFF -DGGML_RPC=OFF \
        -DGGML_BACKEND_DL=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_CCACHE=OFF \
        >"$dir/cmake-configure.log" 2>&1 || { tail -n 40 "$dir/cmake-configure.log" >&2; exit 1; }
    nice -n "$nice_level" cmake --build "$dir/build" --target llama-server -j "$jobs" \
        >"$dir/cmake-build.log" 2>&1 || { tail -n 40 "$dir/cmake-build.log" >&2; exit 1; }
    mkdir -p "$dir/bin"
    install -m 0755 "$dir/build/bin/llama-server" "$bin.part"
    mv "$bin.part" "$bin"
    log "built $bin in $((SECONDS - t0))s"
}

make_model() {
    fetch_source
    log "generating the random-weight model"
    local t0=$SECONDS
    mkdir -p "$dir/model"
    # Debian's python3 (numpy, yaml from apt), not whatever is first on PATH.
    local py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    PYTHONPATH="$dir/gguf-py${PYTHONPATH:+:$PYTHONPATH}" \
        "$py" "$root/scripts/make-model.py" "$model.part"
    mv "$model.part" "$model"
    log "generated $model in $((SECONDS - t0))s"
}

[ -x "$bin" ] || build_server
if [ "$want_model" = 1 ]; then
    # Regenerate when the generator changed (its hash is in the stamp).
    gen_hash=$(sha256sum "$root/scripts/make-model.py" | cut -c1-16)
    if [ ! -s "$model" ] || [ "$(cat "$model.gen" 2>/dev/null)" != "$gen_hash" ]; then
        make_model
        echo "$gen_hash" >"$model.gen"
    fi
fi

echo "LLAMA_SERVER=$bin"
[ "$want_model" = 0 ] || echo "CONFIDE_LLAMA_MODEL=$model"
