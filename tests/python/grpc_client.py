"""A gRPC client of weir.test.Echo (grpc_echo.proto) for end-to-end tests (library: grpcio).

    grpc_client.py TARGET [--tls-ca PEM [--server-name NAME]] [--authority HOST]
                   [--check all|unary|server-streaming|client-streaming|bidi|error]...
                   [--check expect-status CODE [--fail-with CODE [--fail-message TEXT]]
                    [--delay-ms MS]] [--metadata KEY=VALUE]... [--timeout SECONDS]

TARGET is ``HOST:PORT``. Plaintext HTTP/2 (h2c) by default; with ``--tls-ca`` TLS, trusting
that CA and checking the server's certificate for ``--server-name``, which is also the SNI
sent (gRPC's ``grpc.ssl_target_name_override``; without it, gRPC uses the channel's
authority: ``--authority`` if given, else TARGET's host). ``--authority`` sets the
``:authority`` of every call.

Checks (``--check`` may be repeated; default ``all``, which is the first five):

- ``unary``: ``Say`` with a small and a 1 MiB payload; answer, initial metadata, trailers.
- ``server-streaming``: ``Count`` of 200 replies of 16 KiB each, in order; trailers.
- ``client-streaming``: ``Sum`` of 1..100; trailers.
- ``bidi``: ``Chat`` as ping-pong, each message answered before the next is sent; trailers.
- ``error``: ``Say`` asked to fail with FAILED_PRECONDITION and a non-ASCII message (a
  trailers-only response), and ``Count`` asked to fail with RESOURCE_EXHAUSTED after 3
  replies: exact status, message and trailers, and the 3 replies before the error.
- ``expect-status CODE``: one ``Say`` (asking the server to fail with ``--fail-with`` and
  to wait ``--delay-ms`` first, if given); passes only if the call ends with exactly CODE
  (a grpc.StatusCode name: OK, UNAVAILABLE, UNIMPLEMENTED, DEADLINE_EXCEEDED...).

Every call has a deadline of ``--timeout`` seconds (default 10). Prints one JSON line:

    {"unary": "ok", "server_streaming": "ok", ..., "authority": "<as the server saw it>",
     "server": "<server name>", "initial_metadata": {"Say": {...}, ...},
     "trailers": {"Say": {"x-trailer": "Say", "x-trailer-bin": "hex:0001feff"}, ...}}

a check that failed has its reason instead of "ok"; ``expect-status`` adds
``{"status": CODE, "details": "...", "expected": CODE}``. Exits 0 only if every check passed.
"""

import argparse
import queue
import sys

import grpc

from common import log, report
from grpc_echo import pb2, pb2_grpc

CHECKS = ["unary", "server-streaming", "client-streaming", "bidi", "error"]
TRAILER_BIN = bytes([0x00, 0x01, 0xFE, 0xFF])
MAX_MESSAGE = 64 * 1024 * 1024
REQUEST_ID = "weir-e2e-42"


class CheckFailed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def metadata_dict(metadata):
    """Metadata as a JSON-friendly dict; binary values as ``hex:...``."""
    return {
        key: f"hex:{value.hex()}" if isinstance(value, bytes) else value
        for key, value in (metadata or ())
    }


class Client:
    def __init__(self, args):
        self.timeout = args.timeout
        self.metadata = [("x-request-id", REQUEST_ID), *args.metadata]
        self.result = {"trailers": {}, "initial_metadata": {}}
        options = [
            # Environment proxies must never carry test traffic.
            ("grpc.enable_http_proxy", 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ]
        if args.authority:
            options.append(("grpc.default_authority", args.authority))
        if args.tls_ca:
            with open(args.tls_ca, "rb") as ca:
                credentials = grpc.ssl_channel_credentials(root_certificates=ca.read())
            if args.server_name:
                # The name the certificate is checked against, and the SNI sent.
                options.append(("grpc.ssl_target_name_override", args.server_name))
            self.channel = grpc.secure_channel(args.target, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(args.target, options=options)
        self.stub = pb2_grpc.EchoStub(self.channel)

    def record(self, method, call, initial_metadata=True):
        """Keeps a finished call's metadata and checks what every call must carry (every
        call but a trailers-only error carries initial metadata)."""
        initial = metadata_dict(call.initial_metadata())
        trailers = metadata_dict(call.trailing_metadata())
        self.result["initial_metadata"][method] = initial
        self.result["trailers"][method] = trailers
        if initial_metadata:
            expect(initial.get("x-initial") == method, f"{method}: initial metadata {initial}")
            expect(
                initial.get("x-echo-x-request-id") == REQUEST_ID,
                f"{method}: request metadata not echoed: {initial}",
            )
        expect(trailers.get("x-trailer") == method, f"{method}: trailers {trailers}")
        expect(
            trailers.get("x-trailer-bin") == f"hex:{TRAILER_BIN.hex()}",
            f"{method}: binary trailer {trailers.get('x-trailer-bin')!r}",
        )
        return trailers

    def unary(self):
        for payload in (b"small", bytes(range(256)) * 4096):
            request = pb2.SayRequest(text="hello, wörld", payload=payload)
            reply, call = self.stub.Say.with_call(
                request, timeout=self.timeout, metadata=self.metadata
            )
            expect(call.code() == grpc.StatusCode.OK, f"Say: status {call.code()}")
            expect(reply.text == request.text, f"Say: text {reply.text!r}")
            expect(reply.payload == payload, f"Say: {len(reply.payload)}-byte payload back")
            self.record("Say", call)
        self.result["authority"] = reply.authority
        self.result["server"] = reply.server

    def server_streaming(self):
        n, size = 200, 16 * 1024
        call = self.stub.Count(
            pb2.CountRequest(n=n, payload_size=size), timeout=self.timeout, metadata=self.metadata
        )
        indexes = []
        for reply in call:
            expect(len(reply.payload) == size, f"Count: reply of {len(reply.payload)} bytes")
            indexes.append(reply.index)
        expect(indexes == list(range(n)), f"Count: indexes {indexes[:10]}... ({len(indexes)})")
        expect(call.code() == grpc.StatusCode.OK, f"Count: status {call.code()}")
        trailers = self.record("Count", call)
        expect(trailers.get("x-count") == str(n), f"Count: trailers {trailers}")

    def client_streaming(self):
        values = range(1, 101)
        reply, call = self.stub.Sum.with_call(
            (pb2.SumRequest(value=value) for value in values),
            timeout=self.timeout,
            metadata=self.metadata,
        )
        expect((reply.sum, reply.count) == (5050, 100), f"Sum: {reply.sum}, {reply.count}")
        trailers = self.record("Sum", call)
        expect(trailers.get("x-count") == "100", f"Sum: trailers {trailers}")

    def bidi(self):
        n = 50
        outgoing = queue.Queue()
        # The request stream is fed from the queue: gRPC pulls the next message only once
        # it is put there, after the reply to the previous one has arrived.
        call = self.stub.Chat(
            iter(outgoing.get, None), timeout=self.timeout, metadata=self.metadata
        )
        try:
            for index in range(n):
                outgoing.put(pb2.ChatMessage(index=index, text=f"message {index}"))
                reply = next(call)
                expect(
                    (reply.index, reply.text) == (index, f"message {index}"),
                    f"Chat: sent {index}, got {reply.index} {reply.text!r}",
                )
            outgoing.put(None)  # ends the request stream
            rest = list(call)
            expect(not rest, f"Chat: {len(rest)} replies after the requests ended")
        except StopIteration:
            raise CheckFailed("Chat: the reply stream ended early") from None
        finally:
            outgoing.put(None)
        expect(call.code() == grpc.StatusCode.OK, f"Chat: status {call.code()}")
        trailers = self.record("Chat", call)
        expect(trailers.get("x-count") == str(n), f"Chat: trailers {trailers}")

    def error(self):
        message = "precondition failed: ünïcode, 100% sure\ttab"
        try:
            self.stub.Say(
                pb2.SayRequest(
                    text="fail", fail_with_code="FAILED_PRECONDITION", fail_with_message=message
                ),
                timeout=self.timeout,
                metadata=self.metadata,
            )
            raise CheckFailed("Say asked to fail succeeded")
        except grpc.RpcError as error:
            expect(
                error.code() == grpc.StatusCode.FAILED_PRECONDITION,
                f"Say: status {error.code()} ({error.details()!r})",
            )
            expect(error.details() == message, f"Say: message {error.details()!r}")
            self.record("Say", error, initial_metadata=False)

        call = self.stub.Count(
            pb2.CountRequest(n=3, fail_with_code="RESOURCE_EXHAUSTED", fail_with_message="enough"),
            timeout=self.timeout,
            metadata=self.metadata,
        )
        indexes = []
        try:
            for reply in call:
                indexes.append(reply.index)
            raise CheckFailed("Count asked to fail succeeded")
        except grpc.RpcError as error:
            expect(
                error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"Count: status {error.code()} ({error.details()!r})",
            )
            expect(error.details() == "enough", f"Count: message {error.details()!r}")
        expect(indexes == [0, 1, 2], f"Count: replies before the error {indexes}")
        self.record("Count", call)

    def expect_status(self, expected, fail_with, fail_message, delay_ms):
        request = pb2.SayRequest(
            text="status",
            fail_with_code=fail_with or "",
            fail_with_message=fail_message or "",
            delay_ms=delay_ms or 0,
        )
        try:
            _, call = self.stub.Say.with_call(request, timeout=self.timeout, metadata=self.metadata)
            code, details, trailers = grpc.StatusCode.OK, call.details(), call.trailing_metadata()
        except grpc.RpcError as error:
            code, details, trailers = error.code(), error.details(), error.trailing_metadata()
        self.result.update(
            status=code.name,
            details=details or "",
            expected=expected,
        )
        self.result["trailers"]["Say"] = metadata_dict(trailers)
        log(f"grpc_client: Say ended with {code.name}: {details!r}")
        expect(code.name == expected, f"status {code.name} ({details!r}), expected {expected}")


def metadata_pair(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"wanted KEY=VALUE, not {text!r}")
    # gRPC metadata keys are lower case.
    return key.lower(), value


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="HOST:PORT")
    parser.add_argument("--tls-ca", help="CA certificate PEM: use TLS and trust this CA")
    parser.add_argument("--server-name", help="TLS name to check and send as SNI")
    parser.add_argument("--authority", help=":authority of every call")
    parser.add_argument(
        "--check",
        action="append",
        nargs="+",
        metavar="CHECK",
        help="all | " + " | ".join(CHECKS) + " | expect-status CODE",
    )
    parser.add_argument("--fail-with", help="expect-status: ask the server to fail with this")
    parser.add_argument("--fail-message", help="expect-status: ... and this message")
    parser.add_argument("--delay-ms", type=int, help="expect-status: ask the server to wait")
    parser.add_argument(
        "--metadata",
        action="append",
        default=[],
        type=metadata_pair,
        help="extra request metadata KEY=VALUE",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline of each call")
    args = parser.parse_args()
    if args.server_name and not args.tls_ca:
        parser.error("--server-name needs --tls-ca")

    checks, expected = [], None
    for words in args.check or [["all"]]:
        name, rest = words[0], words[1:]
        if name == "expect-status":
            if len(rest) != 1 or rest[0] not in grpc.StatusCode.__members__:
                parser.error("--check expect-status wants one status code name, e.g. UNAVAILABLE")
            expected = rest[0]
            checks.append(name)
        elif rest:
            parser.error(f"--check {name} takes no argument")
        elif name == "all":
            checks.extend(CHECKS)
        elif name in CHECKS:
            checks.append(name)
        else:
            parser.error(f"unknown check {name!r}")
    return args, checks, expected


def main():
    args, checks, expected = parse_args()
    client = Client(args)
    passed = True
    for check in checks:
        key = check.replace("-", "_")
        try:
            if check == "expect-status":
                client.expect_status(expected, args.fail_with, args.fail_message, args.delay_ms)
            else:
                getattr(client, key)()
            client.result[key] = "ok"
        except CheckFailed as failure:
            client.result[key] = str(failure)
        except grpc.RpcError as error:
            client.result[key] = f"call failed: {error.code().name}: {error.details()}"
        if client.result[key] != "ok":
            passed = False
            log(f"grpc_client: {check}: {client.result[key]}")
    client.channel.close()
    report(client.result)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
