#!/usr/bin/env python3
"""An SMTP server with TLS and AUTH for nurture's tests (see crates/testkit/src/tls_smtp.rs).

    tls_smtp.py --mode starttls|implicit --cert PEM --key PEM --user U --password P --dir DIR

Listens on 127.0.0.1 on a port the kernel picks and writes that port to DIR/port once it
accepts connections. `starttls` refuses MAIL before STARTTLS and AUTH before TLS; `implicit`
speaks TLS from the first byte. Every transaction must authenticate (AUTH PLAIN or LOGIN with
U and P). Each accepted message is written to DIR/messages/NNNNNN.msg, atomically:

    mail_from: ADDRESS
    rcpt_to: ADDRESS            (one line per recipient)
    auth: LOGIN                 (the user name that authenticated)
    tls: TLSv1.3                (the protocol of the connection; "none" without TLS)

    <the message content as received, dots unstuffed>

Exits 3 with one line on stderr when aiosmtpd is missing.
"""

import argparse
import asyncio
import os
import ssl
import sys
import warnings

# The implicit-TLS server requires AUTH with auth_require_tls off (see below): not a risk here.
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError:
    sys.stderr.write(
        f"the python module aiosmtpd is missing for {sys.executable}: "
        "run scripts/install-test-deps (scripts/test runs it)\n"
    )
    sys.exit(3)


class Recorder:
    def __init__(self, folder):
        self.folder = folder
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        ssl_object = server.transport.get_extra_info("ssl_object")
        login = session.auth_data.login.decode() if session.auth_data else ""
        head = [f"mail_from: {envelope.mail_from}"]
        head += [f"rcpt_to: {r}" for r in envelope.rcpt_tos]
        head.append(f"auth: {login}")
        head.append(f"tls: {ssl_object.version() if ssl_object else 'none'}")
        body = envelope.original_content or b""
        self.count += 1
        name = os.path.join(self.folder, f"{self.count:06}.msg")
        with open(name + ".tmp", "wb") as f:
            f.write(("\n".join(head) + "\n\n").encode() + body)
        os.rename(name + ".tmp", name)
        return "250 2.0.0 Ok: queued as test"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["starttls", "implicit"], required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--dir", required=True)
    a = p.parse_args()

    folder = os.path.join(a.dir, "messages")
    os.makedirs(folder, exist_ok=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(a.cert, a.key)
    recorder = Recorder(folder)

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == a.user.encode()
            and auth_data.password == a.password.encode()
        )
        # auth_data is what the session keeps (session.auth_data.login, written per message).
        return AuthResult(success=ok, auth_data=auth_data if ok else None)

    async def serve():
        loop = asyncio.get_running_loop()
        implicit = a.mode == "implicit"

        def session():
            return SMTP(
                recorder,
                hostname="localhost",
                loop=loop,
                tls_context=None if implicit else context,
                require_starttls=not implicit,
                authenticator=authenticate,
                auth_required=True,
                # aiosmtpd counts only STARTTLS as TLS; the implicit connection is TLS too.
                auth_require_tls=not implicit,
            )

        server = await loop.create_server(
            session, "127.0.0.1", 0, ssl=context if implicit else None
        )
        port = server.sockets[0].getsockname()[1]
        with open(os.path.join(a.dir, "port.tmp"), "w") as f:
            f.write(f"{port}\n")
        os.rename(os.path.join(a.dir, "port.tmp"), os.path.join(a.dir, "port"))
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
