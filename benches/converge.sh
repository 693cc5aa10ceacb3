#!/usr/bin/env bash
# Cache convergence across nodes (issue 15 item 2): three autoprov nodes on
# one throw-away PostgreSQL cluster (initdb/pg_ctl, started and removed by
# this script). N handsets are loaded through node A; then, C times, one
# handset's name is changed through A's API and, from the moment A answers
# (the change is committed), nodes B and C are polled (plain HTTP, one
# keep-alive connection each, in turn, every 2 ms) until the phone's file they serve
# carries the new name. Each phone is fetched from B and C before its change,
# so what is measured is the drop of a cached copy, not a first load.
# Prints p50/p90/p99/max of the per-node latency.
#
# usage: benches/converge.sh [--handsets N (1000)] [--changes C (200)]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
n=1000 changes=200
while [ $# -gt 0 ]; do
  case $1 in --handsets) n=$2; shift;; --changes) changes=$2; shift;; *) echo "unknown option $1" >&2; exit 2;; esac
  shift
done
work=$(mktemp -d /tmp/autoprov-converge-bench.XXXXXX)
chmod 755 "$work"
pids=()
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pgbin/initdb" ] || { echo "initdb not found: install Debian's postgresql" >&2; exit 1; }
pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$pgbin/$1" "${@:2}"; else "$pgbin/$1" "${@:2}"; fi; }
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  pg pg_ctl -D "$work/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
(cd "$here" && cargo build --release -q --bin autoprov)
bin=${CARGO_TARGET_DIR:-$here/target}/release/autoprov
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

mkdir "$work/pg"
[ "$(id -u)" = 0 ] && chown postgres: "$work/pg"
pgport=$(port)
pg initdb -D "$work/pg" -U postgres -A trust -E UTF8 >/dev/null
pg pg_ctl -D "$work/pg" -w -l "$work/pg/server.log" \
  -o "-p $pgport -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >/dev/null
pg psql -h 127.0.0.1 -p "$pgport" -U postgres -qc "CREATE DATABASE autoprov" >/dev/null
url=postgres://postgres@127.0.0.1:$pgport/autoprov pw=bench-password-$$

declare -A http https
for node in A B C; do
  http[$node]=$(port) https[$node]=$(port)
  AUTOPROV_DATA_DIR=$work/$node AUTOPROV_DATABASE_URL=$url AUTOPROV_ADMIN_PASSWORD=$pw AUTOPROV_LOG=warn \
  AUTOPROV_HTTP_LISTEN=127.0.0.1:${http[$node]} AUTOPROV_HTTPS_LISTEN=127.0.0.1:${https[$node]} \
  AUTOPROV_TFTP_LISTEN=off AUTOPROV_SIP_LISTEN=off AUTOPROV_METRICS_LISTEN=off \
    "$bin" serve > "$work/$node.log" 2>&1 &
  pids+=($!)
  until curl -sk -o /dev/null "https://127.0.0.1:${https[$node]}/"; do sleep 0.05; done
done
python3 "$here/benches/load_handsets.py" "https://127.0.0.1:${https[A]}" admin@default "$pw" "$n" "$work/out"
python3 - "${https[A]}" "${http[B]}" "${http[C]}" "$pw" "$n" "$changes" "$work/out/requests.tsv" <<'PY'
import base64, http.client, json, ssl, sys, time
a, b, c, pw, n, changes, requests = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
rows = [l.rstrip("\n").split("\t") for l in open(requests)]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
api = http.client.HTTPSConnection("127.0.0.1", a, context=ctx)
auth = {"Authorization": "Basic " + base64.b64encode(f"admin@default:{pw}".encode()).decode(), "Content-Type": "application/json"}
nodes = {"B": http.client.HTTPConnection("127.0.0.1", b), "C": http.client.HTTPConnection("127.0.0.1", c)}
def fetch(conn, path, ua):
    conn.request("GET", path, headers={"User-Agent": ua})
    r = conn.getresponse(); body = r.read()
    assert r.status == 200, (r.status, body[:200])
    return body
latencies = []
for k in range(changes):
    i = k % n
    path, ua = rows[i]
    for conn in nodes.values():
        fetch(conn, path, ua)  # cached on B and C before the change
    name = f"Converge-{k}-x"
    api.request("PUT", f"/api/handset/{100000 + i}", json.dumps({"name": name}), auth)
    r = api.getresponse(); r.read(); assert r.status == 200, r.status
    committed = time.perf_counter()
    waiting = dict(nodes)
    while waiting:
        for node, conn in list(waiting.items()):
            if name.encode() in fetch(conn, path, ua):
                latencies.append((time.perf_counter() - committed) * 1000)
                del waiting[node]
        if time.perf_counter() - committed > 10:
            raise SystemExit(f"nodes {sorted(waiting)} still serve the old file after 10 s")
        if waiting:
            time.sleep(0.002)
latencies.sort()
pct = lambda p: latencies[min(len(latencies) - 1, round((len(latencies) - 1) * p))]
print(f"{changes} changes on node A, {len(latencies)} convergences on B and C ({n} handsets): "
      f"p50 {pct(0.5):.1f} ms, p90 {pct(0.9):.1f} ms, p99 {pct(0.99):.1f} ms, max {latencies[-1]:.1f} ms (goal < 1000 ms)")
PY
