#!/usr/bin/env bash
# Gateway throughput and latency, all measured in one run on this machine with wrk:
#   1. the backend direct (nginx `return 200` on its own port)
#   2. nginx `proxy_pass` to that backend (no auth)
#   3. nginx `proxy_pass` setting the headers Portcullis sets (the caller's identity headers with
#      the values Portcullis gives the bench caller, X-Forwarded-*, X-Request-Id) and removing the
#      caller's API key as Portcullis does: the same bytes on the wire, without authenticating or
#      deciding anything
#   4. Portcullis forwarding to it, with an API key and an RBAC route rule
#   5. Portcullis `/auth` alone (forward-auth answer, no backend)
#   6. nginx `return 200` (the front nginx itself)
# Prints requests/s, p50 / p99 and the front's own CPU time per request for each, and the ratios
# the issue sets targets for. Both fronts run FRONT_WORKERS workers (default 1: nginx
# `worker_processes`, Portcullis `gateway.workers`), as wrk and the backend share the machine.
# PIN=1 pins the proxies and the backend to one CPU and wrk to the rest (see below).
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
FRONT_WORKERS="${FRONT_WORKERS:-1}"
nginx_conf() { # name, worker processes, server block
  cat > "$WORK/$1.conf" <<CONF
worker_processes $2;
daemon on;
pid $WORK/$1.pid;
error_log $WORK/$1.error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/$1.body; proxy_temp_path $WORK/$1.proxy;
  fastcgi_temp_path $WORK/$1.fcgi; uwsgi_temp_path $WORK/$1.uwsgi; scgi_temp_path $WORK/$1.scgi;
  upstream backend { server 127.0.0.1:$BACKEND; keepalive 128; }
  $3
}
CONF
  "$NGINX" -c "$WORK/$1.conf"
}
nginx_conf backend 1 "server { listen 127.0.0.1:$BACKEND; location / { return 200 'ok'; } }"

ADMIN_KEY="bench-admin-key-0123456789abcdefghijklmnop"
cat > "$WORK/portcullis.yaml" <<CONF
listen: 127.0.0.1:$PORTCULLIS
data_dir: $WORK/data
log: { level: warn }
gateway:
  access_log: ${ACCESS_LOG:-false}   # as the nginx servers here (access_log off)
  workers: $FRONT_WORKERS
  backends:
    - { name: backend, url: "http://127.0.0.1:$BACKEND", timeout_ms: 5000 }
routes:
  - path: /bench/*
    permission: bench.read
    action: read
    backend: backend
CONF
# In a session of its own, as the nginx daemons are (they detach) and as a service would be: with
# the kernel's autogroup scheduling, a server left in this script's session would share one
# scheduling group with wrk and bench/load.
PORTCULLIS_ADMIN_API_KEY="$ADMIN_KEY" setsid ./target/release/portcullis serve --config "$WORK/portcullis.yaml" > "$WORK/portcullis.out" 2>&1 &
PORTCULLIS_PID=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORTCULLIS/healthz" >/dev/null && break; sleep 0.1; done
api() { curl -fs -H "x-api-key: $ADMIN_KEY" -H 'content-type: application/json' "$@"; }
USER_ID=$(api -X POST "http://127.0.0.1:$PORTCULLIS/api/v1/orgs/default/users" -d '{"email":"bench@example.com","kind":"machine"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
KEY=$(api -X POST "http://127.0.0.1:$PORTCULLIS/api/v1/orgs/default/users/$USER_ID/keys" -d '{"name":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
api -X POST "http://127.0.0.1:$PORTCULLIS/api/permission/roles" -d '{"name":"role:default/bench","memberReferences":["user:default/bench"]}' >/dev/null
api -X POST "http://127.0.0.1:$PORTCULLIS/api/permission/policies" -d '[{"entityReference":"role:default/bench","permission":"bench.read","policy":"read","effect":"allow"}]' >/dev/null
test "$(curl -s -o /dev/null -w '%{http_code}' -H "x-api-key: $KEY" "http://127.0.0.1:$PORTCULLIS/bench/x")" = 200
test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORTCULLIS/bench/x")" = 401
# The identity headers Portcullis gives this caller (its /auth answer carries them), for the nginx
# front to set as fixed values.
IDENTITY=$(curl -fsi -H "x-api-key: $KEY" "http://127.0.0.1:$PORTCULLIS/auth/bench/x" | tr -d '\r' |
  awk -F': ' 'tolower($1) ~ /^x-portcullis-/ {printf "proxy_set_header %s \"%s\"; ", $1, $2}')
test -n "$IDENTITY"
nginx_conf front "$FRONT_WORKERS" "server { listen 127.0.0.1:$FRONT;
  location = /return200 { return 200 'ok'; }
  location /same-headers/ { proxy_pass http://backend/bench/; proxy_http_version 1.1; proxy_set_header Connection '';
    proxy_set_header Host 127.0.0.1:$BACKEND; proxy_set_header X-Request-Id \$request_id;
    proxy_set_header X-Forwarded-For \$remote_addr; proxy_set_header X-Forwarded-Proto \$scheme;
    proxy_set_header X-Forwarded-Host \$http_host; proxy_set_header X-API-Key ''; $IDENTITY
    add_header X-Request-Id \$request_id; }
  location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ''; } }"
NGINX_FRONT_PIDS="$(cat "$WORK/front.pid") $(pgrep -P "$(cat "$WORK/front.pid")" | tr '\n' ' ')"
# PIN=1: the proxies and the backend share the last CPU and wrk gets the others, so that where
# the scheduler puts each process plays no part and throughput follows CPU time per request.
LOADGEN=()
if [ "${PIN:-0}" = 1 ] && [ "$(nproc)" -ge 2 ]; then
  LAST=$(( $(nproc) - 1 ))
  BACKEND_PIDS="$(cat "$WORK/backend.pid") $(pgrep -P "$(cat "$WORK/backend.pid")" | tr '\n' ' ')"
  for p in $NGINX_FRONT_PIDS $BACKEND_PIDS $PORTCULLIS_PID; do taskset -a -c -p "$LAST" "$p" >/dev/null; done
  LOADGEN=(taskset -c "0-$((LAST - 1))")
  echo "PIN=1: nginx, the backend and Portcullis on CPU $LAST; wrk and bench/load on CPUs 0-$((LAST - 1))"
fi

cpu_ticks() { # user and system clock ticks used so far by the given processes (all threads)
  local p u=0 s=0
  for p in "$@"; do
    read -r pu ps < <(awk '{print $14, $15}' "/proc/$p/stat" 2>/dev/null || echo "0 0")
    u=$((u + pu)); s=$((s + ps))
  done
  echo "$u $s"
}
TICK=$(getconf CLK_TCK)
run() { # label url header var round front-pids (none for the backend direct)
  local out before after
  before=$(cpu_ticks ${6:-})
  if [ -n "${3:-}" ]; then
    out=$("${LOADGEN[@]}" wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -H "$3" "$2")
  else
    out=$("${LOADGEN[@]}" wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency "$2")
  fi
  after=$(cpu_ticks ${6:-})
  local rps p50 p99 non2xx requests cpu
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  cpu=$(python3 -c "b,a,t,n='$before'.split(),'$after'.split(),$TICK,$requests
u,s=(int(a[0])-int(b[0]))/t/n*1e6,(int(a[1])-int(b[1]))/t/n*1e6
print(f'{u:.1f} + {s:.1f} µs' if '${6:-}' else '-')")
  printf '| %s | %s | %s | %s | %s | %s |%s\n' "$5" "$1" "$rps" "$p50" "$p99" "$cpu" "${non2xx:+ non-2xx: $non2xx}"
  echo "$rps" >> "$WORK/rps_$4"
}
# Throughput on a shared machine moves by tens of percent from one 10 s run to the next: the
# setups take turns for WRK_ROUNDS rounds and the ratios are of the medians (and, for the proxy
# target, also the median of the ratios within each round).
WRK_ROUNDS="${WRK_ROUNDS:-3}"
echo "wrk: 2 threads, $CONNECTIONS connections, ${SECONDS_PER_RUN}s each, $WRK_ROUNDS rounds taking turns; $(nproc) CPUs shared by wrk, nginx and Portcullis"
echo
echo "Front CPU: user + system time of the front proxy (nginx master and workers, or Portcullis) per request."
echo
echo "| round | setup | requests/s | p50 | p99 | front CPU per request |"
echo "| --- | --- | --- | --- | --- | --- |"
for round in $(seq "$WRK_ROUNDS"); do
  run "backend direct" "http://127.0.0.1:$BACKEND/bench/x" "" direct "$round"
  run "nginx proxy_pass (no auth)" "http://127.0.0.1:$FRONT/bench/x" "" nginx_proxy "$round" "$NGINX_FRONT_PIDS"
  run "nginx proxy_pass + Portcullis's headers" "http://127.0.0.1:$FRONT/same-headers/x" "x-api-key: $KEY" nginx_same "$round" "$NGINX_FRONT_PIDS"
  run "Portcullis, API key + RBAC route rule" "http://127.0.0.1:$PORTCULLIS/bench/x" "x-api-key: $KEY" portcullis "$round" "$PORTCULLIS_PID"
  run "Portcullis /auth alone" "http://127.0.0.1:$PORTCULLIS/auth/bench/x" "x-api-key: $KEY" auth "$round" "$PORTCULLIS_PID"
  run "nginx return 200" "http://127.0.0.1:$FRONT/return200" "" nginx_return "$round" "$NGINX_FRONT_PIDS"
done
rps_median() { sort -n "$WORK/rps_$1" | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo
echo "Median requests/s: backend direct $(rps_median direct), nginx proxy_pass $(rps_median nginx_proxy), nginx + Portcullis's headers $(rps_median nginx_same), Portcullis $(rps_median portcullis), Portcullis /auth $(rps_median auth), nginx return 200 $(rps_median nginx_return)"
python3 - "$(rps_median portcullis)" "$(rps_median nginx_proxy)" "$(rps_median auth)" "$(rps_median nginx_return)" "$(rps_median direct)" "$(rps_median nginx_same)" <<'PY'
import sys
p, np, a, nr, d, ns = map(float, sys.argv[1:])
print(f"Portcullis with auth / nginx proxy_pass: {p/np:.2f}x (target >= 1.0)")
print(f"Portcullis with auth / nginx setting the same headers: {p/ns:.2f}x")
print(f"Portcullis /auth / nginx return 200:     {a/nr:.2f}x (target >= 0.5)")
print(f"Portcullis with auth / backend direct:   {p/d:.2f}x")
PY
# The same ratio taken within each round, where the two runs are seconds apart: a machine whose
# speed drifts between rounds moves both, which the ratio of medians above does not cancel.
python3 - "$WORK/rps_portcullis" "$WORK/rps_nginx_proxy" <<'PY'
import statistics, sys
p, n = ([float(v) for v in open(f).read().split()] for f in sys.argv[1:])
rounds = [a / b for a, b in zip(p, n)]
print(f"Portcullis with auth / nginx proxy_pass, round by round: median {statistics.median(rounds):.2f}x"
      f" ({', '.join(f'{r:.2f}' for r in rounds)})")
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
  out=$("${LOADGEN[@]}" "$LOAD" "$3" "$RATE" "$SECONDS_PER_RUN" 32 ${4:+"$4"})
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
