#!/bin/sh
# Runs the public heap-misuse test programs of this folder (copied from
# GrapheneOS/hardened_malloc, see the header of each file) three ways:
# with glibc's malloc, with tinymalloc preloaded (default mode), and with
# tinymalloc preloaded and TINYMALLOC_SECURE=1. Prints a Markdown table:
# how each run ended (exit status or signal) and the first line it wrote to
# stderr (hex addresses shown as 0x…); when a program exits normally, also
# the last line it wrote to stdout (what it read, for the read tests;
# addresses again shown as 0x…).
#
#   tests/c/public/run.sh                 # uses target/release/libtinymalloc.so
#   TINYMALLOC_LIB=/path/libtinymalloc.so BUILD=/tmp/pub tests/c/public/run.sh
#
# A program is "stopped" when it dies by SIGABRT with a tinymalloc report, or
# by SIGSEGV/SIGBUS (a guard page or PROT_NONE memory), instead of finishing.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
lib=${TINYMALLOC_LIB:-$root/target/release/libtinymalloc.so}
build=${BUILD:-/tmp/pub}
cc=${CC:-cc}
[ -f "$lib" ] || { echo "missing $lib (cargo build --release -p tinymalloc-capi)" >&2; exit 2; }
mkdir -p "$build"
ulimit -c 0

# run NAME MODE: prints one table cell
run() {
    exe=$1; mode=$2; err=$build/$(basename "$exe").$mode.err; out=$build/$(basename "$exe").$mode.out
    # The program's own stderr goes to $err from inside `sh -c`, so that the
    # shell's "Segmentation fault" / "Aborted" notices are not taken for it.
    case $mode in
        glibc)   env -u LD_PRELOAD -u TINYMALLOC_SECURE timeout 10 sh -c 'exec "$0" >"$1" 2>"$2"' "$exe" "$out" "$err" ;;
        default) env -u TINYMALLOC_SECURE LD_PRELOAD="$lib" timeout 10 sh -c 'exec "$0" >"$1" 2>"$2"' "$exe" "$out" "$err" ;;
        secure)  env TINYMALLOC_SECURE=1 LD_PRELOAD="$lib" timeout 10 sh -c 'exec "$0" >"$1" 2>"$2"' "$exe" "$out" "$err" ;;
    esac 2>/dev/null
    rc=$?
    case $rc in
        124) how="timeout" ;;
        134) how="SIGABRT" ;;
        135) how="SIGBUS" ;;
        136) how="SIGFPE" ;;
        139) how="SIGSEGV" ;;
        *) if [ "$rc" -gt 128 ]; then how="signal $((rc - 128))"; else how="exit $rc"; fi ;;
    esac
    line=$(head -n 1 "$err" | sed -e "s#$here/##g" -e 's/0x[0-9a-fA-F]*/0x…/g' -e 's/|/\\|/g' -e "s/\`/'/g")
    cell=$how
    [ -n "$line" ] && cell="$cell: \`$line\`"
    last=$(tail -n 1 "$out" | tr -d '\000' | sed -e 's/0x[0-9a-fA-F]*/0x…/g' -e 's/|/\\|/g' -e "s/\`/'/g")
    if [ "$rc" -le 128 ] && [ "$rc" != 124 ] && [ -n "$last" ]; then
        cell="$cell (stdout: \`$last\`)"
    fi
    printf '%s' "$cell"
}

echo "| program | glibc | tinymalloc default | tinymalloc \`TINYMALLOC_SECURE=1\` |"
echo "|---|---|---|---|"
for src in "$here"/*.c; do
    name=$(basename "$src" .c)
    exe=$build/$name
    if ! $cc -O0 -g -o "$exe" "$src" -lpthread 2>"$build/$name.cc.err"; then
        echo "| $name | does not compile: $(head -n 1 "$build/$name.cc.err") | | |"
        continue
    fi
    printf '| %s | %s | %s | %s |\n' "$name" "$(run "$exe" glibc)" "$(run "$exe" default)" "$(run "$exe" secure)"
done
