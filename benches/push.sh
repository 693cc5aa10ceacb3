#!/usr/bin/env bash
# The push figure of issue 4: N handsets (10,000) changed by one domain-wide
# update, every phone "registered" at one UDP sink that answers 200 OK
# (benches/sip_sink.py), the pacing limit lifted (AUTOPROV_PUSH_RATE=0).
# Prints the NOTIFY rate at the sink, the time until every push is `sent`
# in the database, and the server's peak resident memory.
#
# usage: benches/push.sh [--handsets N]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
n=10000
while [ $# -gt 0 ]; do case $1 in --handsets) n=$2; shift;; *) echo "unknown option $1" >&2; exit 2;; esac; shift; done
work=$(mktemp -d /tmp/autoprov-push-bench.XXXXXX)
trap 'pkill -f "autoprov-push-bench-$$" 2>/dev/null || true; rm -rf "$work"' EXIT
(cd "$here" && cargo build --release -q)
port() { python3 -c 'import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
https=$(port) sip=$(port) sink=$(port) pw=bench-password-$$
AUTOPROV_DATA_DIR=$work/data AUTOPROV_ADMIN_PASSWORD=$pw AUTOPROV_LOG=warn AUTOPROV_PUSH_RATE=0 AUTOPROV_ALLOW_INTERNAL_TARGETS=true \
AUTOPROV_HTTP_LISTEN=off AUTOPROV_TFTP_LISTEN=off AUTOPROV_HTTPS_LISTEN=127.0.0.1:$https AUTOPROV_SIP_LISTEN=127.0.0.1:$sip \
  bash -c "exec -a autoprov-push-bench-$$ ${CARGO_TARGET_DIR:-$here/target}/release/autoprov serve" > "$work/serve.log" 2>&1 &
until curl -sk -o /dev/null "https://127.0.0.1:$https/"; do sleep 0.05; done
pid=$(pgrep -f "autoprov-push-bench-$$")
python3 "$here/benches/load_handsets.py" "https://127.0.0.1:$https" admin@default "$pw" "$n" "$work/out"
# Every phone registered at the sink (status reports through the API).
python3 - "$https" "$pw" "$n" "$sink" <<'PY'
import base64, http.client, json, ssl, sys, concurrent.futures
port, pw, n, sink = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
auth = "Basic " + base64.b64encode(f"admin@default:{pw}".encode()).decode()
def work(exts):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
    for e in exts:
        c.request("PUT", f"/api/handsetstatus/{e}", json.dumps({"registrationaddress": f"127.0.0.1:{sink}"}), {"Authorization": auth})
        r = c.getresponse(); r.read(); assert r.status == 200, r.status
exts = [str(100000 + i) for i in range(n)]
with concurrent.futures.ThreadPoolExecutor(8) as ex: list(ex.map(work, [exts[i::8] for i in range(8)]))
PY
python3 "$here/benches/sip_sink.py" "$sink" "$n" "$work/sink.txt" & sinkpid=$!
sleep 0.5
peak=0; ( while kill -0 "$pid" 2>/dev/null; do ps -o rss= -p "$pid"; sleep 0.1; done > "$work/rss.txt" ) & sampler=$!
t0=$(date +%s.%N)
curl -sk -o /dev/null -w "domain update: %{http_code}\n" -u "admin@default:$pw" -X PUT "https://127.0.0.1:$https/api/domain" -d '{"sipserver":"sip2.example.net"}'
until [ -s "$work/sink.txt" ]; do sleep 0.05; done
# Until the database says sent for all of them.
python3 - "$work/data/autoprov.db" "$n" <<'PY'
import sqlite3, sys, time
db, n = sys.argv[1], int(sys.argv[2])
while True:
    c = sqlite3.connect(db); sent = c.execute("SELECT COUNT(*) FROM push WHERE state = 'sent'").fetchone()[0]; c.close()
    if sent >= n: break
    time.sleep(0.05)
PY
t1=$(date +%s.%N)
kill "$sampler" "$sinkpid" 2>/dev/null || true
read -r first last count dup < "$work/sink.txt"
python3 - "$t0" "$t1" "$first" "$last" "$count" "$dup" "$work/rss.txt" <<'PY'
import sys
t0, t1, first, last, count, dup = map(float, sys.argv[1:7])
rss = max(int(l) for l in open(sys.argv[7]) if l.strip()) / 1024
print(f"{int(count)} NOTIFYs answered, {int(dup)} retransmissions; sink rate {count / max(last - first, 1e-9):.0f} NOTIFY/s "
      f"(first to last); update to all sent in the database: {t1 - t0:.2f} s; server peak RSS {rss:.0f} MB")
PY
