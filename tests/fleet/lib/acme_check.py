#!/usr/bin/env python3
"""acme_check.py DIRECTORY_URL CA_BUNDLE OUT_PREFIX WEBROOT DOMAIN...

A small reference ACME (RFC 8555) HTTP-01 client for testing the fleet
itself, independent of certfleet: it orders one certificate for DOMAIN...,
writes each token under WEBROOT/.well-known/acme-challenge/ (a fleet host's
webroot, straight on the file system), lets pebble validate it over HTTP
(pebble resolves the domain through challtestsrv and fetches
http://<domain>:5002/...), finalizes and writes OUT_PREFIX.key (EC P-256),
OUT_PREFIX.fullchain.pem and OUT_PREFIX.chain.pem. badNonce answers are
retried. Exits 1 with the server's problem document on failure.
"""
import base64
import hashlib
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Client:
    def __init__(self, directory, cafile):
        self.ctx = ssl.create_default_context(cafile=cafile)
        self.dir = self.get(directory)
        self.key = ec.generate_private_key(ec.SECP256R1())
        n = self.key.public_key().public_numbers()
        self.jwk = {"crv": "P-256", "kty": "EC",
                    "x": b64(n.x.to_bytes(32, "big")), "y": b64(n.y.to_bytes(32, "big"))}
        self.thumb = b64(hashlib.sha256(json.dumps(
            self.jwk, sort_keys=True, separators=(",", ":")).encode()).digest())
        self.kid = None
        self.nonce = None

    def get(self, url):
        with urllib.request.urlopen(url, context=self.ctx, timeout=10) as r:
            return json.load(r)

    def new_nonce(self):
        req = urllib.request.Request(self.dir["newNonce"], method="HEAD")
        with urllib.request.urlopen(req, context=self.ctx, timeout=10) as r:
            return r.headers["Replay-Nonce"]

    def post(self, url, payload):
        """POST a JWS (payload None = POST-as-GET); returns (headers, body bytes)."""
        for _ in range(10):
            nonce = self.nonce or self.new_nonce()
            self.nonce = None
            prot = {"alg": "ES256", "nonce": nonce, "url": url}
            if self.kid:
                prot["kid"] = self.kid
            else:
                prot["jwk"] = self.jwk
            p64 = b64(json.dumps(prot).encode())
            pl64 = "" if payload is None else b64(json.dumps(payload).encode())
            r, s = decode_dss_signature(self.key.sign(
                ("%s.%s" % (p64, pl64)).encode(), ec.ECDSA(hashes.SHA256())))
            body = json.dumps({"protected": p64, "payload": pl64,
                               "signature": b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))})
            req = urllib.request.Request(url, data=body.encode(), method="POST",
                                         headers={"Content-Type": "application/jose+json"})
            try:
                with urllib.request.urlopen(req, context=self.ctx, timeout=20) as resp:
                    self.nonce = resp.headers.get("Replay-Nonce")
                    return resp.headers, resp.read()
            except urllib.error.HTTPError as e:
                self.nonce = e.headers.get("Replay-Nonce")
                doc = e.read()
                if b"badNonce" in doc:
                    continue
                sys.exit("acme_check: %s -> %d %s" % (url, e.code, doc.decode(errors="replace")))
        sys.exit("acme_check: too many badNonce answers")

    def poll(self, url, want, bad=("invalid",), timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            _, b = self.post(url, None)
            obj = json.loads(b)
            if obj["status"] in want:
                return obj
            if obj["status"] in bad or time.monotonic() > deadline:
                sys.exit("acme_check: %s is %s: %s" % (url, obj["status"], json.dumps(obj)))
            time.sleep(0.2)


def main():
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    directory, cafile, out, webroot = sys.argv[1:5]
    domains = sys.argv[5:]
    c = Client(directory, cafile)
    h, _ = c.post(c.dir["newAccount"], {"termsOfServiceAgreed": True})
    c.kid = h["Location"]
    h, b = c.post(c.dir["newOrder"], {"identifiers": [{"type": "dns", "value": d} for d in domains]})
    order_url, order = h["Location"], json.loads(b)
    tokdir = os.path.join(webroot, ".well-known", "acme-challenge")
    os.makedirs(tokdir, exist_ok=True)
    for az_url in order["authorizations"]:
        _, b = c.post(az_url, None)
        az = json.loads(b)
        if az["status"] == "valid":
            continue  # pebble reuses some authorizations
        ch = next(x for x in az["challenges"] if x["type"] == "http-01")
        with open(os.path.join(tokdir, ch["token"]), "w") as f:
            f.write(ch["token"] + "." + c.thumb)
        c.post(ch["url"], {})
        c.poll(az_url, ("valid",))
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domains[0])]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in domains]), False)
           .sign(key, hashes.SHA256()))
    c.post(order["finalize"], {"csr": b64(csr.public_bytes(serialization.Encoding.DER))})
    order = c.poll(order_url, ("valid",))
    _, pem = c.post(order["certificate"], None)
    pem = pem.decode()
    first_end = pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----\n")
    with open(out + ".key", "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with open(out + ".fullchain.pem", "w") as f:
        f.write(pem)
    with open(out + ".chain.pem", "w") as f:
        f.write(pem[first_end:].lstrip())
    print("acme_check: issued %s for %s" % (out + ".fullchain.pem", " ".join(domains)))


if __name__ == "__main__":
    main()
