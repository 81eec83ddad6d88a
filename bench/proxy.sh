#!/usr/bin/env bash
# Gateway throughput and latency, all measured in one run on this machine with wrk:
#   1. the backend direct (nginx `return 200` on its own port)
#   2. nginx `proxy_pass` to that backend (no auth)
#   3. Portcullis forwarding to it, with an API key and an RBAC route rule
#   4. Portcullis `/auth` alone (forward-auth answer, no backend)
#   5. nginx `return 200` (the front nginx itself)
# Prints requests/s and p50 / p99 for each, and the ratios the issue sets targets for.
# Needs: cargo, nginx, wrk (Debian packages). Run: bash bench/proxy.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-10}"
CONNECTIONS="${2:-64}"
for tool in nginx wrk curl; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "missing: $tool (apt-get install -y $tool)"; exit 1; }
done
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; "$NGINX" -c "$WORK/backend.conf" -s stop 2>/dev/null || true; "$NGINX" -c "$WORK/front.conf" -s stop 2>/dev/null || true; rm -rf "$WORK"' EXIT

BACKEND=18181 FRONT=18182 PORTCULLIS=18183
cargo build --release -q -p portcullis
cargo build --release -q --manifest-path bench/load/Cargo.toml
LOAD=bench/load/target/release/portcullis-load
RATE="${RATE:-2000}"
nginx_conf() { # name, server block
  cat > "$WORK/$1.conf" <<CONF
worker_processes 1;
daemon on;
pid $WORK/$1.pid;
error_log $WORK/$1.error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/$1.body; proxy_temp_path $WORK/$1.proxy;
  fastcgi_temp_path $WORK/$1.fcgi; uwsgi_temp_path $WORK/$1.uwsgi; scgi_temp_path $WORK/$1.scgi;
  upstream backend { server 127.0.0.1:$BACKEND; keepalive 128; }
  $2
}
CONF
  "$NGINX" -c "$WORK/$1.conf"
}
nginx_conf backend "server { listen 127.0.0.1:$BACKEND; location / { return 200 'ok'; } }"
nginx_conf front "server { listen 127.0.0.1:$FRONT;
  location = /return200 { return 200 'ok'; }
  location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ''; } }"

ADMIN_KEY="bench-admin-key-0123456789abcdefghijklmnop"
cat > "$WORK/portcullis.yaml" <<CONF
listen: 127.0.0.1:$PORTCULLIS
data_dir: $WORK/data
log: { level: warn }
gateway:
  access_log: ${ACCESS_LOG:-false}   # as the nginx servers here (access_log off)
  backends:
    - { name: backend, url: "http://127.0.0.1:$BACKEND", timeout_ms: 5000 }
routes:
  - path: /bench/*
    permission: bench.read
    action: read
    backend: backend
CONF
PORTCULLIS_ADMIN_API_KEY="$ADMIN_KEY" ./target/release/portcullis serve --config "$WORK/portcullis.yaml" > "$WORK/portcullis.out" 2>&1 &
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORTCULLIS/healthz" >/dev/null && break; sleep 0.1; done
api() { curl -fs -H "x-api-key: $ADMIN_KEY" -H 'content-type: application/json' "$@"; }
USER_ID=$(api -X POST "http://127.0.0.1:$PORTCULLIS/api/v1/orgs/default/users" -d '{"email":"bench@example.com","kind":"machine"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
KEY=$(api -X POST "http://127.0.0.1:$PORTCULLIS/api/v1/orgs/default/users/$USER_ID/keys" -d '{"name":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
api -X POST "http://127.0.0.1:$PORTCULLIS/api/permission/roles" -d '{"name":"role:default/bench","memberReferences":["user:default/bench"]}' >/dev/null
api -X POST "http://127.0.0.1:$PORTCULLIS/api/permission/policies" -d '[{"entityReference":"role:default/bench","permission":"bench.read","policy":"read","effect":"allow"}]' >/dev/null
test "$(curl -s -o /dev/null -w '%{http_code}' -H "x-api-key: $KEY" "http://127.0.0.1:$PORTCULLIS/bench/x")" = 200
test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORTCULLIS/bench/x")" = 401

run() { # label url header var round
  local out
  if [ -n "${3:-}" ]; then
    out=$(wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -H "$3" "$2")
  else
    out=$(wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency "$2")
  fi
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  printf '| %s | %s | %s | %s | %s |%s\n' "$5" "$1" "$rps" "$p50" "$p99" "${non2xx:+ non-2xx: $non2xx}"
  echo "$rps" >> "$WORK/rps_$4"
}
# Throughput on a shared machine moves by tens of percent from one 10 s run to the next: the
# setups take turns for WRK_ROUNDS rounds and the ratios are of the medians.
WRK_ROUNDS="${WRK_ROUNDS:-3}"
echo "wrk: 2 threads, $CONNECTIONS connections, ${SECONDS_PER_RUN}s each, $WRK_ROUNDS rounds taking turns; $(nproc) CPUs shared by wrk, nginx and Portcullis"
echo
echo "| round | setup | requests/s | p50 | p99 |"
echo "| --- | --- | --- | --- | --- |"
for round in $(seq "$WRK_ROUNDS"); do
  run "backend direct" "http://127.0.0.1:$BACKEND/bench/x" "" direct "$round"
  run "nginx proxy_pass (no auth)" "http://127.0.0.1:$FRONT/bench/x" "" nginx_proxy "$round"
  run "Portcullis, API key + RBAC route rule" "http://127.0.0.1:$PORTCULLIS/bench/x" "x-api-key: $KEY" portcullis "$round"
  run "Portcullis /auth alone" "http://127.0.0.1:$PORTCULLIS/auth/bench/x" "x-api-key: $KEY" auth "$round"
  run "nginx return 200" "http://127.0.0.1:$FRONT/return200" "" nginx_return "$round"
done
rps_median() { sort -n "$WORK/rps_$1" | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo
echo "Median requests/s: backend direct $(rps_median direct), nginx proxy_pass $(rps_median nginx_proxy), Portcullis $(rps_median portcullis), Portcullis /auth $(rps_median auth), nginx return 200 $(rps_median nginx_return)"
python3 - "$(rps_median portcullis)" "$(rps_median nginx_proxy)" "$(rps_median auth)" "$(rps_median nginx_return)" "$(rps_median direct)" <<'PY'
import sys
p, np, a, nr, d = map(float, sys.argv[1:])
print(f"Portcullis with auth / nginx proxy_pass: {p/np:.2f}x (target >= 1.0)")
print(f"Portcullis /auth / nginx return 200:     {a/nr:.2f}x (target >= 0.5)")
print(f"Portcullis with auth / backend direct:   {p/d:.2f}x")
PY
echo
ROUNDS="${ROUNDS:-3}"
echo "Held rate: $RATE requests/s, ${SECONDS_PER_RUN}s per setup, $ROUNDS rounds taking turns, 32 connections"
echo "(bench/load, open loop: latency from when each request was due; service = from when it was sent)."
echo
echo "| round | setup | p50 | p90 | p99 | p99.9 | service p50 | service p99 | errors |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
field() { sed -E "s/.*[ ^]$1=([0-9]+).*/\1/" <<<" $2"; }
held() { # round label url header var
  local out
  out=$("$LOAD" "$3" "$RATE" "$SECONDS_PER_RUN" 32 ${4:+"$4"})
  printf '| %s | %s | %s µs | %s µs | %s µs | %s µs | %s µs | %s µs | %s |\n' "$1" "$2" \
    "$(field p50_us "$out")" "$(field p90_us "$out")" "$(field p99_us "$out")" "$(field p999_us "$out")" \
    "$(field service_p50_us "$out")" "$(field service_p99_us "$out")" "$(field errors "$out")"
  echo "$(field p99_us "$out")" >> "$WORK/p99_$5"
}
for round in $(seq "$ROUNDS"); do
  held "$round" "backend direct" "http://127.0.0.1:$BACKEND/bench/x" "" direct
  held "$round" "nginx proxy_pass (no auth)" "http://127.0.0.1:$FRONT/bench/x" "" nginx_proxy
  held "$round" "Portcullis, API key + RBAC route rule" "http://127.0.0.1:$PORTCULLIS/bench/x" "x-api-key: $KEY" portcullis
done
median() { sort -n "$WORK/p99_$1" | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo
echo "Median p99 over $ROUNDS rounds: backend direct $(median direct) µs, nginx proxy_pass $(median nginx_proxy) µs, Portcullis $(median portcullis) µs"
echo "Added p99 over the backend direct at $RATE requests/s: Portcullis $(( $(median portcullis) - $(median direct) )) µs (target <= 1000 µs); nginx proxy_pass $(( $(median nginx_proxy) - $(median direct) )) µs"
