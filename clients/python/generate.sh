#!/usr/bin/env bash
# Regenerates the Python stubs in profileimage/v1/ from ../../proto with the protoc that
# grpcio-tools bundles (no system protoc needed).
#
#   ./generate.sh            regenerate in place (commit the result)
#   ./generate.sh --check    regenerate into a temp dir and fail if the committed stubs differ
#
# PYTHON selects the interpreter (default: python3); it needs requirements.txt installed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto_root="$(cd "$here/../../proto" && pwd)"
python="${PYTHON:-python3}"
package_dir="profileimage/v1"
# The generated files (everything else in profileimage/ is hand-written).
generated=(profile_image_pb2.py profile_image_pb2.pyi profile_image_pb2_grpc.py)

mode=write
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

if ! "$python" -c 'import grpc_tools.protoc' 2>/dev/null; then
  echo "generate.sh: '$python' cannot import grpc_tools; install requirements.txt first:" >&2
  echo "  $python -m pip install -r $here/requirements.txt" >&2
  exit 1
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

# -I proto: the module path is profileimage/v1/profile_image_pb2.py, so the generated
# imports (`from profileimage.v1 import profile_image_pb2`) resolve with clients/python on
# sys.path. google/protobuf/*.proto come from grpc_tools' bundled include dir.
(
  cd "$proto_root"
  "$python" -m grpc_tools.protoc \
    -I . \
    --python_out="$out" \
    --pyi_out="$out" \
    --grpc_python_out="$out" \
    profileimage/v1/profile_image.proto
)

for file in "${generated[@]}"; do
  if [[ ! -f "$out/$package_dir/$file" ]]; then
    echo "generate.sh: protoc did not produce $package_dir/$file" >&2
    exit 1
  fi
done

if [[ "$mode" == check ]]; then
  stale=0
  for file in "${generated[@]}"; do
    if ! diff -u "$here/$package_dir/$file" "$out/$package_dir/$file" >"$out/diff" 2>&1; then
      echo "generate.sh --check: $package_dir/$file is stale:" >&2
      head -n 40 "$out/diff" >&2
      stale=1
    fi
  done
  if [[ "$stale" != 0 ]]; then
    echo "generate.sh --check: run clients/python/generate.sh and commit the result" >&2
    exit 1
  fi
  echo "generate.sh --check: stubs in clients/python/$package_dir are up to date"
  exit 0
fi

mkdir -p "$here/$package_dir"
for file in "${generated[@]}"; do
  cp "$out/$package_dir/$file" "$here/$package_dir/$file"
done
echo "generate.sh: wrote ${generated[*]} to clients/python/$package_dir"
