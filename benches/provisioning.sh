#!/usr/bin/env bash
# The provisioning figures of issue 3, beside their baselines in one run:
# 100,000 handsets (SQLite by default), requests rotating over all their
# per-MAC files with matching User-Agents.
#   - HTTP keep-alive, HTTP --close, HTTPS --close: ../shared/bench/http_vs_nginx.sh
#   - the keep-alive floor: benches/floor (a bare axum handler serving the same
#     paths from memory) against nginx the same way, the most a server can
#     reach with that client on this machine
#   - TFTP: ../shared/bench/tftp-load against in.tftpd (tftpd-hpa) serving the same files
#   - resident memory after those runs; start-up time with 100,000 handsets
#
# usage: benches/provisioning.sh [--handsets N] [--seconds S] [--rounds R] [--postgres URL]
# needs: wrk nginx curl openssl tftpd-hpa python3 (Debian packages), a Rust toolchain.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${AUTOPROV_SHARED:-$here/../shared}
handsets=100000 secs=6 rounds=3 db=""
while [ $# -gt 0 ]; do case $1 in
  --handsets) handsets=$2; shift;; --seconds) secs=$2; shift;; --rounds) rounds=$2; shift;;
  --postgres) db=$2; shift;; *) echo "unknown option $1" >&2; exit 2;; esac; shift; done
for t in wrk nginx curl openssl in.tftpd python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 2; }; done

work=$(mktemp -d /tmp/autoprov-bench.XXXXXX)
cleanup() {
  pkill -f "autoprov-bench-serve-$$" 2>/dev/null || true
  for p in "${tftpd:-}" "${floor:-}"; do if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; fi; done
  rm -rf "$work"
}
trap cleanup EXIT
target=${CARGO_TARGET_DIR:-$here/target}
(cd "$here" && cargo build --release -q)
CARGO_TARGET_DIR=$work/tftp-load-target cargo build --release -q --manifest-path "$shared/bench/tftp-load/Cargo.toml"
floor_target=${FLOOR_TARGET:-/tmp/floor-target}
CARGO_TARGET_DIR=$floor_target cargo build --release -q --manifest-path "$here/benches/floor/Cargo.toml"

port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
http=$(port) https=$(port) tftp=$(port) pw=bench-password-$$
# The TFTP load comes from one address with 64 transfers at once, and a
# client's next request can arrive before its last ACK is seen: the
# per-source cap (64, which real sites, one transfer per phone, never reach)
# is lifted so the figure measures serving, not that cap.
start() {
  AUTOPROV_DATA_DIR=$work/data AUTOPROV_ADMIN_PASSWORD=$pw AUTOPROV_LOG=warn AUTOPROV_SIP_LISTEN=off \
  AUTOPROV_TFTP_TRANSFERS_PER_SOURCE=1024 \
  AUTOPROV_HTTP_LISTEN=127.0.0.1:$http AUTOPROV_HTTPS_LISTEN=127.0.0.1:$https AUTOPROV_TFTP_LISTEN=127.0.0.1:$tftp \
  ${db:+AUTOPROV_DATABASE_URL=$db} \
  bash -c "exec -a autoprov-bench-serve-$$ $target/release/autoprov serve" > "$work/serve.log" 2>&1 &
  until curl -s -o /dev/null "http://127.0.0.1:$http/"; do sleep 0.01; done
}
rss() { ps -o rss= -p "$(pgrep -f "autoprov-bench-serve-$$")" | awk '{printf "%.0f MB", $1/1024}'; }

start
python3 "$here/benches/load_handsets.py" "https://127.0.0.1:$https" admin@default "$pw" "$handsets" "$work/out"
pkill -f "autoprov-bench-serve-$$"; sleep 1
t0=$(date +%s%N); start; t1=$(date +%s%N)
echo "start-up with $handsets handsets: $(( (t1 - t0) / 1000000 )) ms until the first answer"
sleep 2
echo "== HTTP keep-alive";  bash "$shared/bench/http_vs_nginx.sh" "http://127.0.0.1:$http" "$work/out/requests.tsv" --seconds "$secs" --rounds "$rounds" | tail -n $((rounds + 1))
# The floor: the same paths, the same client and nginx, served by a handler
# that only looks a body up (benches/floor).
first=$(head -n1 "$work/out/requests.tsv")
curl -s -f -A "${first#*$'\t'}" "http://127.0.0.1:$http${first%%$'\t'*}" -o "$work/floor-body"
fport=$(port)
"$floor_target/release/floor" "127.0.0.1:$fport" "$work/out/requests.tsv" "$work/floor-body" & floor=$!
until curl -s -o /dev/null "http://127.0.0.1:$fport/"; do sleep 0.01; done
echo "== HTTP keep-alive, the floor (benches/floor)"; bash "$shared/bench/http_vs_nginx.sh" "http://127.0.0.1:$fport" "$work/out/requests.tsv" --seconds "$secs" --rounds "$rounds" | tail -n $((rounds + 1))
kill "$floor"; floor=""
echo "== HTTP --close";     bash "$shared/bench/http_vs_nginx.sh" "http://127.0.0.1:$http" "$work/out/requests.tsv" --close --seconds "$secs" --rounds "$rounds" | tail -n $((rounds + 1))
echo "== HTTPS --close";    bash "$shared/bench/http_vs_nginx.sh" "https://127.0.0.1:$https" "$work/out/requests.tsv" --close --seconds "$secs" --rounds "$rounds" | tail -n $((rounds + 1))

# tftpd-hpa serves the same files, fetched from us over TFTP: a phone that
# comes by TFTP gets its own file (no action URLs: 3.4 KB where HTTP's is 4.7),
# and both servers must send the same bytes. This is also each phone's first
# TFTP fetch (what the recorder writes), before the rounds.
mkdir -p "$work/tftproot"
python3 - "$work" "$tftp" <<'PY'
import os, socket, struct, sys, concurrent.futures
work, port = sys.argv[1], int(sys.argv[2])
names = [l.strip() for l in open(f"{work}/out/files.txt") if l.strip()]
def get(name):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
    s.sendto(b"\x00\x01" + name.encode() + b"\x00octet\x00", ("127.0.0.1", port))
    data, block = bytearray(), 1
    while True:
        pkt, peer = s.recvfrom(1024)
        op, n = struct.unpack("!HH", pkt[:4])
        assert op == 3, (name, pkt[:80])
        s.sendto(struct.pack("!HH", 4, n), peer)
        if n == block:
            data += pkt[4:]; block += 1
            if len(pkt) - 4 < 512: break
    s.close()
    os.makedirs(os.path.dirname(f"{work}/tftproot/{name}"), exist_ok=True)
    open(f"{work}/tftproot/{name}", "wb").write(data)
with concurrent.futures.ThreadPoolExecutor(8) as ex: list(ex.map(get, names))
print(f"fetched {len(names)} files over TFTP for tftpd-hpa, {os.path.getsize(f'{work}/tftproot/{names[0]}')} bytes each")
PY
tport=$(port)
in.tftpd -L -s -a "127.0.0.1:$tport" "$work/tftproot" & tftpd=$!
sleep 0.5
load=$work/tftp-load-target/release/tftp-load
for r in $(seq 1 "$rounds"); do
  b=$("$load" "127.0.0.1:$tport" "$work/out/files.txt" --concurrency 64 --seconds "$secs" | sed -n 1p)
  s=$("$load" "127.0.0.1:$tftp" "$work/out/files.txt" --concurrency 64 --seconds "$secs" | sed -n 1p)
  ratio=$(python3 -c "print(f'{float(\"$s\".split()[1])/float(\"$b\".split()[1]):.2f}')")
  echo "== TFTP round $r: autoprov [$s] | tftpd-hpa [$b] | ratio $ratio"
done
echo "resident memory after the runs: $(rss)"
