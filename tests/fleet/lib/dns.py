#!/usr/bin/env python3
"""A records in pebble-challtestsrv through its management API.

dns.py DIR add NAME ADDR   add ADDR to NAME's A records
dns.py DIR del NAME [ADDR] remove ADDR (or every address) from NAME
dns.py DIR load FILE       add every "NAME ADDR" line of FILE
dns.py DIR query NAME      ask the mock DNS server (UDP) and print the A answers

The wanted state is kept in DIR/dns/records ("name addr" lines) because
challtestsrv's /add-a appends to a name's address list and /clear-a
drops it: every change clears the name and re-sends its complete list.
"""
import http.client
import json
import os
import random
import socket
import struct
import sys


def env(d):
    with open(os.path.join(d, "fleet.json")) as f:
        return json.load(f)


def records_path(d):
    return os.path.join(d, "dns", "records")


def load(d):
    out = []
    try:
        with open(records_path(d)) as f:
            for line in f:
                p = line.split()
                if len(p) == 2 and tuple(p) not in out:
                    out.append(tuple(p))
    except FileNotFoundError:
        pass
    return out


def save(d, recs):
    os.makedirs(os.path.join(d, "dns"), exist_ok=True)
    tmp = records_path(d) + ".tmp"
    with open(tmp, "w") as f:
        f.write("".join("%s %s\n" % r for r in recs))
    os.replace(tmp, records_path(d))


def fqdn(n):
    return n if n.endswith(".") else n + "."


def push(conn, names, recs):
    for n in names:
        addrs = [a for (m, a) in recs if m == n]
        calls = [("/clear-a", {"host": fqdn(n)})]
        if addrs:
            calls.append(("/add-a", {"host": fqdn(n), "addresses": addrs}))
        for path, body in calls:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                sys.exit("fleet dns: challtestsrv answered %d to %s for %s" % (r.status, path, n))


def query(server, port, name):
    """A minimal RFC 1035 A query over UDP; returns the IPv4 answers."""
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
    q += struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(q, (server, port))
    data, _ = s.recvfrom(4096)
    rid, flags, qd, an = struct.unpack(">HHHH", data[:8])
    if rid != qid:
        raise RuntimeError("dns: id mismatch")
    off = 12
    for _ in range(qd):
        while data[off] != 0:
            off += 1 + data[off]
        off += 5
    out = []
    for _ in range(an):
        if data[off] & 0xC0 == 0xC0:
            off += 2
        else:
            while data[off] != 0:
                off += 1 + data[off]
            off += 1
        typ, cls, ttl, rdlen = struct.unpack(">HHIH", data[off:off + 10])
        off += 10
        if typ == 1 and rdlen == 4:
            out.append(socket.inet_ntoa(data[off:off + 4]))
        off += rdlen
    return out


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    d, op, args = os.path.abspath(sys.argv[1]), sys.argv[2], sys.argv[3:]
    P = env(d)["port_base"]
    if op == "query":
        print(" ".join(query("127.0.0.1", P + 2, args[0])))
        return
    recs = load(d)
    if op == "add" and len(args) == 2:
        new = [(args[0].rstrip("."), args[1])]
    elif op == "load" and len(args) == 1:
        with open(args[0]) as f:
            new = [tuple(l.split()) for l in f if len(l.split()) == 2]
    elif op == "del" and len(args) in (1, 2):
        n = args[0].rstrip(".")
        recs = [r for r in recs if not (r[0] == n and (len(args) == 1 or r[1] == args[1]))]
        new = []
        touched = [n]
    else:
        sys.exit(__doc__)
    if op != "del":
        for r in new:
            if r not in recs:
                recs.append(r)
        touched = sorted({r[0] for r in new})
    conn = http.client.HTTPConnection("127.0.0.1", P + 3, timeout=10)
    push(conn, touched, recs)
    save(d, recs)


if __name__ == "__main__":
    main()
