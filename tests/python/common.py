"""Helpers shared by the test scripts in this directory.

The Rust harness (tests/src/python.rs) starts a server script with ``--listen 127.0.0.1:0``
and learns its port from the first stdout line, ``listening on 127.0.0.1:PORT``, exactly as
it does for ``weir-echo``. It also passes ``--exit-on-stdin-eof`` and keeps the script's stdin
open: if the test process dies without killing its children (SIGKILL, a crashed harness), the
pipe closes and the server exits instead of lingering.

Clients report their result as one JSON line on stdout; diagnostics go to stderr, which the
harness forwards to the test's output prefixed with the script's name.
"""

import json
import os
import sys
import threading


def parse_listen(text):
    """Splits ``HOST:PORT`` (``[::1]:PORT`` for IPv6) into a host and an int port."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"--listen wants HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def announce(host, port):
    """Prints the line the harness waits for, and flushes it at once."""
    shown = f"[{host}]" if ":" in host else host
    print(f"listening on {shown}:{port}", flush=True)


def exit_when_stdin_closes():
    """Ends the process as soon as stdin reaches end of file (the harness is gone)."""

    def watch():
        # read() returns only at EOF; anything written meanwhile is ignored.
        sys.stdin.buffer.read()
        # os._exit: no interpreter shutdown, which could wait on server threads.
        os._exit(0)

    threading.Thread(target=watch, name="stdin-lifeline", daemon=True).start()


def log(*parts):
    """A diagnostic line on stderr."""
    print(*parts, file=sys.stderr, flush=True)


def report(result):
    """The one JSON result line a client prints on stdout."""
    print(json.dumps(result, sort_keys=True), flush=True)
