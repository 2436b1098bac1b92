#!/usr/bin/env bash
# demo.sh — `make demo`: a whole confidential deployment on this machine and
# one request through it (README.md, "The two commands").
#
#   make demo                        the random-weight test model
#   make demo MODEL=/path/x.gguf     any GGUF model llama-server can load
#   make demo KEEP=1                 keep everything running until Ctrl-C
#   PORT=9000 make demo KEEP=1       the proxy's port (default 8080, or a
#                                    free one when 8080 is taken)
#
# It prepares what is missing (the openai npm client, llama-server built from
# the pinned node-llama-cpp bundle, the test model: scripts/e2e-prepare.sh;
# the first build takes 10-20 minutes on 2 cores, later runs a second), then
# runs tests/e2e/demo/demo.mjs, which starts: a simulated TEE (confide sim
# init), the manifest (confide manifest new), llama-server on a UNIX socket,
# confide-as, confide-worker, nginx as the provider's gateway (logging every
# request body) with a wire tap behind it, and confide-proxy; sends one
# streamed chat request through the proxy with the official openai client;
# and prints what the app received next to what the provider saw.
#
# Everything runs from private temp dirs and is stopped and removed at the
# end, on error, and on Ctrl-C (children also die with the demo process:
# PR_SET_PDEATHSIG). Works as root and without a TTY (no colours then).
# Exit status 0 only if the request succeeded and neither the prompt nor the
# reply was visible to the provider.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CONFIDE_BUILD:-$root/build/default}

say() { printf 'demo: %s\n' "$*" >&2; }

if [ -n "${MODEL:-}" ] && [ ! -r "$MODEL" ]; then
    say "MODEL=$MODEL: not a readable file"
    exit 2
fi
for p in confide confide-as confide-worker confide-proxy; do
    [ -x "$build/bin/$p" ] || { say "$build/bin/$p is not built: run make (make demo builds first)"; exit 1; }
done
export CONFIDE_BUILD=$build


# npm client, llama-server and the test model; quick when cached (its
# progress shows only when there is something to do).
if ! "$root/scripts/e2e-prepare.sh" 2> >(grep -v '^e2e-prepare: ready' >&2); then
    say "preparing llama-server / the openai client failed (see above); run scripts/deps.sh first"
    exit 1
fi

exec node "$root/tests/e2e/demo/demo.mjs"
