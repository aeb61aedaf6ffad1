"""The Python code for grpc_echo.proto, generated when first imported.

grpcio-tools' bundled protoc writes ``grpc_echo_pb2`` (messages) and ``grpc_echo_pb2_grpc``
(stubs) into a temporary directory, they are imported from there, and the directory is
removed: nothing generated lands in the repository, and the code always matches the
``.proto`` and the installed protobuf runtime.

    from grpc_echo import pb2, pb2_grpc
"""

import importlib
import os
import sys
import tempfile

from grpc_tools import protoc

SERVICE = "weir.test.Echo"


def _generate():
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory(prefix="weir-grpc-echo-") as out:
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"--proto_path={here}",
                f"--python_out={out}",
                f"--grpc_python_out={out}",
                os.path.join(here, "grpc_echo.proto"),
            ]
        )
        if status != 0:
            raise SystemExit(f"protoc failed on grpc_echo.proto (exit status {status})")
        # Once imported, the modules live in memory; the directory can go.
        sys.path.insert(0, out)
        try:
            messages = importlib.import_module("grpc_echo_pb2")
            stubs = importlib.import_module("grpc_echo_pb2_grpc")
        finally:
            sys.path.remove(out)
    return messages, stubs


pb2, pb2_grpc = _generate()
