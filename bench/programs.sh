#!/usr/bin/env bash
# Real programs, preloaded: each program below runs on a generated input
# with glibc's malloc and with each malloc library preloaded (tinymalloc,
# mimalloc, jemalloc; any missing one is skipped), the allocators
# interleaved, REPS times. Prints, per program, the median wall time and
# peak RSS of each allocator and their ratios to mimalloc's, then geometric
# means; exits non-zero if any run failed or if the allocators' outputs
# differ (each program's stdout must be the same under every allocator).
# Programs that are not installed are skipped and named.
#
#   bench/programs.sh [REPS]          # default 3
#   MIMALLOC=/path/libmimalloc.so JEMALLOC=/path/libjemalloc.so bench/programs.sh 5
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
reps=${1:-3}
tm=$root/target/release/libtinymalloc.so
[ -f "$tm" ] || cargo build --release -p tinymalloc-capi || exit 2
libdir=/usr/lib/x86_64-linux-gnu
names=(tinymalloc glibc jemalloc mimalloc)
declare -A lib=([tinymalloc]=$tm [glibc]="" [jemalloc]=${JEMALLOC:-$libdir/libjemalloc.so.2}
                [mimalloc]=${MIMALLOC:-$libdir/libmimalloc.so.2})
active=()
for n in "${names[@]}"; do
    if [ -n "${lib[$n]}" ] && [ ! -f "${lib[$n]}" ]; then
        echo "skipping $n: ${lib[$n]} not found" >&2
    else
        active+=("$n")
    fi
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- inputs (deterministic) --------------------------------------------
awk 'BEGIN { srand(7); for (i = 0; i < 400000; i++) {
        n = int(rand() * rand() * 5000); printf "w%d%s", n, (i % 12 == 11 ? "\n" : " ") } }' \
    > "$work/words.txt"
awk 'BEGIN { srand(11); for (i = 0; i < 600000; i++) printf "%d\n", int(rand() * 1e9) }' \
    > "$work/nums.txt"
cat > "$work/py.py" <<'EOF'
import json, hashlib
rows = [{"id": i, "name": "n%d" % (i * 7919 % 10007), "tags": ["t%d" % (i % 13)] * (i % 5),
         "score": (i * 31) % 997 / 7.0} for i in range(120000)]
text = json.dumps(rows)
back = json.loads(text)
index = {}
for r in back:
    index.setdefault(r["name"], []).append(r["id"])
keys = sorted(index, key=lambda k: (len(index[k]), k))
print(len(text), len(index), keys[:3], hashlib.md5(" ".join(keys).encode()).hexdigest())
EOF
cat > "$work/db.sql" <<'EOF'
CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 250000)
INSERT INTO t SELECT i, i % 997, printf('name-%d-%d', i * 7919 % 100003, i % 17), (i * 31) % 1009 / 3.0 FROM c;
CREATE INDEX t_name ON t(name);
CREATE INDEX t_grp ON t(grp, val);
SELECT grp, count(*), printf('%.3f', avg(val)), max(name) FROM t GROUP BY grp ORDER BY 3 DESC LIMIT 5;
SELECT count(DISTINCT name), sum(length(name)) FROM t WHERE name LIKE 'name-1%';
UPDATE t SET name = name || '-x' WHERE id % 3 = 0;
SELECT count(*) FROM t a JOIN t b ON a.name = b.name || '-x' WHERE a.grp < 50;
EOF
cat > "$work/wc.pl" <<'EOF'
my %count; my %pairs;
while (my $line = <STDIN>) {
    my @w = split ' ', $line;
    $count{$_}++ for @w;
    $pairs{"$w[$_] $w[$_+1]"}++ for 0 .. $#w - 1;
}
my @top = (sort { $count{$b} <=> $count{$a} || $a cmp $b } keys %count)[0 .. 9];
print scalar(keys %count), " ", scalar(keys %pairs), " @top\n";
EOF
cat > "$work/wc.awk" <<'EOF'
{ for (i = 1; i <= NF; i++) { c[$i]++; if (i > 1) p[$(i-1) " " $i]++ } }
END { n = 0; for (k in c) n++; m = 0; for (k in p) m++; print n, m, c["w1"], c["w100"] }
EOF
cat > "$work/t.tcl" <<'EOF'
set d [dict create]
for {set i 0} {$i < 200000} {incr i} {
    set k "key[expr {$i * 7919 % 20011}]"
    dict lappend d $k [string repeat x [expr {$i % 40}]]
}
set total 0
dict for {k v} $d { incr total [string length [join $v ,]] }
puts "[dict size $d] $total"
EOF
cat > "$work/n.js" <<'EOF'
const m = new Map();
for (let i = 0; i < 400000; i++) {
  const k = 'k' + (i * 7919 % 50021);
  const a = m.get(k) || [];
  a.push({ i, s: 'v'.repeat(i % 30), t: [i % 7, i % 11] });
  m.set(k, a);
}
let total = 0;
for (const [k, a] of m) total += JSON.stringify(a).length;
console.log(m.size, total);
EOF
awk 'BEGIN { for (f = 0; f < 400; f++) {
        printf "int f%d(int *a, int n) { int s = 0; for (int i = 0; i < n; i++) { if (a[i] %% %d == 0) s += a[i] * %d; else s ^= a[i] >> %d; } return s; }\n", f, f % 7 + 2, f, f % 5
        printf "struct s%d { int x[%d]; double y; }; double g%d(struct s%d *p) { double r = p->y; for (int i = 0; i < %d; i++) r += p->x[i] * 0.5; return r; }\n", f, f % 9 + 1, f, f, f % 9 + 1 } }' \
    > "$work/big.c"

# name | program that must exist | command (run by bash -c with the
# allocator preloaded only into the program: see run())
progs=(
    "python|python3|python3 $work/py.py"
    "sqlite3|sqlite3|sqlite3 :memory: < $work/db.sql"
    "perl|perl|perl $work/wc.pl < $work/words.txt"
    "awk|awk|awk -f $work/wc.awk $work/words.txt"
    "sort|sort|sort -n $work/nums.txt | md5sum"
    "bc|bc|echo 'scale=2500; 4*a(1)' | bc -l | md5sum"
    "tclsh|tclsh|tclsh $work/t.tcl"
    "gcc|gcc|gcc -O2 -c -o /dev/null $work/big.c && echo compiled"
    "xz|xz|xz -T2 -6 -c $work/words.txt | md5sum"
    "git|git|git -C $root log -p -n 300 | md5sum"
    "node|node|node $work/n.js"
)

# run NAME ALLOCATOR REP: runs the command with the allocator preloaded
# (LD_PRELOAD is set for the whole pipeline: every process of it uses the
# allocator); appends "seconds rss_kib" to the times file, stdout to a file.
run() {
    local cmd=$1 a=$2 out=$3 tfile=$4
    local pre=${lib[$a]}
    if ! /usr/bin/time -o "$tfile.one" -f '%e %M' env ${pre:+LD_PRELOAD=$pre} bash -c "$cmd" > "$out" 2> "$out.err"; then
        echo "FAILED: $a: $cmd" >&2
        head -n 3 "$out.err" >&2
        return 1
    fi
    cat "$tfile.one" >> "$tfile"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

failed=0
declare -A tsum rsum cells
printf '%-9s' "program"
for a in "${active[@]}"; do printf '%22s' "$a"; done
echo
printf '%-9s' ""
for a in "${active[@]}"; do printf '%22s' "time(s) rss(MiB)"; done
echo "   ratio to mimalloc: tinymalloc time / rss"
for p in "${progs[@]}"; do
    IFS='|' read -r name need cmd <<< "$p"
    if ! command -v "$need" > /dev/null; then
        echo "$name: skipped ($need not installed)"
        continue
    fi
    for r in $(seq "$reps"); do
        for k in "${!active[@]}"; do
            a=${active[$(( (k + r) % ${#active[@]} ))]}
            run "$cmd" "$a" "$work/$name.$a.out" "$work/$name.$a.t" || failed=1
        done
    done
    ref=""
    printf '%-9s' "$name"
    declare -A med=() rss=()
    for a in "${active[@]}"; do
        if [ ! -s "$work/$name.$a.t" ]; then printf '%22s' "failed"; continue; fi
        med[$a]=$(cut -d' ' -f1 "$work/$name.$a.t" | median)
        rss[$a]=$(cut -d' ' -f2 "$work/$name.$a.t" | median)
        printf '%13s %8.1f' "${med[$a]}" "$(echo "${rss[$a]} / 1024" | bc -l)"
        sum=$(md5sum < "$work/$name.$a.out")
        if [ -z "$ref" ]; then ref=$sum; elif [ "$sum" != "$ref" ]; then
            echo; echo "MISMATCH: $name output under $a differs" >&2; failed=1
        fi
    done
    if [ -n "${med[tinymalloc]:-}" ] && [ -n "${med[mimalloc]:-}" ]; then
        for a in "${active[@]}"; do
            [ -n "${med[$a]:-}" ] || continue
            tr=$(echo "${med[$a]} / ${med[mimalloc]}" | bc -l)
            rr=$(echo "${rss[$a]} / ${rss[mimalloc]}" | bc -l)
            tsum[$a]=$(echo "${tsum[$a]:-0} + l($tr)" | bc -l)
            rsum[$a]=$(echo "${rsum[$a]:-0} + l($rr)" | bc -l)
            cells[$a]=$(( ${cells[$a]:-0} + 1 ))
        done
        printf '   %.2fx / %.2fx' "$(echo "${med[tinymalloc]} / ${med[mimalloc]}" | bc -l)" \
            "$(echo "${rss[tinymalloc]} / ${rss[mimalloc]}" | bc -l)"
    fi
    echo
    unset med rss
done
echo
echo "geometric means of ratios to mimalloc (time, peak RSS; lower is better):"
for a in "${active[@]}"; do
    [ -n "${cells[$a]:-}" ] || continue
    printf '  %-11s %.3fx %.3fx  (%d programs)\n' "$a" \
        "$(echo "e(${tsum[$a]} / ${cells[$a]})" | bc -l)" \
        "$(echo "e(${rsum[$a]} / ${cells[$a]})" | bc -l)" "${cells[$a]}"
done
exit $failed
