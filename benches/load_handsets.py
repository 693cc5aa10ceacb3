#!/usr/bin/env python3
"""Load N handsets into a running autoprov through the API (bulk creates of
up to 400 per request, each one transaction), and write the request list
for ../shared/bench/http_vs_nginx.sh and the TFTP file list.

usage: load_handsets.py BASE_URL USER PASSWORD N OUTDIR [--family yealink]
  BASE_URL  https://127.0.0.1:8443
writes OUTDIR/requests.tsv (PATH<TAB>USER-AGENT) and OUTDIR/files.txt (one
file name a line), rotating over all N phones. Paths are under the domain's
provisioning token (/p/<token>/<file>), as the phones of a requiretoken
domain (the default) ask for them.
"""
import base64, json, os, ssl, sys, http.client, time, concurrent.futures

# Per family: MAC prefix (the vendor's OUI + 1 byte), per-phone file, UA.
FAMILIES = {
    "yealink": ("001565", "{mac}.cfg", "Yealink SIP-T46S 66.86.0.15 {colons}", "T46S"),
    "fanvil": ("0c383e", "{mac}.cfg", "Fanvil X4 2.10.2.6887 {mac}", "X4"),
    "grandstream": ("000b82", "cfg{mac}.xml", "Grandstream Model HW GXP2170 SW 1.0.11.85 DevId {mac}", "GXP2170"),
    "cisco": ("0002fd", "{mac}.xml", "Cisco/SPA508G-7.4.4 ({MAC})(CBT141400UK)", "SPA508G"),
    "snom": ("000413", "snomD785-{MAC}.htm", "Mozilla/4.0 (compatible; snomD785-SIP 10.1.54.13 2010.12-00004 {MAC} SXM:0 UXM:0)", "D785"),
    "polycom": ("0004f2", "{mac}-phone.cfg", "FileTransport PolycomVVX-VVX_410-UA/5.9.0.9373 Type/Application", "VVX410"),
}

def main():
    args = sys.argv[1:]
    family = "yealink"
    if "--family" in args:
        i = args.index("--family"); family = args[i + 1]; del args[i:i + 2]
    base, user, password, n, outdir = args[0], args[1], args[2], int(args[3]), args[4]
    oui, file_pat, ua_pat, model = FAMILIES[family]
    host = base.split("://", 1)[1]
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    os.makedirs(outdir, exist_ok=True)
    macs = [f"{oui}{i:06x}" for i in range(n)]
    batches = [macs[i:i + 400] for i in range(0, n, 400)]

    def post(batch):
        conn = http.client.HTTPSConnection(host, context=ctx)
        body = json.dumps([{"extensionnumber": str(100000 + int(m[6:], 16)), "name": f"Desk {m[6:]}", "mac": m, "model": model} for m in batch])
        conn.request("POST", "/api/handset", body, {"Authorization": auth, "Content-Type": "application/json"})
        r = conn.getresponse(); data = r.read()
        if r.status != 201:
            raise SystemExit(f"bulk create failed: {r.status} {data[:300]!r}")
        conn.close()

    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        list(ex.map(post, batches))
    print(f"loaded {n} {family} handsets in {time.time() - t0:.1f} s", file=sys.stderr)
    conn = http.client.HTTPSConnection(host, context=ctx)
    conn.request("GET", "/api/domain", headers={"Authorization": auth})
    token = json.loads(conn.getresponse().read())["provisioningtoken"]
    with open(os.path.join(outdir, "requests.tsv"), "w") as req, open(os.path.join(outdir, "files.txt"), "w") as files:
        for m in macs:
            colons = ":".join(m[i:i + 2] for i in range(0, 12, 2))
            name = f"p/{token}/" + file_pat.format(mac=m, MAC=m.upper())
            req.write(f"/{name}\t{ua_pat.format(mac=m, MAC=m.upper(), colons=colons)}\n")
            files.write(name + "\n")

main()
