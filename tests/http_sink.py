#!/usr/bin/python3
"""A webhook receiver for the alert tests.

usage: http_sink.py ADDR PORT OUTDIR [STATUS]

Each POST body is written to OUTDIR/N.json (headers to OUTDIR/N.hdr); the
answer is STATUS (default 200).  Runs until SIGTERM.
"""
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

addr, port, outdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
status = int(sys.argv[4]) if len(sys.argv) > 4 else 200
os.makedirs(outdir, exist_ok=True)
count = [0]


class H(BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        count[0] += 1
        base = os.path.join(outdir, "%d" % count[0])
        with open(base + ".hdr", "w") as f:
            f.write("%s %s\n%s" % (self.command, self.path, self.headers))
        with open(base + ".json.tmp", "wb") as f:
            f.write(body)
        os.rename(base + ".json.tmp", base + ".json")
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a):
        pass


HTTPServer((addr, port), H).serve_forever()
