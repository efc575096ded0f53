#!/usr/bin/python3
"""A small SMTP server for storeedge's tests, on Debian's aiosmtpd (python3-aiosmtpd).

aiosmtpd's command line gives plain SMTP and STARTTLS, but neither AUTH nor implicit TLS; this
wraps aiosmtpd.controller.Controller to give all of them:

  --security none      plain SMTP
  --security starttls  STARTTLS offered and required before MAIL (and before AUTH)
  --security tls       implicit TLS from the first byte, as on port 465

With --user and --password the server requires AUTH (PLAIN or LOGIN) before MAIL and refuses
other credentials with 535. Every message accepted is written to --spool as NNNNNN.eml: the
envelope as X-Envelope-From / X-Envelope-To headers, then the message as received. The file
appears whole (written aside, then renamed). The server runs until stdin closes or it gets
SIGTERM, so that it never outlives the test that started it.

Run it with Debian's /usr/bin/python3: the python3 on PATH may be a build without Debian's
modules. tools/testenv.StartSMTPServer drives it.
"""

import argparse
import os
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Spool:
    """Writes each accepted message to a directory."""

    def __init__(self, directory):
        self.directory = directory
        self.lock = threading.Lock()
        self.count = len([n for n in os.listdir(directory) if n.endswith(".eml")])

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            name = "%06d.eml" % self.count
        head = "X-Envelope-From: %s\r\n" % envelope.mail_from
        head += "".join("X-Envelope-To: %s\r\n" % rcpt for rcpt in envelope.rcpt_tos)
        if session.auth_data is not None:
            head += "X-Authenticated-As: %s\r\n" % session.auth_data
        body = envelope.original_content or envelope.content
        if isinstance(body, str):
            body = body.encode("utf-8")
        tmp = os.path.join(self.directory, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(head.encode("utf-8") + body)
        os.rename(tmp, os.path.join(self.directory, name))
        return "250 Message accepted for delivery"


def authenticator(user, password, echo):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode("utf-8")
            and auth_data.password == password.encode("utf-8")
        )
        if not ok and echo and isinstance(auth_data, LoginPassword):
            # As some servers do: the refusal repeats the credentials it was given.
            return AuthResult(success=False, handled=False, message="535 5.7.8 Authentication failed for %s %s" % (
                auth_data.login.decode("utf-8", "replace"), auth_data.password.decode("utf-8", "replace")))
        if not ok:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=user)

    return check


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--spool", required=True)
    p.add_argument("--security", choices=["none", "starttls", "tls"], default="none")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--echo-refused-login", action="store_true", help="repeat refused credentials in the 535 answer")
    a = p.parse_args()

    kwargs = {"server_hostname": "smtpd.test"}
    if a.security != "none":
        if not (a.cert and a.key):
            p.error("--security %s needs --cert and --key" % a.security)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
        if a.security == "starttls":
            kwargs.update(tls_context=ctx, require_starttls=True)
        else:
            kwargs["ssl_context"] = ctx
    if (a.user is None) != (a.password is None):
        p.error("--user and --password go together")
    if a.user is not None:
        kwargs.update(
            authenticator=authenticator(a.user, a.password, a.echo_refused_login),
            auth_required=True,
            # Implicit TLS is TLS already; aiosmtpd only counts STARTTLS as such.
            auth_require_tls=(a.security == "starttls"),
        )

    os.makedirs(a.spool, exist_ok=True)
    controller = Controller(Spool(a.spool), hostname=a.host, port=a.port, **kwargs)
    controller.start()
    print("smtpd: listening on %s:%d (%s)" % (a.host, a.port, a.security), flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    stop.wait()
    controller.stop()
    # The stdin watcher may still be blocked in a read: leave without waiting for it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
