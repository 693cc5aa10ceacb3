#!/usr/bin/env bash
# Handset Select (GET /api/handset/{ext}) throughput and p99 over HTTPS with keep-alive, with N
# handsets in the store, side by side with nginx serving one static file of the same size over
# HTTPS with keep-alive, on the same machine, in the same run (A B A B ...), as
# /work/shared/bench/http_vs_nginx.sh does. Quote the ratios, not the absolute figures.
#
# usage: benches/api_select.sh [--postgres URL] [--handsets N] [--seconds N] [--connections N] [--rounds N] [--rev REV]
#   --postgres URL   a PostgreSQL server URL whose role may CREATE DATABASE, e.g.
#                    postgres://postgres@127.0.0.1:5432/postgres. A fresh database
#                    autoprov_bench_<random> is created there, used and dropped at the end.
#                    Without it: SQLite in the temporary data dir.
#   --handsets N     handsets seeded through the API (default 10000), extensions 100000..
#   --seconds N      wrk duration of each measurement (default 8)
#   --connections N  wrk keep-alive connections (default 64; wrk runs one thread, as http_vs_nginx.sh)
#   --rounds N       A B rounds (default 2)
#   --rev REV        build that commit (git archive into the temp dir) instead of the working tree,
#                    e.g. --rev HEAD while someone is editing the tree
# needs: cargo, wrk, nginx, curl, openssl, python3 (and psql with --postgres).
# Exit status 1 when any server response was non-2xx or any socket error occurred.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pg_url=""; rev=""; handsets=10000; secs=8; conns=64; rounds=2
while [ $# -gt 0 ]; do case $1 in
  --postgres) pg_url=${2:?URL}; shift;; --handsets) handsets=$2; shift;; --seconds) secs=$2; shift;;
  --connections) conns=$2; shift;; --rounds) rounds=$2; shift;; --rev) rev=${2:?REV}; shift;;
  -h|--help) sed -n '2,19p' "$0"; exit 0;;
  *) echo "unknown option $1" >&2; exit 2;; esac; shift; done
for v in "$handsets" "$secs" "$conns" "$rounds"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "not a positive number: $v" >&2; exit 2; }; done
[ "$handsets" -le 899999 ] || { echo "--handsets at most 899999 (6-digit extensions)" >&2; exit 2; }
export PATH="$PATH:/usr/sbin:/sbin"
need=(cargo wrk nginx curl openssl python3); [ -n "$pg_url" ] && need+=(psql)
for t in "${need[@]}"; do command -v "$t" >/dev/null || { echo "missing $t (apt-get install -y $t)" >&2; exit 2; }; done

work=$(mktemp -d /tmp/autoprov-bench.XXXXXX)
server_pid=""; db=""
cleanup() {
  set +e
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"                       # graceful: up to 10 s for requests in flight
    for _ in $(seq 150); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null
  fi
  [ -s "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null && sleep 0.3
  if [ -n "$db" ]; then
    timeout 30 psql "$pg_url" -qAt -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 ||
      timeout 30 psql "$pg_url" -qAt -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 ||
      echo "could not drop database $db" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# --- build (own target dir: no lock contention with builds in ./target) ---
export CARGO_TARGET_DIR=/tmp/autoprov-bench-target
src=$root; version=$(git -C "$root" describe --always --dirty 2>/dev/null || echo '?')
if [ -n "$rev" ]; then
  commit=$(git -C "$root" rev-parse --verify "$rev^{commit}") || { echo "no such commit: $rev" >&2; exit 2; }
  src=$work/src; mkdir -p "$src"; git -C "$root" archive "$commit" | tar -x -C "$src"
  version=$(git -C "$root" describe --always "$commit")
fi
echo "building $version (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR) ..."
(cd "$src" && timeout 1800 cargo build --release --quiet) || { echo "build failed" >&2; exit 1; }
bin=$CARGO_TARGET_DIR/release/autoprov

# --- database ---
if [ -n "$pg_url" ]; then
  db=autoprov_bench_$(python3 -c 'import secrets;print(secrets.token_hex(4))')
  timeout 30 psql "$pg_url" -qAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null ||
    { db=""; echo "could not create a database via $pg_url" >&2; exit 1; }
  db_url=$(python3 -c 'import sys,urllib.parse as u;p=u.urlsplit(sys.argv[1]);print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$pg_url" "$db")
  backend="PostgreSQL $(psql "$pg_url" -qAt -c 'SHOW server_version' | awk '{print $1}') (database $db)"
else
  db_url="sqlite://$work/data/autoprov.db"
  backend="SQLite (WAL) in $work/data"
fi

# --- server ---
pw=$(python3 -c 'import secrets;print(secrets.token_hex(12))')
auth_b64=$(printf '%s' "admin@default:$pw" | base64 -w0)
sport=$(free_port)
base=https://127.0.0.1:$sport
mkdir -p "$work/data"
AUTOPROV_DATA_DIR=$work/data AUTOPROV_ADMIN_PASSWORD=$pw AUTOPROV_DATABASE_URL=$db_url \
  AUTOPROV_HTTP_LISTEN=off AUTOPROV_HTTPS_LISTEN=127.0.0.1:$sport AUTOPROV_TFTP_LISTEN=off AUTOPROV_LOG=warn \
  "$bin" serve >"$work/server.out" 2>"$work/server.log" &
server_pid=$!
code=000
for _ in $(seq 120); do
  kill -0 "$server_pid" 2>/dev/null || { echo "the server exited at start:" >&2; cat "$work/server.out" >&2; tail -n 20 "$work/server.log" >&2; exit 1; }
  code=$(curl -sk --max-time 5 -o /dev/null -w '%{http_code}' -H "Authorization: Basic $auth_b64" "$base/api/handset?maxresults=1" || true)
  [ "$code" = 200 ] && break; sleep 0.5
done
[ "$code" = 200 ] || { echo "the server did not answer 200 within 60 s (last: $code)" >&2; tail -n 20 "$work/server.log" >&2; exit 1; }

# --- seed N handsets through the API: threads with one keep-alive TLS connection each ---
cat > "$work/seed.py" <<'PY'
import http.client, json, ssl, sys, threading, time
port, auth, n, first, nthreads = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ctx = ssl._create_unverified_context()
hdrs = {"Authorization": "Basic " + auth, "Content-Type": "application/json"}
lock = threading.Lock(); state = {"next": 0, "ok": 0, "bad": []}
def worker():
    conn = None
    while True:
        with lock:
            i = state["next"]; state["next"] += 1
        if i >= n or len(state["bad"]) > 5:
            break
        body = json.dumps({"extensionnumber": str(first + i), "name": f"Bench {first + i}", "mac": f"0015650{i:05x}"})
        for attempt in range(3):
            try:
                if conn is None:
                    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
                conn.request("POST", "/api/handset", body, hdrs)
                r = conn.getresponse(); data = r.read()
                break
            except (OSError, http.client.HTTPException) as e:
                if conn: conn.close()
                conn = None
                if attempt == 2:
                    r, data = None, repr(e).encode()
        with lock:
            if r is not None and 200 <= r.status < 300: state["ok"] += 1
            else: state["bad"].append(f"{first + i}: {r.status if r else 'error'} {data[:200]!r}")
t0 = time.monotonic()
ts = [threading.Thread(target=worker) for _ in range(nthreads)]
for t in ts: t.start()
for t in ts: t.join()
dt = time.monotonic() - t0
print(f"seeded {state['ok']}/{n} handsets in {dt:.1f} s ({state['ok']/dt:.0f}/s)")
for b in state["bad"]: print("SEED FAILURE", b, file=sys.stderr)
sys.exit(0 if state["ok"] == n else 1)
PY
first=100000
timeout 1800 python3 "$work/seed.py" "$sport" "$auth_b64" "$handsets" "$first" 8 || { echo "seeding failed" >&2; exit 1; }

# --- nginx: one static file, the server's Handset Select body, over TLS with keep-alive ---
mkdir -p "$work/www" "$work/logs"; chmod 755 "$work" "$work/www"
curl -sk -f --max-time 10 -H "Authorization: Basic $auth_b64" "$base/api/handset/$first" -o "$work/www/static.json" ||
  { echo "the server did not answer GET /api/handset/$first" >&2; exit 1; }
size=$(stat -c %s "$work/www/static.json")
last_size=$(curl -sk -f --max-time 10 -H "Authorization: Basic $auth_b64" "$base/api/handset/$((first + handsets - 1))" | wc -c)
[ "$last_size" = "$size" ] || echo "note: response sizes differ ($size vs $last_size bytes)"
nport=$(free_port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$work/key.pem" -out "$work/cert.pem" \
  -days 2 -subj /CN=localhost 2>/dev/null
cat > "$work/nginx.conf" <<NGX
worker_processes auto; daemon on; pid $work/nginx.pid; error_log $work/logs/error.log;
events { worker_connections 4096; }
http { access_log off; sendfile on; keepalive_requests 1000000; default_type application/json;
  server { listen 127.0.0.1:$nport ssl; ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3; location / { root $work/www; try_files /static.json =404; } } }
NGX
nginx -c "$work/nginx.conf" -p "$work" -e "$work/logs/error.log"

# --- wrk script: rotate over the N extensions, with the admin's Basic credentials (nginx gets the same requests) ---
cat > "$work/select.lua" <<LUA
-- built in init(), which wrk.init calls after it has set the Host header that wrk.format adds
-- (built at load time the requests would lack Host: nginx answers 400, the server does not mind)
local reqs = {}
init = function(args)
  for i = 0, $handsets - 1 do
    reqs[#reqs + 1] = wrk.format("GET", "/api/handset/" .. ($first + i), { ["Authorization"] = "Basic $auth_b64" })
  end
end
local i = 0
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.1f %d %d %.3f\n", summary.requests / (summary.duration / 1e6),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(99) / 1000))
end
LUA
run() {
  local out
  out=$(timeout $((secs + 60)) wrk -t1 -c"$conns" -d"${secs}s" -s "$work/select.lua" "$1" 2>&1 || true)
  awk '/^RESULT/{print $2, $3, $4, $5; f=1} END{if(!f) print "0 -1 -1 0"}' <<<"$out"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }
# With the PostgreSQL on this machine (its postmaster.pid readable), also the CPU of that cluster's
# processes: the postmaster and its children (the pool's backends stay connected through a round).
pg_pm=""
if [ -n "$pg_url" ]; then
  pg_dir=$(psql "$pg_url" -qAt -c 'SHOW data_directory' 2>/dev/null || true)
  [ -n "$pg_dir" ] && [ -r "$pg_dir/postmaster.pid" ] && pg_pm=$(head -n1 "$pg_dir/postmaster.pid")
  [ -n "$pg_pm" ] && [ -d "/proc/$pg_pm" ] || pg_pm=""
fi
pg_local=0; [ -n "$pg_pm" ] && pg_local=1
pg_ticks() {
  local t=0 p
  for p in $pg_pm $(pgrep -P "$pg_pm" || true); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
  echo $t
}
hz=$(getconf CLK_TCK)

echo "autoprov $version (binary sha256 $(sha256sum "$bin" | cut -c1-12)) on $backend; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "GET /api/handset/{ext} over HTTPS keep-alive: response $size bytes; $handsets handsets (rotating); ${conns} connections; ${secs}s x $rounds rounds"
ratios=(); s_p99s=(); n_p99s=(); trouble=0
for r in $(seq 1 "$rounds"); do
  read -r n_rps n_bad n_err n_p99 < <(run "https://127.0.0.1:$nport")
  c0=$(cpu_ticks); [ $pg_local = 1 ] && d0=$(pg_ticks)
  read -r s_rps s_bad s_err s_p99 < <(run "$base")
  cpu=$(( ($(cpu_ticks) - c0) * 100 / hz / secs ))
  [ $pg_local = 1 ] && cpu="$cpu%, postgres CPU $(( ($(pg_ticks) - d0) * 100 / hz / secs ))"
  ratio=$(python3 -c "print(f'{$s_rps/$n_rps:.3f}' if $n_rps > 0 else 'nan')")
  ratios+=("$ratio"); s_p99s+=("$s_p99"); n_p99s+=("$n_p99")
  echo "round $r: server ${s_rps} req/s (non-2xx $s_bad, socket errors $s_err, p99 ${s_p99} ms, server CPU ${cpu}%) | nginx ${n_rps} req/s (non-2xx $n_bad, socket errors $n_err, p99 ${n_p99} ms) | ratio $ratio"
  for who in server nginx; do
    if [ $who = server ]; then bad=$s_bad; err=$s_err; else bad=$n_bad; err=$n_err; fi
    if [ "$bad" = -1 ]; then echo "!!! round $r: wrk gave no result against $who" >&2; trouble=1
    elif [ "$bad" != 0 ] || [ "$err" != 0 ]; then
      echo "!!! round $r: $who answered $bad non-2xx responses and had $err socket errors: these figures are NOT valid" >&2; trouble=1
    fi
  done
done
median() { python3 -c 'import sys,statistics;print(f"{statistics.median(float(x) for x in sys.argv[1:]):.3f}")' "$@"; }
echo "p99 ms, server: ${s_p99s[*]} (median $(median "${s_p99s[@]}")); nginx: ${n_p99s[*]} (median $(median "${n_p99s[@]}"))"
echo "ratio server/nginx req/s (median of rounds): $(median "${ratios[@]}")"
echo "load average at the end $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine makes rounds disagree)"

if [ "$trouble" = 1 ]; then
  echo "!!! NON-2xx RESPONSES OR SOCKET ERRORS: what a few requests answer now:" >&2
  for e in $first $((first + handsets / 2)) $((first + handsets - 1)); do
    echo "  GET /api/handset/$e -> $(curl -sk --max-time 10 -o /dev/null -w '%{http_code}' -H "Authorization: Basic $auth_b64" "$base/api/handset/$e" || true)" >&2
  done
fi
# stderr: tracing at AUTOPROV_LOG=warn. rustls warns once per connection that wrk sends the IP
# address 127.0.0.1 as SNI; count those apart from the rest.
sni=$(grep -c 'Illegal SNI extension' "$work/server.log" || true)
grep -v 'Illegal SNI extension' "$work/server.log" > "$work/server.other.log" || true
warns=$(grep -c . "$work/server.other.log" || true)
echo "server log: $sni rustls 'Illegal SNI extension' warnings (one per connection), $warns other lines at warn level or above"
[ "$warns" = 0 ] || { echo "last 10:"; tail -n 10 "$work/server.other.log"; }
kill -0 "$server_pid" 2>/dev/null || { echo "!!! the server is no longer running" >&2; trouble=1; }
exit "$trouble"
