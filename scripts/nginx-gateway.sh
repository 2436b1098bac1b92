#!/usr/bin/env bash
# nginx-gateway.sh — run real nginx in the foreground as the untrusted
# provider gateway of the tests and the demo (config:
# scripts/nginx/gateway.conf.in).
#
#   nginx-gateway.sh --dir DIR --listen [HOST:]PORT --route PREFIX=UPSTREAM...
#                    [--tls CERT KEY] [--max-body SIZE] [--read-timeout T]
#                    [--render-only]
#
#   --dir DIR        private prefix: nginx.conf, error.log, access.log, tmp/
#   --listen ADDR    e.g. 127.0.0.1:8443 (default 127.0.0.1:8443)
#   --route P=U      requests whose path starts with P go to upstream U, given
#                    as HOST:PORT or unix:/path/to.sock; repeatable, the
#                    longest matching prefix wins (nginx prefix locations).
#                    Default route: /=unix:DIR/backend.sock
#   --tls CERT KEY   serve HTTPS with this certificate and key
#   --max-body SIZE  largest request body (nginx size, default 64m)
#   --read-timeout T upstream read/send timeout (default 300s)
#   --render-only    write DIR/nginx.conf, test it with nginx -t, and exit
#
# access.log has one JSON object per request, including the request body as
# a curious provider would record it. The process execs nginx (daemon off,
# master_process off), so its pid is nginx's and SIGTERM/SIGQUIT stop it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
template="$here/nginx/gateway.conf.in"
dir=""; listen="127.0.0.1:8443"; routes=(); cert=""; key=""
max_body=64m; read_timeout=300s; render_only=0

while [ $# -gt 0 ]; do
    case "$1" in
    --dir) dir=$2; shift 2 ;;
    --listen) listen=$2; shift 2 ;;
    --route) routes+=("$2"); shift 2 ;;
    --tls) cert=$2; key=$3; shift 3 ;;
    --max-body) max_body=$2; shift 2 ;;
    --read-timeout) read_timeout=$2; shift 2 ;;
    --render-only) render_only=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "nginx-gateway.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$dir" ] || { echo "nginx-gateway.sh: --dir is required" >&2; exit 2; }
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "nginx missing: run scripts/deps.sh" >&2; exit 1; }
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

mkdir -p "$dir/tmp"
dir=$(cd "$dir" && pwd)
[ ${#routes[@]} -gt 0 ] || routes=("/=unix:$dir/backend.sock")

# Values end up inside nginx directives: refuse anything that could break
# out of one (whitespace, quotes, braces, semicolons).
safe() { case "$1" in *[[:space:]\;\{\}\"\'\$\\]*|"") return 1 ;; esac; }
for v in "$dir" "$listen" "$max_body" "$read_timeout" "$cert" "$key" "${routes[@]}"; do
    [ -z "$v" ] || safe "$v" || { echo "nginx-gateway.sh: unsafe value: $v" >&2; exit 2; }
done

upstreams=""; locations=""; i=0
for r in "${routes[@]}"; do
    prefix=${r%%=*}; upstream=${r#*=}
    case "$prefix" in /*) ;; *) echo "nginx-gateway.sh: route prefix must start with /: $r" >&2; exit 2 ;; esac
    case "$upstream" in
    unix:/*|*:[0-9]*) ;;
    *) echo "nginx-gateway.sh: upstream must be HOST:PORT or unix:/path: $r" >&2; exit 2 ;;
    esac
    upstreams+="    upstream up_$i {
        server $upstream;
        keepalive 16;
    }
"
    locations+="        location $prefix {
            proxy_pass http://up_$i;
        }
"
    i=$((i + 1))
done

tls=""
listen_line="$listen"
if [ -n "$cert" ]; then
    listen_line="$listen ssl"
    tls="        ssl_certificate $cert;
        ssl_certificate_key $key;
        ssl_protocols TLSv1.2 TLSv1.3;"
fi

conf="$dir/nginx.conf"
UPSTREAMS="$upstreams" LOCATIONS="$locations" TLS="$tls" PREFIX="$dir" LISTEN="$listen_line" \
MAX_BODY="$max_body" READ_TIMEOUT="$read_timeout" \
    awk '{
        while (match($0, /@[A-Z_]+@/)) {
            name = substr($0, RSTART + 1, RLENGTH - 2)
            if (!(name in ENVIRON)) { print "unknown placeholder " name > "/dev/stderr"; exit 1 }
            $0 = substr($0, 1, RSTART - 1) ENVIRON[name] substr($0, RSTART + RLENGTH)
        }
        print
    }' "$template" >"$conf.part"
mv "$conf.part" "$conf"

if [ "$render_only" = 1 ]; then
    exec "$nginx_bin" -t -q -p "$dir" -c "$conf"
fi
exec "$nginx_bin" -p "$dir" -c "$conf"
