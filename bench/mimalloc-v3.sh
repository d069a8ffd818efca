#!/usr/bin/env bash
# Builds the mimalloc the suite runs (the C sources bundled in the
# libmimalloc-sys crate that bench/Cargo.toml pulls in: mimalloc 3.x) as a
# shared library that overrides malloc, and prints its path, so that the C
# scripts (callgrind.sh, remote_free.sh, programs.sh) can compare against
# the same mimalloc as the suite and not only Debian's libmimalloc.so.2
# (2.0.9). Flags as the crate's build script sets them for a release build.
#
#   bench/callgrind.sh 16 64 -- "$(bench/mimalloc-v3.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."
# Where cargo unpacked the crate (fetches it if needed).
manifest=$(cargo metadata --format-version 1 --manifest-path bench/Cargo.toml 2>/dev/null |
  grep -o '"manifest_path":"[^"]*/libmimalloc-sys-[^"]*/Cargo.toml"' | head -1 |
  sed 's/^"manifest_path":"//; s/"$//')
[ -n "$manifest" ] || { echo "mimalloc-v3.sh: libmimalloc-sys not found (cargo metadata)" >&2; exit 1; }
src=$(dirname "$manifest")/c_src/mimalloc/v3
[ -f "$src/src/static.c" ] || { echo "mimalloc-v3.sh: no $src/src/static.c" >&2; exit 1; }
out=target/mimalloc-v3/libmimalloc-v3.so
if [ ! -f "$out" ] || [ "$src/src/static.c" -nt "$out" ]; then
  mkdir -p "$(dirname "$out")"
  cc -O3 -fPIC -shared -DMI_MALLOC_OVERRIDE -DMI_DEBUG=0 -DMI_BUILD_RELEASE -DNDEBUG \
    -ftls-model=initial-exec -fvisibility=hidden -I"$src/include" -I"$src/src" \
    "$src/src/static.c" -o "$out" -lpthread
fi
# A library that overrides nothing would let the comparison count glibc.
nm -D --defined-only "$out" | grep -qw malloc || { echo "mimalloc-v3.sh: $out does not export malloc" >&2; exit 1; }
echo "$PWD/$out"
