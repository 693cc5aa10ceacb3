#!/usr/bin/env python3
"""A stand-in for autoprov's POST /api/registration, to watch what the
registrar (contrib/kamailio) reports: prints each request, checks the body is
JSON, answers 200 (404 for AORs named with --unknown).

  mock_autoprov.py [--bind 203.0.113.1] [--port 8443] [--unknown sip:999@203.0.113.2]

Makes a throw-away self-signed certificate with openssl on start.
"""
import argparse, base64, http.server, json, ssl, subprocess, sys, tempfile, os

ap = argparse.ArgumentParser()
ap.add_argument("--bind", default="203.0.113.1")
ap.add_argument("--port", type=int, default=8443)
ap.add_argument("--unknown", action="append", default=[])
args = ap.parse_args()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        auth = self.headers.get("Authorization", "")
        who = base64.b64decode(auth[6:]).decode("utf-8", "replace") if auth.startswith("Basic ") else "(none)"
        try:
            doc = json.loads(body)
            parsed = "valid JSON, useragent=%r" % doc.get("useragent")
        except ValueError as e:
            doc, parsed = {}, "INVALID JSON: %s" % e
        print("POST %s\n  Content-Type: %s\n  Authorization: %s  (%s)\n  body: %s\n  %s"
              % (self.path, self.headers.get("Content-Type"), auth, who,
                 body.decode("utf-8", "replace"), parsed), flush=True)
        code = 404 if doc.get("aor") in args.unknown else 200
        if self.path != "/api/registration":
            code = 404
        reply = b'{"ok":true}\n' if code == 200 else b'{"error":"not found"}\n'
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, fmt, *a):
        pass


tmp = tempfile.mkdtemp()
cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-subj", "/CN=" + args.bind, "-addext", "subjectAltName=IP:" + args.bind,
                "-keyout", key, "-out", cert], check=True, capture_output=True)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv = http.server.HTTPServer((args.bind, args.port), Handler)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("mock autoprov on https://%s:%d (certificate %s)" % (args.bind, args.port, cert), flush=True)
srv.serve_forever()
