#!/usr/bin/python3
"""A real SMTP server for the alert tests (aiosmtpd, Debian python3-aiosmtpd).

usage: smtp_sink.py ADDR PORT OUTDIR [--starttls CERT KEY] [--auth USER PASSWORD]

Each accepted message is written to OUTDIR/N.eml (the raw DATA) and
OUTDIR/N.env (MAIL FROM and RCPT TO lines).  With --starttls the server
requires STARTTLS before MAIL; with --auth it requires AUTH (after TLS).
Runs until SIGTERM.
"""
import os
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

addr, port, outdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
args = sys.argv[4:]
tls = None
auth = None
while args:
    if args[0] == "--starttls":
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args[1], args[2])
        args = args[3:]
    elif args[0] == "--auth":
        auth = (args[1].encode(), args[2].encode())
        args = args[3:]
    else:
        sys.exit("unknown argument " + args[0])

os.makedirs(outdir, exist_ok=True)
lock = threading.Lock()
count = [0]


class Handler:
    async def handle_DATA(self, server, session, envelope):
        with lock:
            count[0] += 1
            n = count[0]
        base = os.path.join(outdir, "%d" % n)
        with open(base + ".env.tmp", "w") as f:
            f.write("MAIL FROM: %s\n" % envelope.mail_from)
            for r in envelope.rcpt_tos:
                f.write("RCPT TO: %s\n" % r)
            f.write("TLS: %s\n" % ("yes" if session.ssl else "no"))
            ad = getattr(session, "auth_data", None)
            f.write("AUTH: %s\n" % (ad.login.decode() if isinstance(ad, LoginPassword) else "-"))
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(base + ".env.tmp", base + ".env")
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 Message accepted for delivery"


def authenticator(server, session, envelope, mechanism, auth_data):
    if isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == auth:
        return AuthResult(success=True, auth_data=auth_data)
    return AuthResult(success=False, handled=False)


kw = {}
if tls:
    kw.update(tls_context=tls, require_starttls=True)
if auth:
    kw.update(authenticator=authenticator, auth_required=True,
              auth_require_tls=bool(tls))
ctl = Controller(Handler(), hostname=addr, port=port, **kw)
ctl.start()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
signal.signal(signal.SIGINT, lambda *a: stop.set())
stop.wait()
ctl.stop()
