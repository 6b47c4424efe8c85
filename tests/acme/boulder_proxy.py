#!/usr/bin/env python3
"""A reverse proxy in front of the real pebble that adds what Let's
Encrypt's server (Boulder) documents and pebble 2.4 does not do.

usage: boulder_proxy.py PORT UPSTREAM CA_FILE CERT KEY

Listens on https://127.0.0.1:PORT (loopback only, TLS with CERT and KEY,
e.g. pebble's own, so clients trust it with the same CA_FILE) and forwards
every request to UPSTREAM (pebble's https://127.0.0.1:P), verifying pebble
with CA_FILE.  The Host header is kept, so pebble builds every URL
(directory, orders, the JWS "url" it checks) on the proxy's origin: the
client signs for the proxy's URLs and pebble checks exactly those.  Everything
pebble does (nonces, JWS, accounts, orders, validation, issuance) stays
pebble's; the proxy only adds answers of its own where a switch says so.

Switches, set per test with GET /_ctl/set?NAME=VALUE&... (all off at start,
GET /_ctl/reset turns them off and clears the log; what the CA knows, the
certificates it issued and which of them are replaced, stays):

  ari=1         RFC 9773 §3: the directory advertises "renewalInfo"
                (https://127.0.0.1:PORT/renewal-info), and GET
                renewal-info/<certID> (§4.1 certID = base64url(AKI keyId)
                "." base64url(serial DER)) answers a suggestedWindow (§4.2)
                with Retry-After: 21600, Boulder's six hours.  The window is
                the last third of the certificate's life; with
                ari_now=1 it is open now.  An unknown AKI is 404 malformed,
                as Boulder's parseARICertID answers "path contained an
                Authority Key Identifier that did not match a known issuer".
  replaces=1    RFC 9773 §5 as Boulder's wfe2 validateReplacementOrder
                enforces it on newOrder's "replaces": an unknown issuer is
                404 malformed, an unknown serial 404, a certificate issued
                to another account 403 unauthorized ("requester account did
                not request the certificate being replaced"), and a
                certificate named by an order that was already finalized
                409 alreadyReplaced ("... which already has a replacement
                order").  The certificate counts as replaced once an order
                naming it is finalized.
  dl_fail=N     the next N certificate downloads answer 500 serverInternal
                (RFC 8555 §6.7), after finalize: the lost download of a
                replacement that leaves its predecessor replaced.
  ratelimit=S   newOrder answers 429 urn:ietf:params:acme:error:rateLimited
                with Retry-After: S (RFC 8555 §6.6; Let's Encrypt's rate
                limit documentation: "the Retry-After header ... indicates
                when you can retry").
  profiles=1    the directory's meta.profiles (Let's Encrypt's profiles
                documentation: classic, tlsserver, shortlived).

GET /_ctl/log returns what the proxy saw, as JSON: every newOrder
({identifiers, replaces, kid, status}), every renewalInfo query, and the
count of requests per kind.
"""
import base64
import datetime
import http.client
import json
import ssl
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509

PORT = int(sys.argv[1])
UPSTREAM = urllib.parse.urlsplit(sys.argv[2])
CTX = ssl.create_default_context(cafile=sys.argv[3])

lock = threading.RLock()  # sw() is also called with it held
HOP = {"connection", "transfer-encoding", "content-length", "keep-alive"}


def fresh():
    return {
        "switch": {},
        "orders": [],  # every newOrder seen
        "ari": [],  # every renewalInfo query: [certID, status]
        "counts": {},
        "pending": {},  # order path -> {"replaces": serial, "finalize": path}
        "replaced": [],  # serials whose replacement order was finalized
        "issued": {},  # serial (str of int) -> {"kid", "aki", "nb", "na"}
    }


state = fresh()


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jws_parts(body):
    """(protected header, payload) of a flattened JWS; no checking: pebble
    verifies the signature of everything it is given."""
    try:
        j = json.loads(body)
        prot = json.loads(b64d(j["protected"]))
        pl = b64d(j["payload"]) if j.get("payload") else b""
        return prot, json.loads(pl) if pl else None
    except (ValueError, KeyError, TypeError):
        return {}, None


def certid(cid):
    """(AKI hex, serial as a decimal string) of an ARI certID, or None."""
    try:
        a, s = cid.split(".")
        return b64d(a).hex(), str(int.from_bytes(b64d(s), "big"))
    except (ValueError, TypeError):
        return None


def count(kind):
    state["counts"][kind] = state["counts"].get(kind, 0) + 1


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("proxy: " + (fmt % args) + "\n")

    def base(self):
        return "https://" + self.headers.get("Host", "127.0.0.1:%d" % PORT)

    def reply(self, code, body, ctype="application/json", headers=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def problem(self, code, ptype, detail, headers=()):
        # a nonce from pebble keeps the client's pool going, as Boulder
        # sends Replay-Nonce with every answer (RFC 8555 §6.5)
        st, hdrs, _ = self.upstream("HEAD", "/nonce-plz", b"")
        nonce = [("Replay-Nonce", v) for k, v in hdrs if k.lower() == "replay-nonce"]
        self.reply(code, {"type": "urn:ietf:params:acme:error:" + ptype, "detail": detail,
                          "status": code}, "application/problem+json", list(headers) + nonce)

    def upstream(self, method, path, body):
        c = http.client.HTTPSConnection(UPSTREAM.hostname, UPSTREAM.port, context=CTX, timeout=30)
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        c.request(method, path, body=body if method != "HEAD" else None, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        out = (r.status, r.getheaders(), data)
        c.close()
        return out

    def forward(self, body=b""):
        st, hdrs, data = self.upstream(self.command, self.path, body)
        self.send_response(st)
        for k, v in hdrs:
            if k.lower() not in HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        return st, hdrs, data

    # --- control
    def control(self):
        u = urllib.parse.urlsplit(self.path)
        with lock:
            if u.path == "/_ctl/set":
                for k, v in urllib.parse.parse_qsl(u.query):
                    state["switch"][k] = v
            elif u.path == "/_ctl/reset":
                for k in ("switch", "orders", "ari", "counts"):
                    state[k] = fresh()[k]
            out = {k: state[k] for k in ("switch", "orders", "ari", "counts", "replaced")}
        self.reply(200, out)

    def sw(self, name):
        with lock:
            return state["switch"].get(name, "")

    # --- GET: directory, renewalInfo, the rest forwarded
    def do_HEAD(self):
        self.forward()

    def do_GET(self):
        if self.path.startswith("/_ctl/"):
            return self.control()
        if self.path.startswith("/renewal-info/"):
            return self.renewal_info(self.path[len("/renewal-info/"):])
        if self.path != "/dir":
            self.forward()
            return
        st, hdrs, data = self.upstream("GET", "/dir", b"")
        d = json.loads(data)
        if self.sw("ari") == "1":
            d["renewalInfo"] = self.base() + "/renewal-info"
        if self.sw("profiles") == "1":
            d.setdefault("meta", {})["profiles"] = {
                "classic": "https://letsencrypt.org/docs/profiles#classic",
                "tlsserver": "https://letsencrypt.org/docs/profiles#tlsserver",
                "shortlived": "https://letsencrypt.org/docs/profiles#shortlived",
            }
        self.reply(st, d)

    def renewal_info(self, cid):
        with lock:
            count("renewalInfo")
            ok = self.sw("ari") == "1"
            parsed = certid(cid)
            known_aki = parsed and any(i["aki"] == parsed[0] for i in state["issued"].values())
            cert = state["issued"].get(parsed[1]) if parsed else None
            state["ari"].append([cid, 200 if ok and cert else 404])
        if not ok:
            return self.reply(404, b"not found", "text/plain")
        if not known_aki:
            return self.problem(404, "malformed", "path contained an Authority Key Identifier "
                                "that did not match a known issuer")
        if not cert:
            return self.problem(404, "malformed", "requested certificate was not found")
        if self.sw("ari_now") == "1":
            now = datetime.datetime.now(datetime.timezone.utc)
            s, e = now - datetime.timedelta(hours=1), now + datetime.timedelta(hours=1)
        else:
            life = cert["na"] - cert["nb"]
            s = cert["nb"] + life * 2 / 3
            e = s + datetime.timedelta(days=1)
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        win = {"suggestedWindow": {"start": s.strftime(fmt), "end": e.strftime(fmt)}}
        if self.sw("ari_explain"):
            win["explanationURL"] = self.sw("ari_explain")
        self.reply(200, win, headers=[("Retry-After", "21600")])

    # --- POST: newOrder rules, finalize bookkeeping, downloads
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        prot, payload = jws_parts(body)
        kid = prot.get("kid")
        path = urllib.parse.urlsplit(self.path).path
        if path == "/order-plz":
            return self.new_order(body, kid, payload or {})
        with lock:
            pend = [p for p, o in state["pending"].items() if o["finalize"] == path]
        if pend:
            with lock:
                count("finalize")
            st, _, _ = self.forward(body)
            if st < 300:
                with lock:
                    for p in pend:
                        state["replaced"].append(state["pending"].pop(p)["replaces"])
            return
        if path.startswith("/certZ/"):
            with lock:
                count("download")
                n = int(state["switch"].get("dl_fail", "0") or 0)
                if n > 0:
                    state["switch"]["dl_fail"] = str(n - 1)
            if n > 0:
                return self.problem(500, "serverInternal", "transient storage error")
            st, hdrs, data = self.forward(body)
            if st == 200:
                self.remember(data, kid)
            return
        self.forward(body)

    def remember(self, pem, kid):
        try:
            leaf = x509.load_pem_x509_certificates(pem)[0]
            aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        except (ValueError, x509.ExtensionNotFound):
            return
        with lock:
            state["issued"][str(leaf.serial_number)] = {
                "kid": kid, "aki": aki.value.key_identifier.hex(),
                "nb": leaf.not_valid_before_utc, "na": leaf.not_valid_after_utc}

    def new_order(self, body, kid, payload):
        rep = payload.get("replaces")
        entry = {"identifiers": [i.get("value") for i in payload.get("identifiers", [])],
                 "replaces": rep, "kid": kid, "status": 0}
        with lock:
            count("newOrder")
            state["orders"].append(entry)
        ra = self.sw("ratelimit")
        if ra:
            entry["status"] = 429
            return self.problem(429, "rateLimited",
                                "too many new orders (300) from this account in the last 3h0m0s",
                                [("Retry-After", ra)])
        serial = None
        if rep and self.sw("replaces") == "1":
            parsed = certid(rep)
            with lock:
                issuers = {i["aki"] for i in state["issued"].values()}
                cert = state["issued"].get(parsed[1]) if parsed else None
                replaced = parsed and parsed[1] in state["replaced"]
            why = None
            if not parsed or parsed[0] not in issuers:
                why = (404, "malformed", "path contained an Authority Key Identifier that did "
                       "not match a known issuer")
            elif not cert:
                why = (404, "malformed", "requested certificate was not found")
            elif cert["kid"] != kid:
                why = (403, "unauthorized",
                       "requester account did not request the certificate being replaced")
            elif replaced:
                why = (409, "alreadyReplaced",
                       "cannot indicate an order replaces certificate with serial %s, which "
                       "already has a replacement order" % format(int(parsed[1]), "x"))
            if why:
                entry["status"] = why[0]
                return self.problem(*why)
            serial = parsed[1]
        st, hdrs, data = self.forward(body)
        entry["status"] = st
        if serial and st == 201:
            loc = dict((k.lower(), v) for k, v in hdrs).get("location", "")
            fin = urllib.parse.urlsplit(json.loads(data).get("finalize", "")).path
            with lock:
                state["pending"][urllib.parse.urlsplit(loc).path] = {"replaces": serial,
                                                                     "finalize": fin}


ThreadingHTTPServer.daemon_threads = True
srv = ThreadingHTTPServer(("127.0.0.1", PORT), H)
tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain(sys.argv[4], sys.argv[5])
srv.socket = tls.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
