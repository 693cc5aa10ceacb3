#!/usr/bin/env bash
# The figures of issue 11: the attacks found against a release build, run
# one after another against one server while phones keep fetching their
# files over HTTP, HTTPS and TFTP (benches/hostile.py), then SIGTERM with
# pushes in flight.
#
#   - peak RSS under 200 parallel wrong passwords from one address (goal < 250 MB)
#   - peak RSS under six parallel 31 MiB CSV dry runs, six tenants (goal < 400 MB)
#   - phones' fetch success during 4,096 unacknowledged TFTP requests and
#     5,000 idle TCP connections (goal 100%)
#   - datagrams one forged TFTP request brings its victim (goal <= 1)
#   - SIGTERM to exit with NOTIFYs in flight (goal < 10 s)
#
# The server runs under an open-file limit of 1,024 (--nofile N to change),
# the limit the attacks were found under.
#
# usage: benches/hostile.sh [--handsets N] [--nofile N] [--csv-rows N]
# needs: python3, curl (Debian packages), a Rust toolchain.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
handsets=2000 nofile=1024 rows=262144
while [ $# -gt 0 ]; do case $1 in
  --handsets) handsets=$2; shift;; --nofile) nofile=$2; shift;; --csv-rows) rows=$2; shift;;
  *) echo "unknown option $1" >&2; exit 2;; esac; shift; done
for t in curl python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 2; }; done

work=$(mktemp -d /tmp/autoprov-hostile.XXXXXX)
cleanup() { pkill -f "autoprov-hostile-serve-$$" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
target=${CARGO_TARGET_DIR:-$here/target}
(cd "$here" && cargo build --release -q)
bin=$target/release/autoprov

port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
http=$(port) https=$(port) tftp=$(port) sip=$(port) pw=bench-password-$$
export AUTOPROV_DATA_DIR=$work/data AUTOPROV_ADMIN_PASSWORD=$pw AUTOPROV_LOG=warn \
  AUTOPROV_HTTP_LISTEN=127.0.0.1:$http AUTOPROV_HTTPS_LISTEN=127.0.0.1:$https AUTOPROV_TFTP_LISTEN=127.0.0.1:$tftp \
  AUTOPROV_SIP_LISTEN=127.0.0.1:$sip AUTOPROV_ALLOW_INTERNAL_TARGETS=true
( ulimit -n "$nofile"; exec -a "autoprov-hostile-serve-$$" "$bin" serve ) > "$work/serve.log" 2>&1 &
until curl -s -o /dev/null "http://127.0.0.1:$http/"; do sleep 0.05; done
pid=$(pgrep -f "autoprov-hostile-serve-$$")
echo "server pid $pid, open-file limit $(awk '/Max open files/ {print $4}' /proc/$pid/limits)"

python3 "$here/benches/load_handsets.py" "https://127.0.0.1:$https" admin@default "$pw" "$handsets" "$work/out" >/dev/null
domains=""
for i in 1 2 3 4 5 6; do
  "$bin" domain add "tenant$i" --sip-server "sip$i.example.net" >/dev/null
  domains=${domains:+$domains,}tenant$i
done
# A whole site as installers send it: ~124 bytes a row, 262,144 rows = 31 MiB.
python3 - "$work/site.csv" "$rows" <<'PY'
import sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    f.write("extensionnumber,name,mac,password,location,outgoingcli,recording,notes\n")
    for i in range(n):
        f.write(f"{300000 + i},Site phone {i:06d} desk,"
                f"0004f2{i:06x},Site-Password-{i:08d}-x,Bldg {i % 7} floor {i % 12} room {i % 300:03d},"
                f"+4420{i:08d},{'true' if i % 2 else 'false'},by hostile.sh\n")
PY

( ulimit -n "$(ulimit -Hn)"; python3 "$here/benches/hostile.py" "$pid" "$https" "$http" "$tftp" "$pw" \
    "$work/out/files.txt" "$work/site.csv" "$domains" )

# SIGTERM with pushes in flight: every phone registered at a sink that
# never answers, then a domain-wide change.
python3 - "$https" "$pw" "$handsets" "$work/sink.port" <<'PY' &
import base64, http.client, json, os, socket, ssl, sys, concurrent.futures
port, pw, n, out = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); sink.bind(("127.0.0.1", 0))
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
auth = "Basic " + base64.b64encode(f"admin@default:{pw}".encode()).decode()
def work(exts):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
    for e in exts:
        c.request("PUT", f"/api/handsetstatus/{e}", json.dumps({"registrationaddress": f"127.0.0.1:{sink.getsockname()[1]}"}), {"Authorization": auth})
        r = c.getresponse(); r.read(); assert r.status == 200, r.status
exts = [str(100000 + i) for i in range(n)]
with concurrent.futures.ThreadPoolExecutor(8) as ex: list(ex.map(work, [exts[i::8] for i in range(8)]))
open(out, "w").write("ready\n")
sink.settimeout(60)
got = 0
while True:
    try:
        sink.recv(4096); got += 1
        open(out + ".tmp", "w").write(f"{got}\n"); os.replace(out + ".tmp", out + ".got")
    except OSError:
        break
PY
until [ -s "$work/sink.port" ]; do sleep 0.1; done
curl -sk -o /dev/null -u "admin@default:$pw" -X PUT "https://127.0.0.1:$https/api/domain" -d '{"sipserver":"sip2.example.net"}'
# NOTIFYs are on their way (the pacing lets 200 a second go).
for _ in $(seq 100); do [ -s "$work/sink.port.got" ] && break; sleep 0.1; done
sleep 1
inflight=$(python3 - "$work/data/autoprov.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); print(c.execute("SELECT COUNT(*) FROM push WHERE state = 'pending'").fetchone()[0])
PY
)
notifies=$(cat "$work/sink.port.got" 2>/dev/null || echo 0)
t0=$(date +%s%N)
kill -TERM "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.02; done
t1=$(date +%s%N)
left=$(python3 - "$work/data/autoprov.db" <<'PY'
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1])
print(c.execute("SELECT COUNT(*) FROM push WHERE state = 'pending' AND claimed_until = 0").fetchone()[0])
PY
)
echo "SIGTERM with $inflight pushes pending, $notifies NOTIFY datagrams sent and never answered: exited in $(( (t1 - t0) / 1000000 )) ms (goal < 10 s); $left pushes left queued for the next start"
echo "server log: $(grep -c ERROR "$work/serve.log" || true) ERROR lines"
