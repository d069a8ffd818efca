#!/usr/bin/env bash
# Nanoseconds per cross-thread free (bench/c/remote_free.c: one thread
# frees the blocks another allocated and keeps alive), for tinymalloc and
# every other allocator library given, each preloaded into the same C
# program, runs interleaved. Prints the medians over RUNS runs of each
# run's median and lowest figure.
#
#   bench/remote_free.sh [RUNS] [SIZE] -- [LIB.so...]
#   bench/remote_free.sh 7 32 -- /usr/lib/x86_64-linux-gnu/libmimalloc.so.2
set -euo pipefail
cd "$(dirname "$0")/.."
runs=5; size=32
[ $# -gt 0 ] && [ "$1" != "--" ] && { runs=$1; shift; }
[ $# -gt 0 ] && [ "$1" != "--" ] && { size=$1; shift; }
[ $# -gt 0 ] && shift
tm=${TINYMALLOC_SO:-$PWD/target/release/libtinymalloc.so}
[ -f "$tm" ] || cargo build --release -p tinymalloc-capi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc -O2 -pthread -o "$out/rf" bench/c/remote_free.c
libs=("$tm" "$@")
for ((i = 0; i < runs; i++)); do
  for k in "${!libs[@]}"; do
    LD_PRELOAD=${libs[$k]} timeout 120 "$out/rf" "$size" 21 >> "$out/r.$k"
  done
done
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
printf '%-28s %12s %12s\n' "ns per cross-thread free" "median" "lowest"
for k in "${!libs[@]}"; do
  printf '%-28s %12s %12s\n' "$(basename "${libs[$k]}")" \
    "$(cut -d' ' -f1 "$out/r.$k" | median)" "$(cut -d' ' -f2 "$out/r.$k" | median)"
done
