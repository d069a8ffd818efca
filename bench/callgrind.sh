#!/usr/bin/env bash
# Instructions per malloc/free pair, counted by callgrind, for tinymalloc
# and every other allocator library given (preloaded into the same C
# program, bench/c/pair.c). The count of an empty run is subtracted, so what
# remains is the pair itself plus the loop (about 10 instructions).
#
#   bench/callgrind.sh [SIZE...] -- [LIB.so...]
#   bench/callgrind.sh 16 64 1000 100000 -- /usr/lib/x86_64-linux-gnu/libmimalloc.so.2
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=(); libs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do sizes+=("$1"); shift; done
[ $# -gt 0 ] && shift
libs=("$@")
for lib in "${libs[@]}"; do
  # A library that is not there would preload nothing and count glibc.
  [ -f "$lib" ] || { echo "callgrind.sh: no such library: $lib" >&2; exit 1; }
done
[ ${#sizes[@]} -eq 0 ] && sizes=(16 64 1000 100000)
tm=target/release/libtinymalloc.so
[ -f "$tm" ] || cargo build --release -p tinymalloc-capi
out=$(mktemp -d)
cc -O2 -o "$out/pair" bench/c/pair.c
count() { # LIB SIZE N
  valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$out/cg.%p" \
    env ${1:+LD_PRELOAD=$1} "$out/pair" "$2" "$3" 2>&1 | grep Collected | tail -1 | awk '{print $4}'
}
n=100000
printf '%-28s' "instructions per pair"; for s in "${sizes[@]}"; do printf '%10s' "${s}B"; done; echo
for lib in "" "$PWD/$tm" "${libs[@]}"; do
  printf '%-28s' "$(basename "${lib:-glibc (no preload)}")"
  for s in "${sizes[@]}"; do
    a=$(count "$lib" "$s" 0); b=$(count "$lib" "$s" $n)
    printf '%10d' $(( (b - a) / n ))
  done
  echo
done
rm -rf "$out"
