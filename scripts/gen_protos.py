"""Generate the Python gRPC code for protos/farm.proto into nn_farm/farm/_proto/.

    python scripts/gen_protos.py [--out DIR]

The generated files are committed; tests/test_protos.py runs this into a
temporary directory and compares, so they never drift from the .proto.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"
DEFAULT_OUT = ROOT / "nn_farm" / "farm" / "_proto"


def generate(out: pathlib.Path) -> list[pathlib.Path]:
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            str(PROTO_DIR / "farm.proto"),
        ]
    )
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    # protoc writes a top-level import; the package needs a relative one.
    grpc_file = out / "farm_pb2_grpc.py"
    text = grpc_file.read_text()
    grpc_file.write_text(text.replace("import farm_pb2 as farm__pb2", "from . import farm_pb2 as farm__pb2"))
    init = out / "__init__.py"
    init.write_text('"""Generated from protos/farm.proto by scripts/gen_protos.py. Do not edit."""\n')
    return sorted(out.glob("*.py*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    for path in generate(args.out):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    sys.exit(main())
