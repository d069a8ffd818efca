#!/usr/bin/env bash
# The test command: installs what the tests need (Debian packages listed in
# .ci/apt-packages.txt, when run as root on a machine with apt-get and any is
# missing; cargo-fuzz for the nightly toolchain), then runs the whole
# workspace test suite in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
while read -r pkg; do
  [ -z "$pkg" ] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < .ci/apt-packages.txt
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing Debian packages (install them first): ${missing[*]}" >&2
    exit 1
  fi
fi

# The short fuzz step (tests/fuzz_short.rs) needs cargo-fuzz on nightly.
fuzz/run-short.sh --install-only

cargo test --release --workspace "$@"

# Once more in a debug build, where integer overflow panics: a page's count
# of blocks in use that drifted out of range (see heap::sync) shows there.
cargo test --test page_counts
