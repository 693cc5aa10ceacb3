#!/usr/bin/env bash
# The CSV import's memory (issue 11): a whole site's file, 31 MiB and
# 262,144 rows, checked (dry run) against a server whose default domain
# already holds 262,144 handsets: once alone, then six at once into six
# other domains (so the global import_concurrency, not the per-domain
# turn, is what bounds them). Reports the server's peak resident memory
# (VmHWM) of each phase and its resident memory after.
#
# usage: benches/csv_import.sh [--rows N] [--postgres URL]
# needs: curl python3, a Rust toolchain; --postgres: psql.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rows=262144 pg=""
while [ $# -gt 0 ]; do case $1 in
  --rows) rows=$2; shift;; --postgres) pg=$2; shift;; *) echo "unknown option $1" >&2; exit 2;; esac; shift; done
for t in curl python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 2; }; done

work=$(mktemp -d /tmp/autoprov-csv-bench.XXXXXX)
pid="" db=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  [ -n "$db" ] && psql -q "$pg" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
(cd "$here" && cargo build --release -q)
bin=${CARGO_TARGET_DIR:-$here/target}/release/autoprov

export AUTOPROV_DATA_DIR=$work/data AUTOPROV_ADMIN_PASSWORD=bench-password-$$ AUTOPROV_LOG=warn
if [ -n "$pg" ]; then
  db=autoprov_csv_bench_$$
  psql -q "$pg" -c "CREATE DATABASE $db" >/dev/null
  export AUTOPROV_DATABASE_URL=${pg%/*}/$db
fi
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
base=https://127.0.0.1:$port
start() {
  AUTOPROV_HTTPS_LISTEN=127.0.0.1:$port AUTOPROV_HTTP_LISTEN=off AUTOPROV_TFTP_LISTEN=off AUTOPROV_SIP_LISTEN=off \
    "$bin" serve >> "$work/serve.log" 2>&1 &
  pid=$!
  until curl -sk -o /dev/null "$base/"; do
    kill -0 "$pid" 2>/dev/null || { echo "the server did not start:" >&2; cat "$work/serve.log" >&2; exit 1; }
    sleep 0.05
  done
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }
status() { awk -v k="$1:" '$1 == k { printf "%.0f MB", $2 / 1024 }' "/proc/$pid/status"; }
# Resets VmHWM to the current RSS (Linux >= 4.0), so each phase has its own peak.
reset_peak() { echo 5 2>/dev/null > "/proc/$pid/clear_refs" || echo "(cannot reset VmHWM: the next peak counts from the start)"; }
post() { # FILE QUERY -> "HTTP-status seconds body"
  curl -sk -o "$work/answer.$$.$RANDOM" -w '%{http_code} %{time_total}\n' -u "admin@default:$AUTOPROV_ADMIN_PASSWORD" \
    -H 'content-type: text/csv' --data-binary "@$1" "$base/api/handset/import$2"
}

# Two files of N rows, ~124 bytes a row (31 MiB at 262,144): the default
# domain's handsets, and the site checked against them (other extensions,
# other MACs: every row passes, so every row is checked all the way).
python3 - "$work" "$rows" <<'PY'
import sys
work, n = sys.argv[1], int(sys.argv[2])
for name, first, oui in (("preload", 1_000_000, "001565"), ("site", 2_000_000, "0c383e")):
    with open(f"{work}/{name}.csv", "w") as f:
        f.write("extensionnumber,name,password,location,outgoingcli,recording,notes,mac,model\n")
        for i in range(n):
            ext = first + i
            f.write(f"{ext},Desk {ext} reception,Pw-{ext}-abcdefghij,Floor {i % 40} wing {i % 7},"
                    f"+614091{i % 100000:05d},{'true' if i % 2 else 'false'},installed by bench,{oui}{i:06x},T46S\n")
PY
echo "file: $rows rows, $(stat -c %s "$work/site.csv") bytes; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"

start
for d in 1 2 3 4 5 6; do "$bin" domain add "tenant$d" --sip-server sip.example.com >/dev/null; done
read -r code secs < <(post "$work/preload.csv" "")
[ "$code" = 200 ] || { echo "!!! preload answered $code: $(cat "$work"/answer.*)" >&2; exit 1; }
echo "preload: $rows handsets imported into default in ${secs}s (peak RSS $(status VmHWM))"
stop

start
# Start-up warms the phone cache with every handset in the background:
# wait until the RSS stops moving, so the peaks below are the imports'.
settle() {
  local last=0 now
  for _ in $(seq 1 120); do
    now=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status")
    [ $(( now > last ? now - last : last - now )) -lt 1024 ] && [ "$last" != 0 ] && return
    last=$now; sleep 1
  done
}
settle
echo "restarted with $rows handsets, settled: RSS $(status VmRSS)"
reset_peak
read -r code secs < <(post "$work/site.csv" "?dryrun=true")
echo "one dry run into default: HTTP $code in ${secs}s; peak RSS $(status VmHWM), RSS after $(status VmRSS)"
[ "$code" = 200 ] || { echo "!!! $(cat "$work"/answer.*)" >&2; exit 1; }
rm -f "$work"/answer.*

reset_peak
t0=$(date +%s.%N)
clients=()
for d in 1 2 3 4 5 6; do post "$work/site.csv" "?dryrun=true&domain=tenant$d" > "$work/par.$d" & clients+=($!); done
wait "${clients[@]}"
t1=$(date +%s.%N)
codes=$(cat "$work"/par.* | cut -d' ' -f1 | sort | uniq -c | xargs)
times=$(cat "$work"/par.* | cut -d' ' -f2 | sort -n | xargs)
echo "six dry runs at once (tenant1-6): HTTP [$codes] in $(python3 -c "print(f'{$t1 - $t0:.1f}')")s (each: $times s);" \
  "peak RSS $(status VmHWM), RSS after $(status VmRSS)"
[ "$(cut -d' ' -f1 "$work"/par.* | grep -c '^200$')" = 6 ] || { echo "!!! $(cat "$work"/answer.* | head -c 600)" >&2; exit 1; }
sleep 5
echo "RSS 5 s later: $(status VmRSS); spool left: $(ls "$work/data/spool" | wc -l) file(s)"
echo "server warnings and errors: $(grep -cE 'WARN|ERROR' "$work/serve.log" || true)"
grep -E 'WARN|ERROR' "$work/serve.log" | head -n 5 || true
