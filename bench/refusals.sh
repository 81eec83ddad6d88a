#!/usr/bin/env bash
# A flood of refused requests: wrk sends requests without a credential to a route that needs
# one, each answered 401 and each a `gateway.request` record in the audit trail (SQLite, the
# embedded default). Prints the refusals answered per second, the server's peak memory, and
# how many records the trail holds at the end of the flood and a few seconds later, with the
# count of any that could not be kept (`audit.unrecorded`).
# Needs: cargo, wrk, curl, python3. Run: bash bench/refusals.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-10}"
CONNECTIONS="${2:-64}"
for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "missing: $tool"; exit 1; }
done
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=18193
cargo build --release -q -p portcullis
cat > "$WORK/portcullis.yaml" <<CONF
listen: 127.0.0.1:$PORT
data_dir: $WORK/data
log: { level: error }
gateway:
  access_log: false
  backends:
    - { name: backend, url: "http://127.0.0.1:9" }
routes:
  - { path: /private/*, groups: "true", backend: backend }
CONF
setsid ./target/release/portcullis serve --config "$WORK/portcullis.yaml" > "$WORK/out" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/private/x")" = 401
rss() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$PID/status"; }
trail() {
  python3 - "$WORK/data/portcullis.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
written = db.execute("SELECT count(*) FROM audit_events WHERE action = 'gateway.request'").fetchone()[0]
lost = db.execute("SELECT coalesce(sum(json_extract(details, '$.count')), 0) FROM audit_events WHERE action = 'audit.unrecorded'").fetchone()[0]
print(written, lost)
PY
}
echo "RSS before: $(rss VmRSS) kB"
out=$(wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" "http://127.0.0.1:$PORT/private/x")
answered=$(awk '/requests in/ {print $1}' <<<"$out")
echo "refusals answered: $answered in ${SECONDS_PER_RUN}s, $(awk '/Requests\/sec/ {print $2}' <<<"$out") per second (non-2xx: $(awk '/Non-2xx/ {print $5}' <<<"$out"))"
read -r written lost < <(trail)
echo "at the end of the flood: $written written, $lost counted as unrecorded; peak RSS $(rss VmHWM) kB"
sleep 5
read -r written lost < <(trail)
echo "5 s later: $written written, $lost counted as unrecorded; RSS $(rss VmRSS) kB"
