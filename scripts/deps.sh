#!/usr/bin/env bash
# deps.sh — install the Debian packages confide needs to build, test, fuzz,
# benchmark and run the demo, on a fresh Debian 12 (bookworm). Idempotent:
# only what is missing is installed. Run as root; otherwise it prints the
# apt-get line to run. Node.js comes from Debian unless a node is already on
# PATH. Everything else (the openai npm client, llama-server) is set up by
# scripts/e2e-prepare.sh and scripts/llama.sh from these packages.
set -eu

packages=(
    # build
    make gcc clang pkg-config ca-certificates
    libssl-dev libevent-dev libcurl4-openssl-dev libjansson-dev
    # tests, sanitizers, fuzzing
    libcmocka-dev valgrind libclang-rt-14-dev llvm
    # the untrusted gateway in tests and the demo
    nginx-light
    # the HTTP load generator of the chain benchmark (scripts/bench-chain.sh)
    wrk
    # llama-server build and the random-weight model (DESIGN §6)
    cmake g++ git python3 python3-numpy python3-yaml
    # the independent protocol vector decoder (tests/vectors)
    python3-cryptography
    # misc tools the scripts use
    curl procps psmisc openssl
)
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: all ${#packages[@]} packages present"
    exit 0
fi

cmd=(apt-get install -y --no-install-recommends "${missing[@]}")
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing: ${missing[*]}"
    echo "deps: run as root: apt-get update && ${cmd[*]}"
    exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
"${cmd[@]}"
