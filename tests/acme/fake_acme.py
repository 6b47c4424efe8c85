#!/usr/bin/env python3
"""A hostile ACME server for certfleet's tests (plain HTTP, loopback only).

usage: fake_acme.py ADDR PORT [CERT]

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

Scenarios that issue h1.fleet.test (the order is "ready" at once, finalize
answers "processing", the next poll "valid"; the certificate served is the
PEM file CERT, which the test makes for the key the client will use):
  resume-valid     order/1 is valid already: a resumed run just downloads
  resume-gone      every order but order/1 is gone (404)
  resume-other     order/old is a valid order for other names
  flaky            newOrder: one 503 busy; order poll and download: 500,
                   502, 503 without Retry-After, then success
  finalize-lost    the first finalize is taken but answered 500; a resent
                   finalize gets 403 orderNotReady
  dl500            the download always fails with 500
GET /<scenario>/stats returns how often each endpoint was called.

What is modeled, and where it is documented:
  - RFC 8555 §7.1.3 order object, §7.4 finalize answers the order in
    "processing", §7.4.2 certificate as application/pem-certificate-chain;
  - 404 for an order that does not exist or belongs to another account:
    Boulder wfe2/wfe.go GetOrder ("No order for ID", "No order found for
    account ID", both probs.NotFound = malformed, 404);
  - 500 serverInternal (RFC 8555 §6.7), which Let's Encrypt answered under
    load before 2022 and still can on internal errors, and 502/504 from a
    proxy in front of the CA;
  - 503 with Retry-After and a rateLimited "Service busy; retry later."
    document: Let's Encrypt community announcement "New Service Busy
    responses beginning during high load" (2022, status 503 since
    2022-09-26); a bare 503 is what an overloaded load balancer sends;
  - 403 orderNotReady for finalizing an order that is not "ready" (RFC 8555
    §7.4, Boulder wfe2 FinalizeOrder).
"""
import collections
import itertools
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

counter = itertools.count()
ari_requests = []
ISSUING = ("resume-valid", "resume-gone", "resume-other", "flaky", "finalize-lost", "dl500")
lock = threading.Lock()
calls = collections.defaultdict(collections.Counter)  # scenario -> endpoint -> count
finalized = set()  # scenarios whose order/1 was finalized
cert_file = None


def count(sc, what):
    with lock:
        calls[sc][what] += 1
        return calls[sc][what]


def problem(kind, detail):
    return {"type": "urn:ietf:params:acme:error:" + kind, "detail": detail}


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


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
        if len(parts) == 2 and parts[1] == "stats":
            with lock:
                return self.send(200, dict(calls[sc]))
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
        if sc in ISSUING:
            return self.issuing(sc, b, parts[1:])
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


    def order(self, b, status, names=("h1.fleet.test",)):
        """RFC 8555 §7.1.3; expires is required for pending and valid."""
        o = {"status": status, "expires": rfc3339(time.time() + 7 * 86400),
             "identifiers": [{"type": "dns", "value": n} for n in names],
             "authorizations": [b + "/authz/1"], "finalize": b + "/finalize/1"}
        if status == "valid":
            o["certificate"] = b + "/cert/1"
        return o

    def flaky_failure(self, sc, what):
        """The first three calls fail the three ways a CA and its proxies do."""
        n = count(sc, what + "-attempt")
        if sc != "flaky" or n > 3:
            return False
        if n == 1:
            self.send(500, problem("serverInternal", "Failed to retrieve order"),
                      "application/problem+json")
        elif n == 2:
            self.send(502, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        else:
            self.send(503, b"Service Unavailable", "text/plain")
        return True

    def issuing(self, sc, b, path):
        what = path[0]
        if what == "order" and len(path) == 1:
            if sc == "flaky" and count(sc, "newOrder-attempt") == 1:
                return self.send(503, problem("rateLimited", "Service busy; retry later."),
                                 "application/problem+json", {"Retry-After": "1"})
            count(sc, "newOrder")
            return self.send(201, self.order(b, "ready"), extra={"Location": b + "/order/1"})
        if what == "order":
            oid = path[1] if len(path) > 1 else ""
            count(sc, "order/" + oid)
            if sc == "resume-other" and oid == "old":
                return self.send(200, self.order(b, "valid", ("h9.fleet.test",)))
            if oid != "1":
                return self.send(404, problem("malformed", "No order for ID " + oid),
                                 "application/problem+json")
            if self.flaky_failure(sc, "order"):
                return
            done = sc == "resume-valid" or sc in finalized
            return self.send(200, self.order(b, "valid" if done else "ready"))
        if what == "finalize":
            n = count(sc, "finalize")
            already = sc in finalized
            with lock:
                finalized.add(sc)
            if sc == "finalize-lost" and n == 1:
                return self.send(500, problem("serverInternal", "Error finalizing order"),
                                 "application/problem+json")
            if already:
                return self.send(403, problem("orderNotReady",
                                              "Order's status (\"valid\") is not acceptable "
                                              "for finalization"), "application/problem+json")
            return self.send(200, self.order(b, "processing"), extra={"Location": b + "/order/1"})
        if what == "cert":
            count(sc, "cert")
            if sc == "dl500":
                return self.send(500, problem("serverInternal", "Failed to retrieve certificate"),
                                 "application/problem+json")
            if self.flaky_failure(sc, "cert"):
                return
            with open(cert_file, "rb") as f:
                return self.send(200, f.read(), "application/pem-certificate-chain")
        if what == "authz":
            return self.send(200, {"status": "valid",
                                   "identifier": {"type": "dns", "value": "h1.fleet.test"},
                                   "challenges": []})
        self.send(404, problem("malformed", "not here"), "application/problem+json")


def main():
    global cert_file
    addr, port = sys.argv[1], int(sys.argv[2])
    cert_file = sys.argv[3] if len(sys.argv) > 3 else None
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer((addr, port), Handler).serve_forever()


if __name__ == "__main__":
    main()
