#!/usr/bin/env python3
"""The attacks of issue 11 against a running autoprov, one phase after the
other, while phones keep fetching their files over HTTP, HTTPS and TFTP
the whole time. Run by benches/hostile.sh, which starts the server.

usage: hostile.py PID HTTPS HTTP TFTP PASSWORD PHONES CSV DOMAINS
  PID       the server's process id (its RSS is sampled every 50 ms)
  HTTPS, HTTP, TFTP   its ports on 127.0.0.1
  PASSWORD  admin@default's password
  PHONES    the phones' files, one a line, under the token (p/TOKEN/FILE)
  CSV       a CSV file for the dry runs ("-": skip that phase)
  DOMAINS   comma-separated domains, one dry run each, all at once
Prints one line per phase.
"""
import base64, http.client, socket, ssl, struct, sys, threading, time, concurrent.futures

pid, https, http_port, tftp_port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
password, phones_file, csv_file, domains = sys.argv[5], sys.argv[6], sys.argv[7], sys.argv[8].split(",")
files = [l.strip() for l in open(phones_file) if l.strip()][:20]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
admin = "Basic " + base64.b64encode(f"admin@default:{password}".encode()).decode()

phase = "start"
results = {}  # phase -> protocol -> [ok, total]
lock = threading.Lock()
rss = []  # (time, MB)
stop = threading.Event()


def rss_mb():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sample():
    while not stop.is_set():
        try:
            rss.append((time.time(), rss_mb()))
        except OSError:
            return
        time.sleep(0.05)


def record(proto, ok):
    with lock:
        r = results.setdefault(phase, {}).setdefault(proto, [0, 0])
        r[0] += ok
        r[1] += 1


def fetch_http(path, tls):
    try:
        c = (http.client.HTTPSConnection("127.0.0.1", https, context=ctx, timeout=10) if tls
             else http.client.HTTPConnection("127.0.0.1", http_port, timeout=10))
        c.request("GET", path, headers={"User-Agent": "Yealink SIP-T46S 66.86.0.15", "Connection": "close"})
        r = c.getresponse(); body = r.read(); c.close()
        return r.status == 200 and len(body) > 0
    except OSError:
        return False


def fetch_tftp(name, source="127.0.0.1"):
    """A phone's TFTP client: RRQ, ACK every block, resend the RRQ twice if
    nothing comes back (as phones do)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((source, 0)); s.settimeout(2)
    rrq = b"\x00\x01" + name.encode() + b"\x00octet\x00"
    try:
        for _ in range(3):
            s.sendto(rrq, ("127.0.0.1", tftp_port))
            expect, got = 1, 0
            try:
                while True:
                    data, peer = s.recvfrom(2048)
                    op, block = struct.unpack("!HH", data[:4])
                    if op != 3:
                        return False
                    s.sendto(struct.pack("!HH", 4, block), peer)
                    if block == expect:
                        got += len(data) - 4; expect += 1
                        if len(data) - 4 < 512:
                            return got > 0
            except socket.timeout:
                if expect > 1:
                    return False
        return False
    finally:
        s.close()


def phones(proto):
    i = 0
    while not stop.is_set():
        f = files[i % len(files)]; i += 1
        if proto == "tftp":
            ok = fetch_tftp(f)
        else:
            ok = fetch_http(f"/{f}", proto == "https")
        record(proto, ok)
        time.sleep(0.02)


def peak(t0, t1):
    inside = [m for t, m in rss if t0 <= t <= t1]
    return max(inside) if inside else rss_mb()


def fetched(name):
    r = results.get(name, {})
    ok = sum(v[0] for v in r.values()); total = sum(v[1] for v in r.values())
    each = ", ".join(f"{p.upper()} {v[0]}/{v[1]}" for p, v in sorted(r.items()))
    return f"{100.0 * ok / max(total, 1):.1f}% ({each})"


def logins():
    """200 wrong passwords at once from one address."""
    def one(i):
        try:
            c = socket.create_connection(("127.0.0.1", https), timeout=30, source_address=("127.0.60.1", 0))
            s = ctx.wrap_socket(c, server_hostname="localhost")
            auth = base64.b64encode(f"admin@default:guess-{i}".encode()).decode()
            s.sendall(f"GET /api/handset HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n".encode())
            status = s.recv(64).split(b" ")[1].decode()
            s.close()
            return status
        except OSError as e:
            return type(e).__name__
    with concurrent.futures.ThreadPoolExecutor(200) as ex:
        statuses = list(ex.map(one, range(200)))
    return ", ".join(f"{s} x{statuses.count(s)}" for s in sorted(set(statuses)))


def csv_dry_runs():
    body = open(csv_file, "rb").read()
    def one(domain):
        t = time.time()
        c = http.client.HTTPSConnection("127.0.0.1", https, context=ctx, timeout=600)
        c.request("POST", f"/api/handset/import?dryrun=true&domain={domain}", body,
                  {"Authorization": admin, "Content-Type": "text/csv"})
        r = c.getresponse(); r.read(); c.close()
        return f"{r.status} in {time.time() - t:.1f} s"
    with concurrent.futures.ThreadPoolExecutor(len(domains)) as ex:
        return "; ".join(ex.map(one, domains)), len(body)


def flood(seconds):
    """4,096 TFTP read requests asking for timeout=255, never acknowledged,
    from 256 addresses, and 5,000 idle TCP connections from 20."""
    udp = []
    for i in range(4096):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.0.{70 + i // 256 % 16}.{i % 256 or 1}", 0)); s.setblocking(False)
        s.sendto(b"\x00\x01" + files[i % len(files)].encode() + b"\x00octet\x00timeout\x00255\x00tsize\x000\x00", ("127.0.0.1", tftp_port))
        udp.append(s)
    idle = []
    for i in range(5000):
        try:
            c = socket.socket(); c.bind((f"127.0.50.{i % 20 + 1}", 0)); c.settimeout(5)
            c.connect(("127.0.0.1", http_port)); idle.append(c)
        except OSError:
            pass
    time.sleep(seconds)
    held = sum(1 for c in idle if still_open(c))
    for s in udp + idle:
        s.close()
    return len(idle), held


def still_open(c):
    c.setblocking(False)
    try:
        return c.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def spoofed(options):
    """What one forged read request brings its victim: a socket at the
    forged address that never answers counts what arrives in 15 s."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.90.1", 0)); s.settimeout(0.5)
    s.sendto(b"\x00\x01" + files[0].encode() + b"\x00octet\x00" + options, ("127.0.0.1", tftp_port))
    datagrams = size = 0
    end = time.time() + 15
    while time.time() < end:
        try:
            data = s.recv(70000); datagrams += 1; size += len(data)
        except socket.timeout:
            pass
    s.close()
    return datagrams, size


def run(name, what):
    global phase
    phase = name
    t0 = time.time()
    out = what()
    return out, peak(t0, time.time())


threading.Thread(target=sample, daemon=True).start()
workers = [threading.Thread(target=phones, args=(p,), daemon=True) for p in ("http", "https", "tftp")]
for w in workers:
    w.start()
time.sleep(2)
print(f"phones before the attacks: {fetched('start')}; server RSS {rss_mb():.0f} MB", flush=True)

statuses, mb = run("logins", logins)
print(f"200 parallel wrong passwords from one address: {statuses}; server peak RSS {mb:.0f} MB (goal < 250 MB); "
      f"phones meanwhile {fetched('logins')}", flush=True)

if csv_file != "-":
    (outcome, size), mb = run("csv", csv_dry_runs)
    print(f"{len(domains)} parallel {size / 2**20:.0f} MiB CSV dry runs: {outcome}; server peak RSS {mb:.0f} MB "
          f"(goal < 400 MB); phones meanwhile {fetched('csv')}", flush=True)
    time.sleep(2)
    print(f"server RSS after the dry runs: {rss_mb():.0f} MB", flush=True)

(opened, held), mb = run("flood", lambda: flood(15))
print(f"4,096 unacknowledged TFTP requests (timeout=255) from 256 addresses + {opened} idle TCP connections from 20 "
      f"({held} still open after 15 s): phones meanwhile {fetched('flood')} (goal 100%); server peak RSS {mb:.0f} MB", flush=True)
time.sleep(1)
phase = "after"
for label, options in (("no options", b""), ("timeout=255 blksize=1468 tsize", b"timeout\x00255\x00blksize\x001468\x00tsize\x000\x00")):
    n, size = spoofed(options)
    print(f"one forged TFTP request ({label}) brought its victim {n} datagram(s), {size} bytes (goal <= 1)", flush=True)
stop.set()
print(f"phones after the attacks: {fetched('after')}", flush=True)
