#!/usr/bin/env bash
# Installs the .deb that `cargo deb` built, checks what the package set up,
# runs the installed binary the way its unit does (the autoprov user, the
# packaged settings on ports 69/80/443, CAP_NET_BIND_SERVICE and nothing
# else, no new privileges), checks that it serves and reloads, stops it, and
# purges the package. Run as root: `contrib/debian/smoke-test.sh FILE.deb`.
# systemd itself is not running in CI containers, so the unit is checked by
# `systemd-analyze verify` where that is installed, and not started.
set -euo pipefail
deb=${1:?usage: smoke-test.sh FILE.deb}
fail() { echo "deb smoke test: $*" >&2; exit 1; }

if dpkg -s autoprov >/dev/null 2>&1; then
    fail "autoprov is already installed here; refusing to replace it"
fi
for port in 80 443; do
    if ss -Hltn "sport = :$port" | grep -q .; then fail "TCP port $port is taken: $(ss -Hltnp "sport = :$port")"; fi
done
if ss -Hlun "sport = :69" | grep -q .; then fail "UDP port 69 is taken: $(ss -Hlunp 'sport = :69')"; fi

dpkg -i "$deb" >/dev/null
log=$(mktemp)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    dpkg --purge autoprov >/dev/null 2>&1 || true
    rm -f "$log"
}
trap cleanup EXIT

getent passwd autoprov >/dev/null || fail "no autoprov user"
[ "$(stat -c '%a %U:%G' /var/lib/autoprov)" = "700 autoprov:autoprov" ] || fail "/var/lib/autoprov is $(stat -c '%a %U:%G' /var/lib/autoprov)"
[ "$(stat -c '%a %U:%G' /etc/autoprov/autoprov.toml)" = "640 root:autoprov" ] || fail "/etc/autoprov/autoprov.toml is $(stat -c '%a %U:%G' /etc/autoprov/autoprov.toml)"
unit=/lib/systemd/system/autoprov.service
[ -f "$unit" ] || unit=/usr/lib/systemd/system/autoprov.service
[ -f "$unit" ] || fail "no systemd unit installed"
for want in Type=notify LimitNOFILE= ProtectSystem=strict NoNewPrivileges=yes AmbientCapabilities=CAP_NET_BIND_SERVICE User=autoprov; do
    grep -q "^$want" "$unit" || fail "the unit lacks $want"
done
if command -v systemd-analyze >/dev/null; then
    # verify exits 0 on lines it ignores: any complaint fails here.
    complaints=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify $unit: $complaints"
    [ -z "$complaints" ] || fail "systemd-analyze verify $unit: $complaints"
fi

# The unit's identity and capabilities. setpriv execs the command, so $pid
# below is the server itself (signals reach it, not a shell).
as_service=(setpriv --reuid=autoprov --regid=autoprov --init-groups --no-new-privs
    --inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service --bounding-set=-all,+net_bind_service --)
"${as_service[@]}" /usr/bin/autoprov --config /etc/autoprov/autoprov.toml check-config
"${as_service[@]}" /usr/bin/autoprov --config /etc/autoprov/autoprov.toml serve >"$log" 2>&1 &
pid=$!
for _ in $(seq 100); do
    grep -q "^TLS certificate" "$log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "the server exited"; }
    sleep 0.2
done
grep -q "^TLS certificate" "$log" || { cat "$log" >&2; fail "the server did not start within 20 s"; }

curl -fsS http://127.0.0.1:9464/readyz >/dev/null || fail "/readyz"
code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:80/api/handset)
[ "$code" = 406 ] || fail "HTTP on port 80 answered $code to the API, not 406"
password=$(cat /var/lib/autoprov/admin-password)
code=$(curl -sk -o /dev/null -w '%{http_code}' -u "admin@default:$password" https://127.0.0.1:443/api/handset)
[ "$code" = 200 ] || fail "HTTPS on port 443 answered $code to the API"
ss -Hlun 'sport = :69' | grep -q . || fail "nothing listens on UDP port 69"
[ "$(stat -c '%U' /var/lib/autoprov/autoprov.db)" = autoprov ] || fail "the database is not the autoprov user's"
kill -HUP "$pid"
for _ in $(seq 50); do grep -q "reloaded the TLS certificate" "$log" && break; sleep 0.1; done
grep -q "reloaded the TLS certificate" "$log" || { cat "$log" >&2; fail "SIGHUP did not reload"; }
kill -TERM "$pid"
wait "$pid" || fail "the server did not stop cleanly"
pid=
dpkg --purge autoprov >/dev/null
[ ! -e /var/lib/autoprov ] || fail "purge left /var/lib/autoprov"
echo "deb smoke test: installed, served on 69/80/443 as the autoprov user, reloaded, stopped and purged"
