#!/usr/bin/env bash
# bench-chain.sh — the whole-chain benchmark on loopback (`make bench` runs it
# after confide-bench; figures in docs/performance.md).
#
# Three chains, measured in one run, with the same backend behind each:
#   (a) app -> backend                                    direct
#   (b) app -> nginx -> nginx -> backend                  the same hops, no encryption
#   (c) app -> confide-proxy -> nginx -> confide-worker -> backend
# In (b) the first nginx stands where confide-proxy is and the second is the
# same gateway (scripts/nginx-gateway.sh, body logging on) as in (c), so
# (c)/(b) is the cost of confide's two proxies themselves.
#
# Backends: an instant one (nginx answering a fixed chat completion, or a
# fixed 64-token event stream, from memory; on a UNIX socket for the worker
# and on TCP for (a)), then llama-server with the random-weight test model
# (skipped when it is not built: scripts/e2e-prepare.sh).
#
# Figures: requests/s and p50/p99 latency of a 1 KiB non-streamed chat
# request (wrk, BENCH_CONNECTIONS connections, two runs of BENCH_SECONDS per
# chain, each after a 1 s warm-up, in the order a b c then c b a), and, for a
# streamed reply, time to first token and tokens/s (bench/chain/stream.mjs,
# BENCH_STREAMS requests per chain, one at a time, the chains taking turns).
# The machine's load changes during a run; the alternating orders spread
# that over all chains instead of favouring the ones measured first. Under
# each table: the CPU time per request of every process of each chain
# (/proc/<pid>/stat around its wrk runs).
#
# Env: BENCH_SECONDS (3), BENCH_CONNECTIONS (8), BENCH_STREAMS (40),
#      BENCH_LLAMA (1; 0 skips the llama-server round), BENCH_LLAMA_CONNECTIONS
#      (2: llama-server's --parallel slots; more would only measure its queue),
#      CONFIDE_BUILD.
# Loopback only; everything runs from a private temp dir, removed at exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CONFIDE_BUILD:-$root/build/default}
bin=$build/bin
secs=${BENCH_SECONDS:-3}
conns=${BENCH_CONNECTIONS:-8}
llama_conns=${BENCH_LLAMA_CONNECTIONS:-2}
streams=${BENCH_STREAMS:-40}
with_llama=${BENCH_LLAMA:-1}

say() { printf 'bench-chain: %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || { say "$1 missing: run scripts/deps.sh"; exit 1; }; }
need wrk; need node; need curl; need python3
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx_bin" ] || { say "nginx missing: run scripts/deps.sh"; exit 1; }
for p in confide confide-as confide-worker confide-proxy; do
    [ -x "$bin/$p" ] || { say "$bin/$p not built: run make"; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/cfbench.XXXXXX")
chmod 700 "$work"
pids=()
declare -A pid_of
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    [ "${CONFIDE_KEEP_TMP:-}" = 1 ] && say "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD... : run in the background, log to $work/NAME.log; dies with us.
start() {
    local name=$1; shift
    setpriv --pdeathsig TERM -- "$@" >"$work/$name.log" 2>&1 &
    pids+=($!)
    pid_of[$name]=$!
}
# CPU time (user + system, clock ticks) a process has used so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # URL [curl args...]: until 2xx, 30 s
    local url=$1; shift
    for _ in $(seq 300); do curl -sf -o /dev/null "$@" "$url" && return 0; sleep 0.1; done
    say "not ready: $url"; tail -n 20 "$work"/*.log >&2; exit 1
}
logged_port() { # LOGFILE EVENT
    for _ in $(seq 300); do
        local p
        p=$(sed -n "s/.*event=$2 .*port=\([0-9]*\).*/\1/p" "$1" | head -n1)
        [ -n "$p" ] && { echo "$p"; return 0; }
        sleep 0.1
    done
    say "no $2 line in $1"; tail -n 20 "$1" >&2; exit 1
}

# ---- the request bodies ----------------------------------------------------------------
# A 1 KiB chat request: a system and a user message, max_tokens 16.
python3 - "$work" <<'EOF'
import json, sys
work = sys.argv[1]
words = ("the tide turns at the lighthouse while the keeper counts the waves and writes "
         "down every ship that passes in the night ").split()
text = " ".join(words[i % len(words)] for i in range(400))
def body(model, stream, max_tokens, size=1024):
    b = {"model": model, "messages": [{"role": "system", "content": "You are a terse assistant."},
                                       {"role": "user", "content": ""}],
         "max_tokens": max_tokens, "temperature": 0}
    if model != "bench":
        # llama-server: no prompt-cache reuse between requests, so that (c),
        # whose random cache_salt never hits the cache, pays what (a) and (b) pay.
        b["cache_prompt"] = False
    if stream:
        b["stream"] = True
        b["ignore_eos"] = True
    base = len(json.dumps(b, separators=(",", ":")))
    b["messages"][1]["content"] = text[: max(0, size - base)]
    return json.dumps(b, separators=(",", ":"))
open(f"{work}/chat-1k.json", "w").write(body("bench", False, 16))
open(f"{work}/chat-stream.json", "w").write(body("bench", True, 64))
open(f"{work}/llama-1k.json", "w").write(body("confide-tiny", False, 16))
open(f"{work}/llama-stream.json", "w").write(body("confide-tiny", True, 64))
# The instant backend's answers: a chat completion, and a stream of 64
# one-word content events, a finish event, a usage event and [DONE].
reply = {"id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "bench",
         "choices": [{"index": 0, "message": {"role": "assistant", "content": "The keeper counted seventeen waves before the light went out."},
                      "finish_reason": "stop"}],
         "usage": {"prompt_tokens": 230, "completion_tokens": 12, "total_tokens": 242}}
open(f"{work}/reply.json", "w").write(json.dumps(reply, separators=(",", ":")))
events = []
def chunk(delta, finish=None):
    return {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": "bench",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
events.append(chunk({"role": "assistant", "content": ""}))
for i in range(64):
    events.append(chunk({"content": " " + words[i % len(words)]}))
events.append(chunk({}, "length"))
sse = "".join("data: " + json.dumps(e, separators=(",", ":")) + "\n\n" for e in events) + "data: [DONE]\n\n"
open(f"{work}/reply.sse", "w").write(sse)
EOF
for f in chat-1k chat-stream llama-1k llama-stream; do
    [ "$(stat -c %s "$work/$f.json")" -ge 1000 ] || { say "$f.json is not ~1 KiB"; exit 1; }
done

# ---- the instant backend (nginx answering from memory) -------------------------------------
backend_sock=$work/backend.sock
backend_port=$(free_port)
instant_backend() { # json | sse
    local mode=$1 dir=$work/backend-$1 file type
    mkdir -p "$dir/tmp"
    if [ "$mode" = json ]; then file=reply.json; type=application/json
    else file=reply.sse; type=text/event-stream; fi
    cp "$work/$file" "$dir/$file"
    # A static file answers GET only; error_page turns the 405 a POST gets
    # into an internal GET of the same file, answered with 200.
    cat >"$dir/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1;
pid $dir/nginx.pid; error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body; proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi; uwsgi_temp_path $dir/tmp/uwsgi; scgi_temp_path $dir/tmp/scgi;
    client_body_buffer_size 64k; keepalive_requests 1000000; etag off;
    server {
        listen unix:$backend_sock; listen 127.0.0.1:$backend_port;
        root $dir;
        location / {
            default_type $type; types { }
            try_files /$file =404;
            error_page 405 =200 \$uri;
        }
    }
}
EOF
    rm -f "$backend_sock"
    start "backend-$mode" "$nginx_bin" -p "$dir" -c "$dir/nginx.conf"
    backend_pid=${pids[-1]}
    wait_http "http://127.0.0.1:$backend_port/"
}
stop_backend() {
    kill -TERM "$backend_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$backend_pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$backend_sock"
}

# ---- the plain chain (b): nginx -> gateway nginx -> backend ------------------------------------
gw_b_port=$(free_port)
start gateway-b "$root/scripts/nginx-gateway.sh" --dir "$work/gateway-b" --listen "127.0.0.1:$gw_b_port" \
    --route "/v1/=unix:$backend_sock"
hop_port=$(free_port)
mkdir -p "$work/hop/tmp"
cat >"$work/hop/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1;
pid $work/hop/nginx.pid; error_log $work/hop/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/hop/tmp/body; proxy_temp_path $work/hop/tmp/proxy;
    fastcgi_temp_path $work/hop/tmp/fastcgi; uwsgi_temp_path $work/hop/tmp/uwsgi; scgi_temp_path $work/hop/tmp/scgi;
    upstream gw { server 127.0.0.1:$gw_b_port; keepalive 64; }
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$hop_port;
        location /v1/ {
            proxy_pass http://gw; proxy_http_version 1.1; proxy_set_header Connection "";
            proxy_buffering off; client_body_buffer_size 1m;
        }
    }
}
EOF
start hop "$nginx_bin" -p "$work/hop" -c "$work/hop/nginx.conf"

# ---- the confidential chain (c) ----------------------------------------------------------------
"$bin/confide" sim init "$work/sim" >/dev/null
"$bin/confide" manifest new --sim-dir "$work/sim" --as-binary "$bin/confide-as" \
    --worker-binary "$bin/confide-worker" --models bench,confide-tiny --out "$work/manifest.json" >/dev/null
start confide-as "$bin/confide-as" --platform sim --sim-dir "$work/sim" --manifest "$work/manifest.json" \
    --port 0
as_port=$(logged_port "$work/confide-as.log" as_started)
# The worker keeps every accepted (key id, salt) for replay protection; a
# benchmark sends more requests than the default memory holds.
start confide-worker "$bin/confide-worker" --platform sim --sim-dir "$work/sim" --manifest "$work/manifest.json" \
    --as-url "http://127.0.0.1:$as_port" --as-allow-http --backend-socket "$backend_sock" --port 0 \
    --replay-capacity 4000000
worker_port=$(logged_port "$work/confide-worker.log" worker_started)
gw_c_port=$(free_port)
start gateway-c "$root/scripts/nginx-gateway.sh" --dir "$work/gateway-c" --listen "127.0.0.1:$gw_c_port" \
    --route "/v1/=127.0.0.1:$worker_port"
start confide-proxy "$bin/confide-proxy" --as "http://127.0.0.1:$as_port" --allow-plain-http \
    --manifest "$work/manifest.json" --upstream "http://127.0.0.1:$gw_c_port" --port 0
proxy_port=$(logged_port "$work/confide-proxy.log" proxy_started)
wait_http "http://127.0.0.1:$worker_port/healthz"
wait_http "http://127.0.0.1:$proxy_port/healthz"
wait_http "http://127.0.0.1:$gw_b_port/_gateway/health"
for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$hop_port/" && break; sleep 0.1; done

declare -A url=(
    [a]="http://127.0.0.1:$backend_port/v1/chat/completions"
    [b]="http://127.0.0.1:$hop_port/v1/chat/completions"
    [c]="http://127.0.0.1:$proxy_port/v1/chat/completions"
)
declare -A label=(
    [a]="(a) app -> backend"
    [b]="(b) app -> nginx -> nginx -> backend"
    [c]="(c) app -> proxy -> nginx -> worker -> backend"
)

# The processes of each chain (a's backend included) whose CPU is measured.
declare -A hops=([a]="backend" [b]="nginx-hop gateway-b backend" [c]="confide-proxy gateway-c confide-worker backend")
declare -A hop_pid=([nginx-hop]=${pid_of[hop]} [gateway-b]=${pid_of[gateway-b]} [gateway-c]=${pid_of[gateway-c]}
    [confide-proxy]=${pid_of[confide-proxy]} [confide-worker]=${pid_of[confide-worker]})
# wrk_half CHAIN BODY -> "requests seconds p50_ms p99_ms errors" (one wrk run
# of $secs after a 1 s warm-up)
wrk_half() {
    local u=${url[$1]} body=$2 out hop
    BENCH_BODY=$body wrk -t1 -c"$conns" -d1s -s "$root/bench/chain/post.lua" "$u" >/dev/null 2>&1 || true
    # The CPU each hop of the chain uses during the measured run.
    local -A t0
    for hop in ${hops[$1]}; do t0[$hop]=$(cpu_ticks "${hop_pid[$hop]}"); done
    out=$(BENCH_BODY=$body wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$root/bench/chain/post.lua" "$u" 2>&1) || {
        say "wrk failed on $1: $out"; exit 1; }
    local n
    n=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' <<<"$out")
    for hop in ${hops[$1]}; do
        echo "$1 $hop $(( $(cpu_ticks "${hop_pid[$hop]}") - ${t0[$hop]} )) ${n:-0}" >>"$work/cpu-$cur_round.txt"
    done
    echo "$out" >>"$work/wrk-$1-$(basename "$body" .json).txt"
    echo "$out" | awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        / requests in / { n = $1; d = $4; sub(/,$/, "", d); d = ms(d) / 1000 }
        /^ +50%/ { p50 = ms($2) }
        /^ +99%/ { p99 = ms($2) }
        /Non-2xx or 3xx responses:/ { err += $NF }
        /Socket errors:/ { for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) err += $i }
        END { printf "%d %.3f %.3f %.3f %d\n", n, d, p50, p99, err }'
}
# wrk_all BODY: every chain twice, in the order a b c then c b a (a change in
# the machine's load then hits every chain alike); per chain R[round,chain,req]
# = "req/s p50_ms p99_ms errors" (req/s over both halves, latencies their mean).
wrk_all() {
    local round=$1 body=$2 chain
    cur_round=$round
    hop_pid[backend]=$backend_pid
    declare -A half1 half2
    for chain in a b c; do half1[$chain]=$(wrk_half "$chain" "$body"); done
    for chain in c b a; do half2[$chain]=$(wrk_half "$chain" "$body"); done
    for chain in a b c; do
        R[$round,$chain,req]=$(python3 -c '
import sys
a, b = (list(map(float, x.split())) for x in sys.argv[1:3])
print(f"{(a[0] + b[0]) / (a[1] + b[1]):.0f} {(a[2] + b[2]) / 2:.2f} {(a[3] + b[3]) / 2:.2f} {int(a[4] + b[4])}")' \
            "${half1[$chain]}" "${half2[$chain]}")
    done
}
# stream_all ROUND BODY: the three chains take turns request by request
# (bench/chain/stream.mjs); R[round,chain,stream] = "ttft_p50_ms tokens_per_s errors tokens"
stream_all() {
    local round=$1 body=$2 out chain line
    out=$(node "$root/bench/chain/stream.mjs" --url "${url[a]}" --url "${url[b]}" --url "${url[c]}" \
        --body "$body" --requests "$streams" --warmup 3) || true
    echo "$out" >"$work/stream-$round.txt"
    for chain in a b c; do
        line=$(grep -F "\"url\":\"${url[$chain]}\"" <<<"$out" || true)
        R[$round,$chain,stream]=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1] or "{}"); print(r.get("ttft_ms_p50"), r.get("tokens_per_s_p50"), r.get("errors", 1), r.get("tokens"))' "$line")
    done
}

declare -A R
failures=0
table() { # ROUND TITLE
    local round=$1 chain rps p50 p99 err ttft tps serr tokens
    printf '\n%s\n\n' "$2"
    printf '| %-46s | %9s | %8s | %8s | %13s | %10s |\n' chain 'req/s' 'p50 ms' 'p99 ms' 'TTFT p50 ms' 'tokens/s'
    printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' $(seq 48))" ----------: ---------: ---------: --------------: -----------:
    for chain in a b c; do
        read -r rps p50 p99 err <<<"${R[$round,$chain,req]}"
        read -r ttft tps serr tokens <<<"${R[$round,$chain,stream]:-- - 0 0}"
        [ "$err" = 0 ] && [ "$serr" = 0 ] || { failures=$((failures + 1)); say "${label[$chain]}: $err failed requests, $serr failed streams (see $work)"; }
        printf '| %-46s | %9s | %8s | %8s | %13s | %10s |\n' "${label[$chain]}" "$rps" "$p50" "$p99" "$ttft" "$tps"
    done
    read -r rps_b p50_b p99_b _ <<<"${R[$round,b,req]}"
    read -r rps_c p50_c p99_c _ <<<"${R[$round,c,req]}"
    read -r ttft_b tps_b _ <<<"${R[$round,b,stream]:-- -}"
    read -r ttft_c tps_c _ <<<"${R[$round,c,stream]:-- -}"
    python3 - "$rps_c" "$rps_b" "$p50_c" "$p50_b" "$p99_c" "$p99_b" "$ttft_c" "$ttft_b" "$tps_c" "$tps_b" <<'EOF'
import sys
v = sys.argv[1:]
def r(a, b):
    try:
        return f"{float(a) / float(b):.2f}x"
    except (ValueError, ZeroDivisionError):
        return "-"
print(f"| {'(c)/(b)':<46} | {r(v[0], v[1]):>9} | {r(v[2], v[3]):>8} | {r(v[4], v[5]):>8} | {r(v[6], v[7]):>13} | {r(v[8], v[9]):>10} |")
EOF
    # CPU per request of each process in the chain during its wrk runs.
    python3 - "$work/cpu-$round.txt" "$(getconf CLK_TCK)" <<'EOF'
import collections, sys
ticks = collections.defaultdict(int)
reqs = collections.defaultdict(int)
for line in open(sys.argv[1]):
    chain, hop, t, n = line.split()
    ticks[chain, hop] += int(t)
    reqs[chain, hop] += int(n)
hz = int(sys.argv[2])
parts = []
for chain in "abc":
    hops = [(h, ticks[c, h] * 1e6 / hz / reqs[c, h]) for (c, h) in ticks if c == chain and reqs[c, h]]
    if hops:
        parts.append(f"({chain}) " + ", ".join(f"{h.removesuffix('-b').removesuffix('-c')} {us:.0f}" for h, us in hops))
print("\nCPU per request, µs (user+system of each process during the wrk runs): " + "; ".join(parts))
EOF
}

say "instant backend: $secs s per chain, $conns connections, $streams streamed requests"
instant_backend json
wrk_all instant "$work/chat-1k.json"
stop_backend
instant_backend sse
stream_all instant "$work/chat-stream.json"
stop_backend

llama_ok=0
if [ "$with_llama" = 1 ]; then
    if eval "$("$root/scripts/llama.sh" --model --no-build 2>/dev/null)"; then
        llama_port=$(free_port)
        start llama-server "$LLAMA_SERVER" --model "$CONFIDE_LLAMA_MODEL" --host "$backend_sock,127.0.0.1" \
            --port "$llama_port" --alias confide-tiny --ctx-size 4096 --parallel 2 --threads 1 --threads-batch 1 \
            --threads-http 4 --no-warmup
        wait_http "http://127.0.0.1:$llama_port/health"
        backend_pid=${pid_of[llama-server]}
        url[a]="http://127.0.0.1:$llama_port/v1/chat/completions"
        say "llama-server backend: $llama_conns connections, max_tokens 16 (non-streamed) and 64 (streamed)"
        instant_conns=$conns
        conns=$llama_conns
        wrk_all llama "$work/llama-1k.json"
        stream_all llama "$work/llama-stream.json"
        conns=$instant_conns
        llama_ok=1
    else
        say "llama-server not built: skipping its round (scripts/e2e-prepare.sh builds it)"
    fi
fi

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
printf '\n## chain benchmark — %s, %s CPUs (%s), loopback\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" "$cpu"
printf 'wrk -t1 -c%s, 2 x %s s per chain (order a b c, then c b a), 1 KiB chat request; streams: %s per chain, one at a time, chains taking turns\n' "$conns" "$secs" "$streams"
table instant "### instant backend (nginx answering from memory; stream: 64 content events)"
[ "$llama_ok" = 0 ] || table llama "### llama-server (random-weight test model, 1 thread, wrk -c$llama_conns; stream: 64 tokens)"
echo
[ "$failures" = 0 ] || { say "$failures chains had failed requests"; exit 1; }
