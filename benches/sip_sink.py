#!/usr/bin/env python3
"""A UDP SIP sink for the push benchmark: answers every NOTIFY with 200 OK
and records when each distinct Call-ID arrived.

usage: sip_sink.py PORT EXPECTED OUTFILE
Writes "first_ts last_ts count retransmissions" to OUTFILE once EXPECTED
distinct NOTIFYs were answered, and goes on answering (retransmissions
whose answer was lost) until killed or 120 s have passed.
"""
import socket, sys, time

port, expected, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("127.0.0.1", port))
s.settimeout(1.0)
seen, first, last, dup = set(), None, None, 0
deadline = time.time() + 120
written = False
while time.time() < deadline:
    try:
        data, addr = s.recvfrom(65536)
    except socket.timeout:
        continue
    text = data.decode("latin-1")
    if not text.startswith("NOTIFY "):
        continue
    head = {}
    for line in text.split("\r\n")[1:]:
        if not line:
            break
        k, _, v = line.partition(":")
        head.setdefault(k.strip().lower(), v.strip())
    resp = "SIP/2.0 200 OK\r\n" + "".join(
        f"{k}: {head.get(k.lower(), '')}\r\n" for k in ("Via", "From", "To", "Call-ID", "CSeq")
    ) + "Content-Length: 0\r\n\r\n"
    s.sendto(resp.encode("latin-1"), addr)
    now = time.time()
    cid = head.get("call-id")
    if cid in seen:
        dup += 1
        continue
    seen.add(cid)
    first = first or now
    last = now
    if len(seen) >= expected and not written:
        with open(out, "w") as f:
            f.write(f"{first} {last} {len(seen)} {dup}\n")
        written = True
