#!/usr/bin/env python3
"""Helpers for tests/fleet/demo.

demo.py names INVENTORY        host names, comma-separated, inventory order
demo.py dns INVENTORY DIR      "domain address" for every domain of every
                               certificate: the host named like the domain's
                               first label when it serves the certificate
                               (app3.example.com -> app3), else the first
                               host that serves it
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sites import hostvars  # noqa: E402


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    op, inv = sys.argv[1], sys.argv[2]
    hv, _ = hostvars(inv)
    if op == "names":
        print(",".join(hv.keys()))
        return
    if op != "dns" or len(sys.argv) != 4:
        sys.exit(__doc__)
    with open(os.path.join(sys.argv[3], "fleet.json")) as f:
        addr = {h["name"]: h["addr"] for h in json.load(f)["hosts"]}
    servers = {}  # domain -> hosts serving a certificate with it
    for host, v in hv.items():
        if v.get("certbot_enabled") in (False, "false", "no") or host not in addr:
            continue
        for d in v.get("certbot_domains") or []:
            for dom in d.get("domains") or []:
                servers.setdefault(dom, []).append(host)
    for dom, hosts in servers.items():
        label = dom.split(".")[0]
        pick = label if label in hosts else hosts[0]
        print(dom, addr[pick])


if __name__ == "__main__":
    main()
