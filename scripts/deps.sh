#!/usr/bin/env bash
# deps.sh — install the Debian packages confide needs to build, test, fuzz,
# benchmark and run the demo, on a fresh Debian 12 (bookworm). Idempotent:
# only what is missing is installed. Run as root; otherwise it prints the
# apt-get line to run. Node.js comes from Debian (nodejs 18.20 and npm 9)
# unless a node >= 18.19 is already on PATH. Everything else (the openai npm
# client, llama-server) is set up by scripts/e2e-prepare.sh and
# scripts/llama.sh from these packages.
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

# Node.js (the end-to-end tests, the fault-injection backend, the demo) must
# be >= 18.19 (scripts/e2e-prepare.sh): Debian 12's own nodejs is 18.20, so
# a missing node is installed from Debian and an old Debian one upgraded.
# A node from elsewhere that is too old cannot be fixed here: say so.
node_ok() {
    node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 18 || (a === 18 && b >= 19) ? 0 : 1)' 2>/dev/null
}
node_problem=
upgrade=()
if ! command -v node >/dev/null 2>&1; then
    packages+=(nodejs)
elif ! node_ok; then
    node_path=$(command -v node)
    if dpkg -S "$(readlink -f "$node_path")" 2>/dev/null | grep -q '^nodejs:'; then
        upgrade+=(nodejs)
    else
        node_problem="$node_path is Node.js $(node --version 2>/dev/null || echo '(does not run)'), but the tests and the demo need >= 18.19: remove it from PATH (this script then installs Debian 12's nodejs, 18.20) or put a newer one first on PATH"
    fi
fi
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
missing+=("${upgrade[@]}")

report_node() {
    [ -z "$node_problem" ] && return 0
    echo "deps: $node_problem" >&2
    return 1
}

if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: all ${#packages[@]} packages present"
    report_node
    exit
fi

cmd=(apt-get install -y --no-install-recommends "${missing[@]}")
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing: ${missing[*]}"
    echo "deps: run as root: apt-get update && ${cmd[*]}"
    report_node || true
    exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
"${cmd[@]}"
hash -r
if [ -z "$node_problem" ] && ! node_ok; then
    node_problem="$(command -v node || echo node) is Node.js $(node --version 2>/dev/null || echo '(missing)') after the install, but the tests and the demo need >= 18.19: is this Debian 12 (bookworm) with its security updates?"
fi
report_node
