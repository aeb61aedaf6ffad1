"""A WebSocket echo server for end-to-end tests (library: ``websockets``).

    ws_echo_server.py --listen 127.0.0.1:0 [--name NAME] [--subprotocol P]...
                      [--tls-cert PEM --tls-key PEM] [--corrupt-at K] [--exit-on-stdin-eof]

Prints ``listening on HOST:PORT`` on stdout once it accepts connections, then echoes every
text and binary message back unchanged on the connection it came from.

One text message is special: ``__whoami__`` is answered with a JSON object describing the
connection as this server saw it, so a test can check what a proxy forwarded:

    {"server": NAME, "path": "/chat?room=1", "host": "shop.example.com",
     "x_forwarded_for": "127.0.0.1", "x_forwarded_proto": "http", "x_forwarded_host": null,
     "headers": [["Host", "..."], ...], "peer": "127.0.0.1:40212",
     "subprotocol": null, "tls": false}

(``x_forwarded_*`` are null when the header was absent, and comma-joined when it came more
than once.) With ``--tls-cert``/``--tls-key`` it speaks wss, for TLS upstreams.

``--corrupt-at K`` makes it a faulty echo, for testing the tests: on every connection, the
K-th echoed message (counting from 0, not counting ``__whoami__``) comes back with its last
character or byte changed.
"""

import argparse
import asyncio
import json
import ssl

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosedError

from common import announce, exit_when_stdin_closes, log, parse_listen

WHOAMI = "__whoami__"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT; port 0 picks a free one")
    parser.add_argument("--name", default="ws", help="reported as `server` by __whoami__")
    parser.add_argument(
        "--subprotocol",
        action="append",
        default=None,
        help="a subprotocol to accept when the client offers it (repeatable)",
    )
    parser.add_argument("--tls-cert", help="certificate chain PEM: serve wss")
    parser.add_argument("--tls-key", help="private key PEM for --tls-cert")
    parser.add_argument(
        "--max-size",
        type=int,
        default=64 * 1024 * 1024,
        help="largest message accepted, in bytes",
    )
    parser.add_argument("--corrupt-at", type=int, help="echo the K-th message altered")
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    args = parser.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.exit_on_stdin_eof:
        exit_when_stdin_closes()
    asyncio.run(run(args))


async def run(args):
    host, port = parse_listen(args.listen)
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)

    async def handle(connection):
        await echo(connection, args.name, tls is not None, args.corrupt_at)

    async with serve(
        handle,
        host,
        port,
        ssl=tls,
        subprotocols=args.subprotocol,
        max_size=args.max_size,
    ) as server:
        bound = server.sockets[0].getsockname()
        announce(bound[0], bound[1])
        await server.serve_forever()


async def echo(connection, name, tls, corrupt_at):
    request = connection.request
    peer = "{}:{}".format(*connection.remote_address[:2])
    log(f"{name}: connection from {peer}: {request.path} Host: {request.headers.get('Host')}")
    received = 0
    try:
        async for message in connection:
            if message == WHOAMI:
                await connection.send(json.dumps(whoami(connection, name, peer, tls)))
            else:
                echo = corrupted(message) if received == corrupt_at else message
                # send() picks the frame type from the value: str is text, bytes binary.
                await connection.send(echo)
                received += 1
    except ConnectionClosedError as error:
        # The peer (or a proxy in between) dropped the connection without a close frame.
        log(f"{name}: connection from {peer} broken after {received} echoes: {error}")
        return
    log(f"{name}: connection from {peer} closed after {received} echoes")


def corrupted(message):
    if isinstance(message, bytes):
        return message[:-1] + bytes([(message[-1] + 1) % 256]) if message else b"?"
    return message[:-1] + ("?" if message[-1:] != "?" else "!")


def whoami(connection, name, peer, tls):
    headers = connection.request.headers

    def joined(header):
        values = headers.get_all(header)
        return ", ".join(values) if values else None

    return {
        "server": name,
        "path": connection.request.path,
        "host": joined("Host"),
        "x_forwarded_for": joined("X-Forwarded-For"),
        "x_forwarded_proto": joined("X-Forwarded-Proto"),
        "x_forwarded_host": joined("X-Forwarded-Host"),
        "headers": [[key, value] for key, value in headers.raw_items()],
        "peer": peer,
        "subprotocol": connection.subprotocol,
        "tls": tls,
    }


if __name__ == "__main__":
    main()
