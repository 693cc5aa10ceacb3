#!/usr/bin/env bash
# The boot storm and the million-handset figures of issue 15, on PostgreSQL:
#   1. N handsets of every family's boot generations (benches/boot_storm_plan.py)
#      imported with `autoprov import` while the server is down: time, and the
#      import's resident memory sampled every 0.5 s (peak and its course);
#   2. the server started on them: time until a phone's first answer;
#   3. Handset Search paging (GET /api/handset, 100 a page, keyset) at the start,
#      the middle and the end of the list: per-page latency;
#   4. the storm (benches/boot-storm, Rust): every phone walks its family's boot
#      sequence (common files, its own files, the files that 404) over HTTPS with
#      a new connection per file, from 1,000 source addresses (127.10.x.y);
#      per-kind p50/p99, total time; with --own-file-only, each phone only its
#      own files (every handset's record read once); with --http over plain HTTP
#      (a million TLS handshakes take the machine a quarter of an hour);
#   5. the server's resident memory after the storm.
#
# usage: benches/boot_storm.sh [--handsets N (100000)] [--own-file-only] [--http] [--concurrency N (256)]
#                              [--sources N (1000)] [--postgres URL]
# Without --postgres a throw-away PostgreSQL cluster is made (as root: as .ci/run does).
# needs: python3 (3.11: tomllib), curl, PostgreSQL's initdb/pg_ctl or a URL, a Rust toolchain.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
handsets=100000 own="" concurrency=256 sources=1000 db="" plain=""
while [ $# -gt 0 ]; do case $1 in
  --handsets) handsets=$2; shift;; --own-file-only) own=--own-file-only;; --http) plain=1;;
  --concurrency) concurrency=$2; shift;; --sources) sources=$2; shift;;
  --postgres) db=$2; shift;; *) echo "unknown option $1" >&2; exit 2;; esac; shift; done

work=$(mktemp -d /tmp/autoprov-storm.XXXXXX)
chmod 755 "$work"
pg_data=""
cleanup() {
  pkill -f "autoprov-storm-serve-$$" 2>/dev/null || true
  if [ -n "$pg_data" ]; then runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_data" -m fast stop >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

if [ -z "$db" ]; then
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  pg_data=$work/pg; mkdir "$pg_data"; chown postgres: "$pg_data"
  runuser -u postgres -- "$pg_bin/initdb" -D "$pg_data" -U postgres -A trust -E UTF8 >/dev/null
  pg_port=$(port)
  runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_data" -w -l "$pg_data/server.log" \
    -o "-p $pg_port -k $pg_data -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >/dev/null
  db=postgres://postgres@127.0.0.1:$pg_port/postgres
fi
echo "PostgreSQL: ${db%%@*}@…; load average: $(cut -d' ' -f1-3 /proc/loadavg)"

target=${CARGO_TARGET_DIR:-$here/target}
(cd "$here" && cargo build --release -q)
client_target=${BOOT_STORM_TARGET:-/tmp/boot-storm-target}
CARGO_TARGET_DIR=$client_target cargo build --release -q --manifest-path "$here/benches/boot-storm/Cargo.toml"
bin=$target/release/autoprov
http=$(port) https=$(port) pw=storm-password-$$
# Warnings, and the line that says the phone cache is warmed.
export AUTOPROV_DATA_DIR=$work/data AUTOPROV_DATABASE_URL=$db AUTOPROV_ADMIN_PASSWORD=$pw \
  AUTOPROV_LOG=warn,autoprov::provision::cache=info
start() {
  AUTOPROV_SIP_LISTEN=off AUTOPROV_TFTP_LISTEN=off AUTOPROV_METRICS_LISTEN=off \
  AUTOPROV_HTTP_LISTEN=127.0.0.1:$http AUTOPROV_HTTPS_LISTEN=127.0.0.1:$https \
  bash -c "exec -a autoprov-storm-serve-$$ $bin serve" >> "$work/serve.log" 2>&1 &
}
server_pid() { pgrep -f "autoprov-storm-serve-$$"; }
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

# An empty server once: it migrates and makes the default domain and its token.
start
until curl -s -o /dev/null "http://127.0.0.1:$http/"; do sleep 0.05; done
token=$("$bin" domain url default 2>/dev/null | head -n 1 | sed -E "s#.*/p/([^/]+)/.*#\\1#")
pkill -f "autoprov-storm-serve-$$"; while server_pid >/dev/null; do sleep 0.05; done

python3 "$here/benches/boot_storm_plan.py" "$here/vendor-profiles" "$handsets" "$work/out" --token "$token" $own
echo "== import of $handsets rows ($(du -h "$work/out/handsets.csv" | cut -f1)) with the server down"
t0=$(date +%s%N)
"$bin" import "$work/out/handsets.csv" > "$work/import.log" 2>&1 & imp=$!
samples=()
while kill -0 $imp 2>/dev/null; do
  r=$(rss_mb $imp 2>/dev/null || true); [ -n "$r" ] && samples+=("$r"); sleep 0.5
done
wait $imp || { cat "$work/import.log"; exit 1; }
t1=$(date +%s%N)
tail -n 2 "$work/import.log"
python3 - "$t0" "$t1" "${samples[@]}" <<'PY'
import sys
t0, t1, v = int(sys.argv[1]), int(sys.argv[2]), [int(x) for x in sys.argv[3:]]
print(f"import: {(t1 - t0) / 1e9:.1f} s; resident memory (MB), peak {max(v, default=0)}, "
      f"at each tenth of the run: {[v[min(len(v) - 1, len(v) * k // 10)] for k in range(1, 10)] if v else []}")
PY
first=$(head -n 1 "$work/out/plan.tsv")
ua=$(cut -f1 <<<"$first"); path=$(tr '\t' '\n' <<<"$first" | grep '^phone ' | head -n 1 | cut -d' ' -f3)
: > "$work/serve.log"   # this start's log only
t0=$(date +%s%N); start
until [ "$(curl -s -o /dev/null -w '%{http_code}' -A "$ua" "http://127.0.0.1:$http$path")" = 200 ]; do sleep 0.005; done
t1=$(date +%s%N)
echo "start-up with $handsets handsets: $(( (t1 - t0) / 1000000 )) ms until a phone's first answer; RSS $(rss_mb "$(server_pid)") MB"

# Handset Search right after the start, while the server warms its phone
# cache (reading handsets in pages of 1,000), then once it is warm.
paging() {
python3 - "$https" "$pw" "$handsets" <<'PY'
import base64, http.client, json, ssl, sys, time
port, pw, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
auth = {"Authorization": "Basic " + base64.b64encode(f"admin@default:{pw}".encode()).decode()}
def page(after):
    q = "/api/handset?maxresults=100" + (f"&afterid={after}" if after else "")
    t = time.perf_counter(); c.request("GET", q, headers=auth); r = c.getresponse(); body = r.read()
    ms = (time.perf_counter() - t) * 1000
    assert r.status == 200, (r.status, body[:200])
    rows = json.loads(body)
    return ms, (rows[-1]["extensionnumber"] if rows else None), len(rows)
page(None)  # the login (argon2, once) is not a page's cost
for name, start in (("start", None), ("middle", str(1_000_000 + n // 2)), ("end", str(1_000_000 + n - 2000))):
    times, after, rows = [], start, 0
    for _ in range(20):
        ms, after, got = page(after); times.append(ms); rows += got
        if after is None: break
    times.sort()
    print(f"{name:>6}: {len(times)} pages ({rows} handsets): p50 {times[len(times)//2]:.1f} ms, max {times[-1]:.1f} ms")
PY
}
echo "== Handset Search paging, 100 a page (keyset, afterid), during the cache warm-up"
paging
until grep -q "provisioning cache warmed" "$work/serve.log"; do sleep 0.5; done
echo "== the same once the cache is warm ($(grep -o 'phones=[0-9]* ms=[0-9]*' "$work/serve.log" | tail -n 1))"
paging

if [ -n "$plain" ]; then scheme=HTTP target_addr=127.0.0.1:$http tls=(); else scheme=HTTPS target_addr=127.0.0.1:$https tls=(--https "$work/data/tls/cert.pem"); fi
echo "== the storm: $handsets phones, $scheme, a new connection per file, $sources sources, $concurrency at once"
cpu0=$(awk '{print $14+$15}' "/proc/$(server_pid)/stat")
"$client_target/release/boot-storm" "$target_addr" "$work/out/plan.tsv" "${tls[@]}" \
  --sources "$sources" --concurrency "$concurrency" || storm_failed=1
cpu1=$(awk '{print $14+$15}' "/proc/$(server_pid)/stat")
echo "server CPU during the storm: $(( (cpu1 - cpu0) / $(getconf CLK_TCK) )) s"
echo "resident memory after the storm: $(rss_mb "$(server_pid)") MB; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "server warnings: $(grep -c ' WARN ' "$work/serve.log" || true)"; grep ' WARN ' "$work/serve.log" | sort | uniq -c | sort -rn | head -n 5 || true
exit ${storm_failed:-0}
