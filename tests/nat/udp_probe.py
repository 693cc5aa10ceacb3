#!/usr/bin/env python3
"""UDP one-liners for checking the NAT test bed by hand (tests/nat/testbed.sh).

  udp_probe.py echo IP PORT                          answer every datagram (a server)
  udp_probe.py phone IP PORT DSTIP DSTPORT SECONDS   send "hello", print what arrives
  udp_probe.py send IP PORT DSTIP DSTPORT TEXT       send one datagram from IP:PORT
"""
import socket, sys, time
if len(sys.argv) < 4 or sys.argv[1] not in ("echo", "phone", "send"):
    sys.exit(__doc__)
m = sys.argv[1]
if m == "echo":   # answer every datagram, forever (as the "server")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[2], int(sys.argv[3])))
    while True:
        d, a = s.recvfrom(2000); print("server got", d, "from", a, flush=True); s.sendto(b"reply:" + d, a)
elif m == "phone":  # send to the server, then print whatever arrives for N seconds
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[2], int(sys.argv[3])))
    s.sendto(b"hello", (sys.argv[4], int(sys.argv[5]))); s.settimeout(float(sys.argv[6])); end = time.time() + float(sys.argv[6])
    try:
        while time.time() < end:
            d, a = s.recvfrom(2000); print("phone got", d, "from", a, flush=True)
    except socket.timeout: print("phone: no more datagrams", flush=True)
elif m == "send":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[2], int(sys.argv[3]))); s.sendto(sys.argv[6].encode(), (sys.argv[4], int(sys.argv[5]))); print("sent", sys.argv[6], flush=True)
