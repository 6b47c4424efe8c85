#!/usr/bin/env python3
"""sites.py DIR [INVENTORY]: write each fleet host's sites-enabled/<service>.conf
from the certbot_domains/certbot_services the inventory gives that host.

The host variables come from `certfleet inventory -i INV --list` when that
command works (exit 0, JSON with _meta), else from `ansible-inventory`, which
applies the same precedence rules. INVENTORY defaults to DIR/inventory/hosts.ini (Ansible skips *.ini files
when -i names a directory, so the file itself is the inventory).
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen import write_sites  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def hostvars(inv):
    certfleet = os.environ.get("CERTFLEET") or os.path.join(REPO, "certfleet")
    tried = []
    for cmd in ([certfleet, "inventory", "-i", inv, "--list"],
                ["ansible-inventory", "-i", inv, "--list"]):
        try:
            env = dict(os.environ, ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
                       ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_NOCOLOR="1")
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
            if r.returncode == 0:
                data = json.loads(r.stdout)
                return data["_meta"]["hostvars"], cmd[0]
            tried.append("%s: exit %d %s" % (cmd[0], r.returncode, r.stderr.strip()[:200]))
        except (OSError, ValueError, KeyError, subprocess.TimeoutExpired) as e:
            tried.append("%s: %s" % (cmd[0], e))
    sys.exit("fleet sites: cannot read inventory '%s': %s" % (inv, "; ".join(tried)))


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    d = os.path.abspath(sys.argv[1])
    inv = sys.argv[2] if len(sys.argv) == 3 else os.path.join(d, "inventory", "hosts.ini")
    with open(os.path.join(d, "fleet.json")) as f:
        fleet = json.load(f)
    hv, source = hostvars(inv)
    n = 0
    for h in fleet["hosts"]:
        v = hv.get(h["name"])
        if v is None:
            continue
        doms, svcs = v.get("certbot_domains") or [], v.get("certbot_services") or []
        if v.get("certbot_enabled") in (False, "false", "no"):
            doms, svcs = [], []
        sites = write_sites(h["root"], h["name"], h["addr"], doms, svcs)
        n += len(sites)
    print("fleet: %d site(s) written from %s (vars via %s)" % (n, inv, os.path.basename(source)))


if __name__ == "__main__":
    main()
