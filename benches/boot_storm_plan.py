#!/usr/bin/env python3
"""The boot storm's phones and what each asks for, from the vendor profiles.

usage: boot_storm_plan.py PROFILES_DIR N OUTDIR [--token TOKEN] [--own-file-only]

Every boot generation of every family (`[[boot]]` in vendor-profiles/*.toml,
written from captures and admin guides; generations without a model are
phones we do not serve and are left out) takes its turn: phone i boots as
generation i mod G, with a MAC of the family's first OUI and i, a 7-digit
extension 1000000+i, and the generation's model. Writes
  OUTDIR/handsets.csv  extensionnumber,name,mac,model (for `autoprov import`)
  OUTDIR/plan.tsv      one phone a line: User-Agent, then each file of its
                       boot sequence as "KIND STATUS PATH" (common/phone 200,
                       quiet 404), paths under /p/TOKEN/ when a token is given
With --own-file-only each phone asks only for its own per-MAC files (the
million-handset storm: every phone's record read once).
"""
import csv, os, sys, tomllib


def main():
    args = sys.argv[1:]
    token, own_only = None, False
    if "--token" in args:
        i = args.index("--token"); token = args[i + 1]; del args[i:i + 2]
    if "--own-file-only" in args:
        args.remove("--own-file-only"); own_only = True
    profiles_dir, n, outdir = args[0], int(args[1]), args[2]
    if n > 8_999_999:
        sys.exit("at most 8,999,999 phones (7-digit extensions)")
    generations = []
    for name in sorted(os.listdir(profiles_dir)):
        if not name.endswith(".toml"):
            continue
        with open(os.path.join(profiles_dir, name), "rb") as f:
            profile = tomllib.load(f)
        oui = profile["mac_ouis"][0].lower()
        for boot in profile.get("boot", []):
            if boot.get("model"):
                generations.append((oui, boot))
    prefix = f"/p/{token}/" if token else "/"
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "handsets.csv"), "w", newline="") as hf, \
            open(os.path.join(outdir, "plan.tsv"), "w") as pf:
        handsets = csv.writer(hf)
        handsets.writerow(["extensionnumber", "name", "mac", "model"])
        for i in range(n):
            oui, boot = generations[i % len(generations)]
            mac = f"{oui}{i:06x}"
            pairs = [mac[k:k + 2] for k in range(0, 12, 2)]
            def fill(s):
                return (s.replace("{colons}", ":".join(pairs)).replace("{DASHES}", "-".join(pairs).upper())
                        .replace("{mac}", mac).replace("{MAC}", mac.upper()))
            handsets.writerow([str(1_000_000 + i), f"Storm {i}", mac, boot["model"]])
            cells = [fill(boot["user_agent"])]
            for f in boot["files"]:
                per_phone = any(p in f["file"] for p in ("{mac}", "{MAC}", "{DASHES}"))
                if f["answer"] == "quiet":
                    kind, status = "quiet", 404
                else:
                    kind, status = ("phone" if per_phone else "common"), 200
                if own_only and kind != "phone":
                    continue
                cells.append(f"{kind} {status} {prefix}{fill(f['file'])}")
            pf.write("\t".join(cells) + "\n")
    print(f"{n} phones over {len(generations)} boot generations", file=sys.stderr)


if __name__ == "__main__":
    main()
