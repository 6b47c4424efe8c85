#!/usr/bin/env python3
"""A hostile ACME server for certfleet's tests (plain HTTP, loopback only).

usage: fake_acme.py ADDR PORT

Every scenario has its own directory at http://ADDR:PORT/<scenario>/dir;
JWS bodies are accepted without checking (the point is what the server
sends back):
  badtoken-slash   challenge token containing '/'
  badtoken-dots    challenge token containing '..'
  big              newOrder answers with a 2 MiB body
  badjson          newOrder answers with invalid JSON
  badstatus        order status the RFC does not know
  ratelimit        newOrder: 429 rateLimited with Retry-After: 1, always
  ari              directory with renewalInfo; GET renewalInfo/<id> -> window
  foreign-authz    authorization for a domain that was not ordered
"""
import itertools
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

counter = itertools.count()
ari_requests = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("fake_acme: " + (fmt % args) + "\n")

    def base(self, sc):
        return "http://%s:%d/%s" % (self.server.server_address[0], self.server.server_address[1], sc)

    def send(self, code, body, ctype="application/json", extra=None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Replay-Nonce", "nonce%08dAAAAAAAAAAAAAAAA" % next(counter))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_HEAD(self):
        self.send(200, b"")

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        sc = parts[0]
        b = self.base(sc)
        if len(parts) >= 2 and parts[1] == "dir":
            d = {"newNonce": b + "/nonce", "newAccount": b + "/acct",
                 "newOrder": b + "/order", "keyChange": b + "/kc"}
            if sc == "ari":
                d["renewalInfo"] = b + "/renewal-info"
            return self.send(200, d)
        if sc == "ari" and len(parts) == 3 and parts[1] == "renewal-info":
            ari_requests.append(parts[2])
            sys.stderr.write("fake_acme: ari certid %s\n" % parts[2])
            return self.send(200, {"suggestedWindow": {"start": "2030-01-02T03:04:05Z",
                                                       "end": "2030-01-03T03:04:05.5Z"}},
                             extra={"Retry-After": "21600"})
        self.send(404, {"type": "urn:ietf:params:acme:error:malformed", "detail": "no such thing"},
                  "application/problem+json")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n)
        try:
            jws = json.loads(raw)
        except ValueError:
            return self.send(400, {"type": "urn:ietf:params:acme:error:malformed"})
        parts = self.path.strip("/").split("/")
        sc, what = parts[0], parts[1] if len(parts) > 1 else ""
        b = self.base(sc)
        if what == "acct":
            return self.send(201, {"status": "valid"}, extra={"Location": b + "/acct/1"})
        if what == "order" and len(parts) == 2:
            if sc == "big":
                return self.send(201, b"{" + b" " * (2 * 1024 * 1024) + b"}",
                                 extra={"Location": b + "/order/1"})
            if sc == "badjson":
                return self.send(201, b"{\"status\": \"pending\", oops", extra={"Location": b + "/order/1"})
            if sc == "ratelimit":
                return self.send(429, {"type": "urn:ietf:params:acme:error:rateLimited",
                                       "detail": "too many new orders recently"},
                                 "application/problem+json", {"Retry-After": "1"})
            status = "weird" if sc == "badstatus" else "pending"
            return self.send(201, {"status": status, "finalize": b + "/finalize/1",
                                   "authorizations": [b + "/authz/1"],
                                   "identifiers": [{"type": "dns", "value": "h1.fleet.test"}]},
                             extra={"Location": b + "/order/1"})
        if what == "authz":
            token = {"badtoken-slash": "abcdefghijklmnopqrstuvwxyz/etc/passwd",
                     "badtoken-dots": "..abcdefghijklmnopqrstuvwxyz0123"}.get(sc, "A" * 43)
            ident = "evil.example.com" if sc == "foreign-authz" else "h1.fleet.test"
            return self.send(200, {"status": "pending",
                                   "identifier": {"type": "dns", "value": ident},
                                   "challenges": [{"type": "http-01", "url": b + "/chall/1",
                                                   "token": token, "status": "pending"}]})
        self.send(404, {"type": "urn:ietf:params:acme:error:malformed", "detail": "not here"},
                  "application/problem+json")


def main():
    addr, port = sys.argv[1], int(sys.argv[2])
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer((addr, port), Handler).serve_forever()


if __name__ == "__main__":
    main()
