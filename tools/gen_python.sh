#!/usr/bin/env bash
# Regenerates the Python stubs (messages, gRPC, typed .pyi) into clients/python/src.
# protoc comes from grpcio-tools and the .pyi plugins from mypy-protobuf, both pinned through
# pyproject.toml, so the output is the same on every machine.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
out=clients/python/src
rm -f "$out"/avatar/gateway/v1/*_pb2*.py "$out"/avatar/gateway/v1/*_pb2*.pyi
"$py" -m grpc_tools.protoc -Iprotos \
  --plugin=protoc-gen-mypy="$(dirname "$py")/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$(dirname "$py")/protoc-gen-mypy_grpc" \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" \
  protos/avatar/gateway/v1/*.proto
for d in avatar avatar/gateway avatar/gateway/v1; do
  [ -f "$out/$d/__init__.py" ] || printf '"""Generated avatar.gateway.v1 API (do not edit)."""\n' > "$out/$d/__init__.py"
done
touch "$out/avatar/py.typed"
