"""A gRPC server of weir.test.Echo (grpc_echo.proto) for end-to-end tests (library: grpcio).

    grpc_server.py --listen 127.0.0.1:0 [--name NAME] [--tls-cert PEM --tls-key PEM]
                   [--exit-on-stdin-eof]

Serves plaintext HTTP/2 (h2c), or TLS with ``--tls-cert``/``--tls-key``, and prints
``listening on HOST:PORT`` on stdout once it accepts calls.

Every call, whatever its kind or outcome, carries metadata a test can check on the far side
of a proxy:

- initial metadata: ``x-initial: <method>``, ``x-server: <name>``, and for each request
  metadata key starting with ``x-``, the same value back as ``x-echo-<key>``;
- trailing metadata: ``x-trailer: <method>``, ``x-trailer-bin`` (the bytes 00 01 fe ff, to
  check binary metadata), and ``x-count: <messages>`` for the streaming methods.

``Say`` and ``Count`` fail on request with the status code and message named in the
request (``fail_with_code``/``fail_with_message``): ``Say`` at once, without initial
metadata (a "trailers-only" response: one HEADERS frame with the status and trailers),
``Count`` after its initial metadata and replies, so both forms of error are covered.
"""

import argparse
import threading
from concurrent import futures

import grpc

from common import announce, exit_when_stdin_closes, log, parse_listen
from grpc_echo import SERVICE, pb2

TRAILER_BIN = bytes([0x00, 0x01, 0xFE, 0xFF])
MAX_MESSAGE = 64 * 1024 * 1024


class Echo:
    def __init__(self, name):
        self.name = name

    def Say(self, request, context):
        if request.delay_ms:
            wait_unless_cancelled(context, request.delay_ms / 1000)
        self.end("Say", context)
        if request.fail_with_code:
            # No initial metadata: the answer is a "trailers-only" response, one HEADERS
            # frame holding the status and the trailers, the form proxies most often break.
            fail(context, request.fail_with_code, request.fail_with_message)
        self.begin("Say", context)
        return pb2.SayReply(
            text=request.text,
            payload=request.payload,
            server=self.name,
            authority=authority(context),
            metadata={key: text(value) for key, value in context.invocation_metadata()},
        )

    def Count(self, request, context):
        self.begin("Count", context)
        self.end("Count", context, ("x-count", str(request.n)))
        payload = bytes(request.payload_size)
        for index in range(request.n):
            yield pb2.CountReply(index=index, payload=payload)
        if request.fail_with_code:
            fail(context, request.fail_with_code, request.fail_with_message)

    def Sum(self, requests, context):
        self.begin("Sum", context)
        total = count = 0
        for request in requests:
            total += request.value
            count += 1
        self.end("Sum", context, ("x-count", str(count)))
        return pb2.SumReply(sum=total, count=count)

    def Chat(self, requests, context):
        self.begin("Chat", context)
        count = 0
        # Each reply is yielded as soon as its request arrives: the client waits for it
        # before sending the next, so a proxy that buffers a stream makes the call hang.
        for message in requests:
            count += 1
            yield pb2.ChatMessage(index=message.index, text=message.text)
        self.end("Chat", context, ("x-count", str(count)))

    def begin(self, method, context):
        echoed = [
            (f"x-echo-{key}", value)
            for key, value in context.invocation_metadata()
            if key.startswith("x-")
        ]
        context.send_initial_metadata([("x-initial", method), ("x-server", self.name), *echoed])

    def end(self, method, context, *extra):
        # Trailing metadata is sent whenever the call ends, with an error status too.
        context.set_trailing_metadata(
            [("x-trailer", method), ("x-trailer-bin", TRAILER_BIN), *extra]
        )


def fail(context, code_name, message):
    try:
        code = grpc.StatusCode[code_name]
    except KeyError:
        code, message = grpc.StatusCode.INVALID_ARGUMENT, f"unknown status code {code_name!r}"
    # abort() raises, ending the handler; the trailers set before are kept.
    context.abort(code, message)


def wait_unless_cancelled(context, seconds):
    cancelled = threading.Event()
    context.add_callback(cancelled.set)
    cancelled.wait(seconds)


def authority(context):
    # grpcio has no public accessor for :authority. Its core fills the call details' host
    # for calls dispatched through generic handlers (which is why main() registers the
    # methods that way rather than with the generated add_EchoServicer_to_server).
    host = getattr(getattr(getattr(context, "_rpc_event", None), "call_details", None), "host", b"")
    return host.decode("utf-8", "replace") if isinstance(host, bytes) else str(host or "")


def text(value):
    return value.hex() if isinstance(value, bytes) else value


def handlers(echo):
    def method(kind, behaviour, request):
        return kind(
            behaviour,
            request_deserializer=request.FromString,
            response_serializer=lambda message: message.SerializeToString(),
        )

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Say": method(grpc.unary_unary_rpc_method_handler, echo.Say, pb2.SayRequest),
            "Count": method(grpc.unary_stream_rpc_method_handler, echo.Count, pb2.CountRequest),
            "Sum": method(grpc.stream_unary_rpc_method_handler, echo.Sum, pb2.SumRequest),
            "Chat": method(grpc.stream_stream_rpc_method_handler, echo.Chat, pb2.ChatMessage),
        },
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT; port 0 picks a free one")
    parser.add_argument("--name", default="grpc", help="reported in x-server and SayReply")
    parser.add_argument("--tls-cert", help="certificate chain PEM: serve TLS")
    parser.add_argument("--tls-key", help="private key PEM for --tls-cert")
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    args = parser.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.exit_on_stdin_eof:
        exit_when_stdin_closes()

    host, port = parse_listen(args.listen)
    server = grpc.server(
        # Each open stream holds a worker thread; tests open a handful at a time.
        futures.ThreadPoolExecutor(max_workers=32),
        handlers=[handlers(Echo(args.name))],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            # One server per port: fail rather than share a port with another process.
            ("grpc.so_reuseport", 0),
        ],
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if args.tls_cert:
        with open(args.tls_cert, "rb") as cert, open(args.tls_key, "rb") as key:
            credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
        bound = server.add_secure_port(address, credentials)
    else:
        bound = server.add_insecure_port(address)
    if bound == 0:
        raise SystemExit(f"cannot listen on {args.listen}")
    server.start()
    log(f"serving {SERVICE} as {args.name!r}{' with TLS' if args.tls_cert else ''}")
    announce(host, bound)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
