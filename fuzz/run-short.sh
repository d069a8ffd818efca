#!/usr/bin/env bash
# Runs every fuzz target briefly: the test suite's fuzz step (called by
# tests/fuzz_short.rs), and the long runs of docs/TESTING.md.
#
#   fuzz/run-short.sh [SECONDS]          each target for SECONDS (default 30)
#   fuzz/run-short.sh --install-only     install cargo-fuzz if missing, then stop
#   fuzz/run-short.sh --install [SECONDS] install if missing, then run
#   FUZZ_TARGETS="ops" fuzz/run-short.sh 3600   one target, an hour
#
# Needs the nightly toolchain (`rustup toolchain install nightly`) and
# cargo-fuzz (`cargo install cargo-fuzz --locked`, about 2 minutes on 2
# cores). New inputs the fuzzer finds go to fuzz/work/corpus/<target>/
# (ignored by git); the committed seeds in fuzz/corpus/<target>/ are read,
# never written. The fuzzer's output goes to fuzz/work/fuzz-<target>.log. A
# crash leaves its input in fuzz/artifacts/<target>/ and makes this script
# exit non-zero.
set -euo pipefail
cd "$(dirname "$0")"
# Run by `cargo test`: don't let the outer build's settings leak in.
unset RUSTUP_TOOLCHAIN RUSTC RUSTDOC RUSTC_WRAPPER RUSTFLAGS CARGO_ENCODED_RUSTFLAGS \
  CARGO_TARGET_DIR CARGO_BUILD_TARGET CARGO_MAKEFLAGS MAKEFLAGS MFLAGS CARGO

secs=30
install=0
only=0
for a in "$@"; do
  case "$a" in
    --install) install=1 ;;
    --install-only) install=1; only=1 ;;
    *[!0-9]*|'') echo "usage: $0 [--install|--install-only] [SECONDS]" >&2; exit 2 ;;
    *) secs="$a" ;;
  esac
done

if ! cargo +nightly --version >/dev/null 2>&1; then
  if [ "$install" = 1 ] && command -v rustup >/dev/null; then
    rustup toolchain install nightly --profile minimal
  else
    echo "fuzzing needs the nightly toolchain: rustup toolchain install nightly --profile minimal" >&2
    exit 2
  fi
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  if [ "$install" = 1 ]; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
  else
    echo "fuzzing needs cargo-fuzz: cargo install cargo-fuzz --locked (or fuzz/run-short.sh --install-only)" >&2
    exit 2
  fi
fi
[ "$only" = 1 ] && exit 0

targets="${FUZZ_TARGETS:-ops threads}"
cargo +nightly fuzz build
for t in $targets; do
  mkdir -p "work/corpus/$t"
  echo "== fuzz $t for ${secs}s"
  start=$(date +%s)
  rc=0
  cargo +nightly fuzz run "$t" "work/corpus/$t" "corpus/$t" -- \
    -max_total_time="$secs" -timeout=120 -rss_limit_mb=4096 -detect_leaks=0 -print_final_stats=1 \
    > "work/fuzz-$t.log" 2>&1 || rc=$?
  grep -a -E '^(INFO: seed corpus|Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb)|panicked|^thread|MiB still|SUMMARY|ERROR|Test unit written' "work/fuzz-$t.log" || true
  echo "== fuzz $t: exit $rc after $(( $(date +%s) - start ))s"
  [ "$rc" = 0 ] || exit "$rc"
done
