#!/usr/bin/env bash
# Instructions and modelled cache misses of one suite workload under each
# allocator, counted by callgrind's cache simulator in the suite's own
# workers (target/release/bench-ALLOCATOR). At one thread deterministic for
# a given build, whatever else the machine is doing: what the time of a cell is
# made of, where the suite's timings are too noisy to tell.
#
#   bench/cachesim.sh WORKLOAD [THREADS] [SCALE] [ALLOCATOR...]
#   bench/cachesim.sh alloc-test 1 0.3 tinymalloc jemalloc mimalloc
#
# The first level is the host's (valgrind reads it); the second is modelled
# as this machine's 512 KiB, 8-way L2 (override with LL=size,ways,line).
# Columns: instructions, first-level read and write misses, second-level
# read and write misses; then each as a ratio to the first allocator's.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n '2,14p' "$0" >&2; exit 2; }
w=$1; t=${2:-1}; s=${3:-0.3}; shift $(( $# < 3 ? $# : 3 ))
allocs=("$@"); [ ${#allocs[@]} -gt 0 ] || allocs=(tinymalloc jemalloc mimalloc system)
ll=${LL:-524288,8,64}
for a in "${allocs[@]}"; do
  [ -x "target/release/bench-$a" ] && continue
  cargo build --release -p tinymalloc-bench >&2
  [ -x "target/release/bench-$a" ] || { echo "cachesim.sh: no worker bench-$a" >&2; exit 1; }
done
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
printf '%-12s %14s %12s %12s %12s %12s\n' allocator instructions D1-read D1-write LL-read LL-write
first=()
for a in "${allocs[@]}"; do
  valgrind --tool=callgrind --cache-sim=yes --LL="$ll" --callgrind-out-file="$out/cg" \
    "target/release/bench-$a" "$w" "$t" "$s" >"$out/stdout" 2>"$out/log" \
    || { cat "$out/log" >&2; exit 1; }
  grep -q "^result " "$out/stdout" || { cat "$out/stdout" >&2; exit 1; }
  # "Collected : Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw"
  read -r ir d1r d1w llr llw < <(awk '/Collected/ {print $4, $8, $9, $11, $12}' "$out/log")
  [ ${#first[@]} -gt 0 ] || first=("$ir" "$d1r" "$d1w" "$llr" "$llw")
  printf '%-12s %14s %12s %12s %12s %12s\n' "$a" "$ir" "$d1r" "$d1w" "$llr" "$llw"
  printf '%-12s %14s %12s %12s %12s %12s\n' "" $(awk -v a="$ir $d1r $d1w $llr $llw" \
    -v b="${first[*]}" 'BEGIN { n = split(a, x); split(b, y)
      for (i = 1; i <= n; i++) printf "%.3fx ", (y[i] > 0 ? x[i] / y[i] : 0) }')
done
