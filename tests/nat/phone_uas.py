#!/usr/bin/env python3
"""The phone's side of a push, for the NAT test bed: listen on the port the
phone registered from, print every SIP request, answer OPTIONS 200 and NOTIFY
200 -- or, with --challenge, the first NOTIFY 401 (as phones that want digest
auth do) and the next one 200. Exits after the first NOTIFY answered 200, or
after --timeout seconds (status 1).

  phone_uas.py [--bind 192.168.77.10] [--port 5060] [--challenge] [--timeout 20]
"""
import argparse, socket, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--bind", default="192.168.77.10")
ap.add_argument("--port", type=int, default=5060)
ap.add_argument("--challenge", action="store_true")
ap.add_argument("--timeout", type=float, default=20)
args = ap.parse_args()

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((args.bind, args.port))
deadline = time.time() + args.timeout
challenged = not args.challenge


def reply(msg, code, reason, extra=()):
    lines = msg.split("\r\n")
    keep = [l for l in lines[1:] if l.split(":", 1)[0].strip().lower()
            in ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq")]
    out = ["SIP/2.0 %d %s" % (code, reason)]
    for l in keep:
        if l.lower().startswith(("to:", "t:")) and ";tag=" not in l:
            l += ";tag=phone1"
        out.append(l)
    out += list(extra) + ["Content-Length: 0", "", ""]
    return "\r\n".join(out).encode()


while time.time() < deadline:
    s.settimeout(max(0.1, deadline - time.time()))
    try:
        data, peer = s.recvfrom(65535)
    except socket.timeout:
        break
    msg = data.decode("utf-8", "replace")
    first = msg.split("\r\n", 1)[0]
    cseq = next((l for l in msg.split("\r\n") if l.lower().startswith("cseq:")), "")
    print("phone got from %s:%d: %s | %s" % (peer[0], peer[1], first, cseq), flush=True)
    method = first.split(" ", 1)[0]
    if method == "NOTIFY" and not challenged:
        challenged = True
        s.sendto(reply(msg, 401, "Unauthorized",
                       ['WWW-Authenticate: Digest realm="phone", nonce="4b1d2c3e", algorithm=MD5']), peer)
        print("phone answered 401", flush=True)
    elif method in ("NOTIFY", "OPTIONS"):
        s.sendto(reply(msg, 200, "OK"), peer)
        print("phone answered 200", flush=True)
        if method == "NOTIFY":
            sys.exit(0)
sys.exit(1)
