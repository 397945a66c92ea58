"""Regenerate the gRPC stubs from ``grpc_predict_v2.proto``. grpcio-tools is not a dependency
(the generated files are committed); use 1.75.x, in a venv of its own, whose protobuf 6.31.1
gencode both protobuf 6 (which tritonclient[grpc] pins) and 7 import::

    python -m venv /tmp/protogen && /tmp/protogen/bin/pip install 'grpcio-tools==1.75.*'
    /tmp/protogen/bin/python src/changeover/protos/generate.py

The messages are built into a descriptor pool of their own, not protobuf's default one: their
names are the protocol's (``inference.ModelInferRequest``…), which Triton's client stubs also
register in the default pool, and two files defining one name in one pool fail to import. A
process may then hold both (tritonclient.grpc and changeover, as the tests do)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_POOL = "_descriptor_pool.Default().AddSerializedFile("
OWN_POOL = "_descriptor_pool.DescriptorPool().AddSerializedFile("


def main() -> int:
    from grpc_tools import protoc

    src = HERE.parent.parent
    code = protoc.main(["protoc", f"-I{src}", f"--python_out={src}", f"--grpc_python_out={src}",
                        f"--pyi_out={src}", str(HERE / "grpc_predict_v2.proto")])
    if code:
        return int(code)
    generated = HERE / "grpc_predict_v2_pb2.py"
    text = generated.read_text()
    if DEFAULT_POOL not in text:
        print(f"{generated}: no {DEFAULT_POOL!r} to replace; check the generated code", file=sys.stderr)
        return 1
    generated.write_text(text.replace(DEFAULT_POOL, OWN_POOL))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
