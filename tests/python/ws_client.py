"""A WebSocket client for end-to-end tests (library: ``websockets``).

    ws_client.py URL --count N [--host HOST] [--cafile PEM] [--server-name NAME]
                 [--pause-at K] [--whoami] [--header 'Name: value']... [--subprotocol P]...
                 [--deflate] [--timeout SECONDS]

Connects to URL (``ws://`` or ``wss://``), sends N messages one at a time and checks that
each comes back identical (same type, same bytes) before sending the next. The messages
cycle through text and binary and through sizes chosen to hit every WebSocket length
encoding (0, 125, 126, 65535, 65536 bytes...) and messages over 64 KiB; their content is
random, so a proxy that drops, reorders, truncates or re-encodes anything is caught.

``--host`` sets the ``Host`` header (the TCP connection still goes to URL's address).
For ``wss://``, ``--cafile`` is the CA to trust and ``--server-name`` the name sent as SNI and
checked against the certificate (default: the ``--host`` name, else URL's host).
``--pause-at K``: once K messages have come back, print ``paused`` on stdout and wait for a
line ``continue`` on stdin before sending the rest, so a test can change the gateway's
configuration while the connection is open. ``--whoami`` asks the echo server to describe
the connection (see ws_echo_server.py) after connecting and again after the pause.
``--deflate`` offers permessage-deflate; by default there is no compression, so frames on
the wire are as large as the messages.

On success exits 0 and prints one JSON line: ``{"sent": N, "echoed": N, "bytes": B}``
(B: the payload bytes sent; plus ``"whoami": [...]`` and ``"subprotocol"`` when asked).
On any failure (handshake refused, TLS error, a mismatched echo, the connection closing,
a timeout) it prints the same line with ``"error"`` (and ``"status"``, the HTTP status,
when the handshake was refused), says why on stderr and exits 1.
"""

import argparse
import asyncio
import json
import random
import ssl
import sys
import urllib.parse

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from common import log, report

WHOAMI = "__whoami__"

# Sizes that hit each WebSocket payload length encoding and its boundaries (7-bit up to 125,
# 16-bit up to 65535, 64-bit beyond), plus a few messages well over 64 KiB. For text they
# count characters; the text has multi-byte UTF-8 in it, so its frames are larger still.
SIZES = [0, 1, 125, 126, 127, 1000, 16_384, 65_535, 65_536, 70_000, 200_000]


class Failure(Exception):
    """Why the run failed, and the HTTP status if the handshake was refused."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="ws://HOST:PORT/PATH or wss://...")
    parser.add_argument("--count", type=int, required=True, help="messages to send")
    parser.add_argument("--host", help="Host header to send instead of URL's")
    parser.add_argument("--cafile", help="CA certificate PEM to trust (wss)")
    parser.add_argument("--server-name", help="TLS server name: SNI and verification (wss)")
    parser.add_argument("--pause-at", type=int, help="pause after this many echoes")
    parser.add_argument("--whoami", action="store_true", help="report the server's view")
    parser.add_argument(
        "--header", action="append", default=[], help="an extra request header, 'Name: value'"
    )
    parser.add_argument(
        "--subprotocol", action="append", default=None, help="a subprotocol to offer"
    )
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds for the handshake and each echo"
    )
    args = parser.parse_args()
    if args.pause_at is not None and not 0 <= args.pause_at <= args.count:
        parser.error("--pause-at must be between 0 and --count")

    progress = {"sent": 0, "echoed": 0, "bytes": 0}
    try:
        asyncio.run(run(args, progress))
    except Failure as failure:
        fail(progress, str(failure), failure.status)
    except ConnectionClosed as closed:
        fail(progress, f"connection closed after {progress['echoed']} echoes: {closed}")
    except InvalidStatus as refused:
        status = refused.response.status_code
        body = (refused.response.body or b"").decode("utf-8", "replace").strip()[:200]
        fail(progress, f"handshake refused: HTTP {status}: {body}", status)
    except InvalidHandshake as invalid:
        fail(progress, f"invalid handshake: {invalid}")
    except ssl.SSLError as error:
        fail(progress, f"TLS: {error}")
    except TimeoutError:
        fail(progress, f"timed out after {progress['echoed']} echoes ({args.timeout}s)")
    except OSError as error:
        fail(progress, f"cannot connect: {error}")
    report(progress)


def fail(progress, message, status=None):
    log(f"ws_client: {message}")
    progress["error"] = message
    if status is not None:
        progress["status"] = status
    report(progress)
    sys.exit(1)


async def run(args, progress):
    options = connection_options(args)
    async with asyncio.timeout(args.timeout):
        connection = await connect(**options)
    async with connection:
        if args.subprotocol:
            progress["subprotocol"] = connection.subprotocol
        whoami = []
        if args.whoami:
            whoami.append(await ask_whoami(connection, args.timeout))
        messages = Messages()
        for index in range(args.count):
            if index == args.pause_at:
                await pause()
                if args.whoami:
                    whoami.append(await ask_whoami(connection, args.timeout))
            message = messages.get(index)
            await connection.send(message)
            progress["sent"] += 1
            progress["bytes"] += len(message.encode() if isinstance(message, str) else message)
            async with asyncio.timeout(args.timeout):
                echo = await connection.recv()
            check(index, message, echo)
            progress["echoed"] += 1
        if args.pause_at == args.count:
            await pause()
        if args.whoami:
            progress["whoami"] = whoami


def connection_options(args):
    """The keyword arguments for websockets' connect()."""
    url = urllib.parse.urlsplit(args.url)
    if url.scheme not in ("ws", "wss"):
        raise Failure(f"not a ws:// or wss:// URL: {args.url}")
    secure = url.scheme == "wss"
    options = {
        "uri": args.url,
        # Environment proxies must never carry test traffic.
        "proxy": None,
        "compression": "deflate" if args.deflate else None,
        "subprotocols": args.subprotocol,
        "max_size": 64 * 1024 * 1024,
        "open_timeout": args.timeout,
        "close_timeout": args.timeout,
        "additional_headers": [parse_header(header) for header in args.header],
    }
    if args.host:
        # websockets builds the Host header from the URI it is given, and connects to
        # `host`/`port` when they are passed: so the URI names the Host to send and the
        # TCP connection still goes to the original URL's address.
        options["uri"] = urllib.parse.urlunsplit(
            (url.scheme, args.host, url.path or "/", url.query, "")
        )
        options["host"] = url.hostname
        options["port"] = url.port or (443 if secure else 80)
    if secure:
        context = ssl.create_default_context(cafile=args.cafile)
        options["ssl"] = context
        # Both the SNI sent and the name the certificate must carry.
        server_name = args.server_name
        if server_name is None and args.host:
            server_name = urllib.parse.urlsplit(f"//{args.host}").hostname
        if server_name is not None:
            options["server_hostname"] = server_name
    elif args.cafile or args.server_name:
        raise Failure("--cafile and --server-name need a wss:// URL")
    return options


def parse_header(text):
    name, sep, value = text.partition(":")
    if not sep:
        raise Failure(f"--header wants 'Name: value', not {text!r}")
    return name.strip(), value.strip()


async def ask_whoami(connection, timeout):
    await connection.send(WHOAMI)
    async with asyncio.timeout(timeout):
        answer = await connection.recv()
    try:
        return json.loads(answer)
    except (TypeError, ValueError):
        raise Failure(f"{WHOAMI} answered with {describe(answer)}, not JSON") from None


async def pause():
    """Tells the test the connection is idle and waits for its go-ahead."""
    print("paused", flush=True)
    line = await asyncio.to_thread(sys.stdin.readline)
    if line.strip() != "continue":
        raise Failure(f"wanted `continue` on stdin after `paused`, got {line!r}")


class Messages:
    """The index-th message: its type and size from a fixed cycle, its content random."""

    def __init__(self):
        rng = random.Random()
        largest = max(SIZES)
        # Messages are slices of two random pools at an offset that moves with the index,
        # so consecutive messages of one size differ without generating megabytes each.
        self.binary = rng.randbytes(2 * largest)
        alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789 {}"\\\n\té€😀'
        self.text = "".join(rng.choices(alphabet, k=2 * largest))

    def get(self, index):
        size = SIZES[index % len(SIZES)]
        offset = (index * 7919) % (len(self.binary) - size)
        # Period 3 against 11 sizes: every size is sent as text and as binary.
        if index % 3 == 1:
            return self.binary[offset : offset + size]
        return self.text[offset : offset + size]


def check(index, sent, echo):
    if type(echo) is not type(sent) or echo != sent:
        first_difference = next(
            (i for i, (a, b) in enumerate(zip(sent, echo, strict=False)) if a != b),
            min(len(sent), len(echo)),
        )
        raise Failure(
            f"message {index}: sent {describe(sent)}, echoed {describe(echo)}"
            f" (first difference at {first_difference})"
        )


def describe(message):
    kind = "binary" if isinstance(message, bytes) else "text"
    return f"{kind} of length {len(message)}"


if __name__ == "__main__":
    main()
