//! Real programs from Debian, run with libtinymalloc.so preloaded: their
//! output must equal that of the same run without it, and the library must
//! really be mapped in the process (each program reads its own, or its
//! parent's, /proc/PID/maps and prints `TM_MAPPED=0|1`; for xz and g++'s
//! compiler proper the test reads it while the process waits for input).
//! Each preloaded run happens twice: in default mode and in secure mode
//! (`TINYMALLOC_SECURE=1`), which must not flag anything either.
//!
//! A missing program is a failure with an install hint, never a skip:
//! `.ci/run` installs the packages listed in `.ci/apt-packages.txt`.

mod common;

use common::{mode, preload, require, run, scratch, so_path, wait_with_limit};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(300);

/// Splits the `TM_MAPPED=` line out of `stdout`: (the rest, the flag).
fn split_mapped(stdout: &str) -> (String, Option<bool>) {
    let mut mapped = None;
    let mut rest = String::new();
    for line in stdout.lines() {
        match line.strip_prefix("TM_MAPPED=") {
            Some(v) => mapped = Some(v.trim() == "1"),
            None => {
                rest.push_str(line);
                rest.push('\n');
            }
        }
    }
    (rest, mapped)
}

/// Runs `make(dir)` commands one after the other, in a fresh scratch
/// directory, plain, then preloaded, then preloaded in secure mode;
/// compares their stdout and checks the `TM_MAPPED` flag of each run.
fn compare(name: &str, stdin: &[u8], make: impl Fn(&Path) -> Vec<Command>) {
    let mut outputs = Vec::new();
    for (preloaded, secure) in [(false, false), (true, false), (true, true)] {
        let dir = scratch(&format!(
            "{name}-{}",
            match (preloaded, secure) {
                (false, _) => "plain",
                (true, false) => "preload",
                (true, true) => "secure",
            }
        ));
        let mut stdout = String::new();
        for mut cmd in make(&dir) {
            cmd.current_dir(&dir);
            mode(&mut cmd, secure);
            if preloaded {
                preload(&mut cmd);
            }
            let out = run(&mut cmd, stdin, LIMIT);
            let what = format!("{name} (preloaded: {preloaded}, secure: {secure}) {cmd:?}");
            out.assert_success(&what);
            assert!(!out.stderr.contains("tinymalloc"), "{what}: {}", out.stderr);
            stdout.push_str(&out.stdout);
        }
        let (rest, mapped) = split_mapped(&stdout);
        assert_eq!(
            mapped,
            Some(preloaded),
            "{name}: libtinymalloc mapped? output:\n{stdout}"
        );
        outputs.push(rest);
    }
    assert!(!outputs[0].trim().is_empty(), "{name} printed nothing");
    assert_eq!(
        outputs[0], outputs[1],
        "{name}: output differs when preloaded"
    );
    assert_eq!(
        outputs[0], outputs[2],
        "{name}: output differs when preloaded in secure mode"
    );
}

const PYTHON_SCRIPT: &str = r#"
import hashlib, json, random, threading
random.seed(1)
data = [{"id": i, "name": "item%d" % i, "tags": [str(j) for j in range(i % 7)],
         "value": random.random()} for i in range(40000)]
text = json.dumps(data, sort_keys=True)
back = json.loads(text)
assert back == data
groups = {}
for rec in back:
    groups.setdefault(len(rec["tags"]), []).append(rec["id"])
print(len(text), sorted((k, len(v)) for k, v in groups.items()))
words = sorted("w%d" % ((i * 7919) % 100003) for i in range(200000))
print(hashlib.sha256("".join(words).encode()).hexdigest())
results = [None] * 4
def work(k):
    acc = {}
    for i in range(50000):
        acc[str(i * k)] = [i] * (i % 5)
    results[k] = sum(len(v) for v in acc.values()), len(json.dumps(sorted(acc)))
threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(results)
with open("/proc/self/maps") as f:
    print("TM_MAPPED=%d" % ("libtinymalloc" in f.read()))
"#;

#[test]
fn python3_with_threads() {
    require("/usr/bin/python3", "python3");
    compare("python3", b"", |_| {
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.args(["-s", "-c", PYTHON_SCRIPT]);
        // pymalloc would hide the allocator: use malloc for every object.
        cmd.env("PYTHONMALLOC", "malloc").env("PYTHONHASHSEED", "0");
        vec![cmd]
    });
}

const SQL_SCRIPT: &str = "
CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000)
INSERT INTO t SELECT x, x % 97, printf('name-%06d', (x * 7919) % 20000),
  (x * 31 % 1000) / 7.0 FROM c;
CREATE INDEX t_grp ON t(grp, name);
SELECT grp, count(*), sum(val), min(name), max(name) FROM t
  GROUP BY grp ORDER BY grp LIMIT 10;
SELECT count(DISTINCT name), total(val) FROM t;
SELECT group_concat(name, ',') FROM
  (SELECT name FROM t WHERE grp = 5 ORDER BY name DESC LIMIT 20);
.shell grep -q libtinymalloc /proc/$PPID/maps && echo TM_MAPPED=1 || echo TM_MAPPED=0
";

#[test]
fn sqlite3_inserts_indexes_and_aggregates() {
    require("/usr/bin/sqlite3", "sqlite3");
    compare("sqlite3", SQL_SCRIPT.as_bytes(), |dir| {
        let mut cmd = Command::new("/usr/bin/sqlite3");
        cmd.arg(dir.join("test.db"));
        vec![cmd]
    });
}

const PERL_SCRIPT: &str = r#"
my %h;
for my $i (1 .. 200000) { $h{"k" . ($i * 7919 % 100003)} .= $i % 10; }
my @keys = sort { length($h{$a}) <=> length($h{$b}) or $a cmp $b } keys %h;
print scalar(@keys), " $keys[0] $keys[-1]\n";
my $text = join(" ", map { "word$_" } 1 .. 50000);
my $count = () = $text =~ /word\d*7\b/g;
(my $t2 = $text) =~ s/word(\d+)/W<$1>/g;
my @sorted = sort { $b <=> $a } map { $_ * 37 % 1009 } 1 .. 100000;
print "$count ", length($t2), " @sorted[0 .. 4]\n";
open(my $m, "<", "/proc/self/maps") or die "maps: $!";
my $maps = do { local $/; <$m> };
print "TM_MAPPED=", ($maps =~ /libtinymalloc/ ? 1 : 0), "\n";
"#;

#[test]
fn perl_hashes_regexes_sorting() {
    require("/usr/bin/perl", "perl");
    compare("perl", b"", |_| {
        let mut cmd = Command::new("/usr/bin/perl");
        cmd.args(["-e", PERL_SCRIPT]);
        vec![cmd]
    });
}

/// A Java program: threads filling maps, a parallel stream, zlib through
/// `java.util.zip` and direct buffers (both on the C heap), regexes. The
/// JVM's own threads (compilers, the collector) allocate through `malloc`
/// too, and `javac`, a JVM itself, compiles it preloaded.
const JAVA_PROGRAM: &str = r#"
import java.nio.ByteBuffer;
import java.nio.file.*;
import java.util.*;
import java.util.concurrent.*;
import java.util.regex.*;
import java.util.stream.*;
import java.util.zip.*;

public class T {
    public static void main(String[] args) throws Exception {
        ConcurrentHashMap<String, Integer> shared = new ConcurrentHashMap<>();
        long[] sums = new long[8];
        Thread[] threads = new Thread[8];
        for (int t = 0; t < 8; t++) {
            final int k = t;
            threads[t] = new Thread(() -> {
                HashMap<String, List<Integer>> m = new HashMap<>();
                for (int i = 0; i < 60000; i++) {
                    m.computeIfAbsent("k" + i % (5000 + k * 101), x -> new ArrayList<>()).add(i);
                    shared.merge("s" + (i % 1000), 1, Integer::sum);
                }
                long s = 0;
                for (List<Integer> v : m.values()) s += v.size() * 31L + v.get(v.size() - 1);
                sums[k] = s;
            });
            threads[t].start();
        }
        for (Thread t : threads) t.join();
        System.out.println(Arrays.toString(sums) + " " + shared.size() + " " + shared.get("s7"));

        long primes = IntStream.range(2, 300000).parallel()
            .filter(n -> IntStream.rangeClosed(2, (int) Math.sqrt(n)).noneMatch(d -> n % d == 0))
            .count();
        System.out.println("primes " + primes);

        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 200000; i++) sb.append("line ").append(i * 7919 % 100003).append('\n');
        byte[] raw = sb.toString().getBytes("UTF-8");
        CRC32 crc = new CRC32();
        for (int round = 0; round < 20; round++) {
            Deflater d = new Deflater(round % 9 + 1);
            d.setInput(raw);
            d.finish();
            byte[] buf = new byte[raw.length];
            int n = d.deflate(buf);
            d.end();
            Inflater inf = new Inflater();
            inf.setInput(buf, 0, n);
            byte[] back = new byte[raw.length];
            int m = inf.inflate(back);
            inf.end();
            if (m != raw.length || !Arrays.equals(raw, back)) throw new AssertionError("zip round " + round);
            crc.update(buf, 0, n);
        }
        System.out.println("zip " + raw.length + " " + Long.toHexString(crc.getValue()));

        long direct = 0;
        for (int i = 0; i < 2000; i++) {
            ByteBuffer b = ByteBuffer.allocateDirect(1024 + (i % 64) * 512);
            for (int j = 0; j < b.capacity(); j += 256) b.put(j, (byte) (i + j));
            direct += b.get(b.capacity() - 256) & 0xff;
        }
        System.out.println("direct " + direct);

        Matcher mt = Pattern.compile("line (\\d*7)\\b").matcher(sb);
        int hits = 0;
        while (mt.find()) hits++;
        System.out.println("regex " + hits);

        String maps = new String(Files.readAllBytes(Paths.get("/proc/self/maps")));
        System.out.println("TM_MAPPED=" + (maps.contains("libtinymalloc") ? 1 : 0));
    }
}
"#;

#[test]
fn java_threads_zip_and_direct_buffers() {
    require("/usr/bin/javac", "openjdk-17-jdk-headless");
    require("/usr/bin/java", "openjdk-17-jdk-headless");
    compare("java", b"", |dir| {
        std::fs::write(dir.join("T.java"), JAVA_PROGRAM).unwrap();
        let mut javac = Command::new("/usr/bin/javac");
        javac.args(["-J-Xmx256m", "T.java"]);
        let mut java = Command::new("/usr/bin/java");
        java.args(["-Xmx512m", "-cp", ".", "T"]);
        for cmd in [&mut javac, &mut java] {
            // No user options, no shared-archive writes into $HOME.
            cmd.env_remove("JAVA_TOOL_OPTIONS")
                .env_remove("_JAVA_OPTIONS")
                .env("HOME", dir);
        }
        vec![javac, java]
    });
}

/// The pid of a child of `parent` whose command line starts with a path
/// ending in `name` (found by each process's parent in /proc/PID/stat).
fn child_named(parent: u32, name: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // The fields after the command name, which is in parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
        if ppid == Some(parent) && argv0.ends_with(name.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

/// `g++ -O2 -c` of `source` fed on stdin, then a link and a run of the
/// program, in `dir`. Returns (the object file, the program's output,
/// whether cc1plus, the compiler proper, had libtinymalloc mapped): its
/// maps are read while it waits for the source on its stdin.
fn gxx(dir: &Path, source: &str, preloaded: bool, secure: bool) -> (Vec<u8>, String, bool) {
    let setup = |cmd: &mut Command| {
        cmd.current_dir(dir);
        mode(cmd, secure);
        if preloaded {
            preload(cmd);
        }
    };
    let mut cc = Command::new("/usr/bin/g++");
    cc.args([
        "-O2",
        "-frandom-seed=1",
        "-x",
        "c++",
        "-c",
        "-",
        "-o",
        "prog.o",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    setup(&mut cc);
    let mut child = cc.spawn().expect("g++");
    let mut stdin = child.stdin.take().unwrap();
    let start = Instant::now();
    let mapped = loop {
        let maps = child_named(child.id(), "cc1plus")
            .map(|pid| std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default())
            .unwrap_or_default();
        if maps.contains("libc.so") {
            break maps.contains("libtinymalloc");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "cc1plus did not start under g++"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    stdin.write_all(source.as_bytes()).unwrap();
    drop(stdin);
    let (status, _, err) = wait_with_limit(&mut child, LIMIT, "g++");
    let err = String::from_utf8_lossy(&err);
    assert!(status.success() && err.is_empty(), "g++ -c: {err}");
    let mut link = Command::new("/usr/bin/g++");
    link.args(["prog.o", "-o", "prog"]);
    setup(&mut link);
    let what = format!("g++ link (preloaded: {preloaded}, secure: {secure})");
    let out = run(&mut link, b"", LIMIT);
    out.assert_success(&what);
    assert!(out.stderr.is_empty(), "{what}: {}", out.stderr);
    let mut prog = Command::new(dir.join("prog"));
    setup(&mut prog);
    let out = run(&mut prog, b"", LIMIT);
    out.assert_success("the compiled program");
    let object = std::fs::read(dir.join("prog.o")).unwrap();
    (object, out.stdout, mapped)
}

#[test]
fn gxx_compiles_links_and_runs_templates() {
    require("/usr/bin/g++", "g++");
    let source = include_str!("data/templates.cpp");
    let mut results = Vec::new();
    for (preloaded, secure) in [(false, false), (true, false), (true, true)] {
        let dir = scratch(&format!("gxx-{preloaded}-{secure}"));
        let (object, output, mapped) = gxx(&dir, source, preloaded, secure);
        assert_eq!(mapped, preloaded, "cc1plus maps libtinymalloc?");
        assert!(!output.trim().is_empty(), "the program printed nothing");
        results.push((object, output));
    }
    for (i, secure) in [(1, false), (2, true)] {
        assert!(
            results[i].0 == results[0].0,
            "g++ -O2 gave another object file when preloaded (secure: {secure})"
        );
        assert_eq!(results[i].1, results[0].1, "output (secure: {secure})");
    }
}

/// A git command with a fixed identity, dates and no user/system config.
fn git(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("/usr/bin/git");
    cmd.args(args);
    cmd.env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    for who in ["AUTHOR", "COMMITTER"] {
        cmd.env(format!("GIT_{who}_NAME"), "Tiny Malloc");
        cmd.env(format!("GIT_{who}_EMAIL"), "tiny@example.com");
        cmd.env(format!("GIT_{who}_DATE"), "2024-01-01T00:00:00Z");
    }
    cmd
}

/// Writes `n` text files of various sizes in ten subdirectories.
fn write_files(repo: &Path, n: usize) {
    for i in 0..n {
        let sub = repo.join(format!("dir{}", i % 10));
        std::fs::create_dir_all(&sub).unwrap();
        let body: String = (0..(i % 50 + 1) * 20)
            .map(|l| format!("file {i} line {l}\n"))
            .collect();
        std::fs::write(sub.join(format!("f{i}.txt")), body).unwrap();
    }
}

#[test]
fn git_init_commit_log_gc() {
    require("/usr/bin/git", "git");
    compare("git", b"", |dir| {
        write_files(&dir.join("repo"), 300);
        let check =
            "!grep -q libtinymalloc /proc/$PPID/maps && echo TM_MAPPED=1 || echo TM_MAPPED=0";
        let alias = format!("alias.tmmapped={check}");
        let mut cmds = vec![git(dir, &["init", "-q", "-b", "main", "repo"])];
        for args in [
            &["add", "-A"][..],
            &["commit", "-q", "-m", "first"],
            &["mv", "dir0", "moved0"],
            &["commit", "-q", "-m", "second: move"],
            &["rm", "-q", "-r", "dir1"],
            &["commit", "-q", "-m", "third: remove"],
            &["log", "--stat", "--format=%H %s"],
            &["gc", "-q", "--aggressive"],
            &["count-objects", "-v"],
            &["fsck", "--full", "--strict"],
        ] {
            cmds.push(git(dir, &[&["-C", "repo"][..], args].concat()));
        }
        // A shell alias runs with git as its parent: read git's maps.
        cmds.push(git(dir, &["-c", &alias, "tmmapped"]));
        cmds
    });
}

/// Deterministic, compressible input for xz: lines of pseudo-random words.
fn xz_input() -> Vec<u8> {
    let mut out = Vec::with_capacity(24 << 20);
    let mut x: u64 = 12345;
    while out.len() < (24 << 20) {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let word = (x >> 33) % 5000;
        out.extend_from_slice(format!("w{word} ").as_bytes());
        if word < 400 {
            out.push(b'\n');
        }
    }
    out
}

/// Runs `xz args` fed `input` through a pipe; while xz waits for more
/// input, reads its /proc/PID/maps. Returns (output, libtinymalloc mapped).
/// `secure`: with `TINYMALLOC_SECURE=1`.
fn xz(args: &[&str], input: &[u8], preloaded: bool, secure: bool) -> (Vec<u8>, bool) {
    let mut cmd = Command::new("/usr/bin/xz");
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    mode(&mut cmd, secure);
    if preloaded {
        preload(&mut cmd);
    }
    let mut child = cmd.spawn().expect("xz");
    let maps_path = format!("/proc/{}/maps", child.id());
    let mut stdin = child.stdin.take().unwrap();
    // Less than a pipe's buffer: this write cannot block, whatever xz does.
    let (head, tail) = input.split_at(input.len().min(4096));
    stdin.write_all(head).unwrap();
    // xz is alive, waiting for more input: the loader has mapped
    // everything by the time its maps show libc (wait for it, bounded).
    let start = Instant::now();
    let mapped = loop {
        let maps = std::fs::read_to_string(&maps_path).unwrap_or_default();
        if maps.contains("libc.so") || start.elapsed() > Duration::from_secs(30) {
            break maps.contains("libtinymalloc");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let tail = tail.to_vec();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&tail).unwrap();
    });
    let (status, out, err) = wait_with_limit(&mut child, LIMIT, "xz");
    writer.join().unwrap();
    let err = String::from_utf8_lossy(&err);
    assert!(
        status.success(),
        "xz {args:?} (preloaded: {preloaded}) failed: {err}"
    );
    assert!(err.is_empty(), "xz {args:?} printed: {err}");
    (out, mapped)
}

#[test]
fn xz_multithreaded_compress_and_decompress() {
    require("/usr/bin/xz", "xz-utils");
    let input = xz_input();
    let (plain, mapped) = xz(&["-T2", "-3", "-c"], &input, false, false);
    assert!(!mapped, "libtinymalloc mapped without LD_PRELOAD?");
    for secure in [false, true] {
        let (packed, mapped) = xz(&["-T2", "-3", "-c"], &input, true, secure);
        assert!(mapped, "libtinymalloc is not mapped in the preloaded xz");
        assert_eq!(plain, packed, "xz -T2 output differs (secure: {secure})");
        let (unpacked, mapped) = xz(&["-d", "-T2", "-c"], &packed, true, secure);
        assert!(mapped);
        assert!(
            unpacked == input,
            "xz -d -T2 did not give the input back (secure: {secure})"
        );
    }
}

#[test]
fn library_path_is_absolute() {
    // LD_PRELOAD needs an absolute path (the programs run elsewhere).
    assert!(so_path().is_absolute());
}
