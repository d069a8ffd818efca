//! PostgreSQL with libtinymalloc.so preloaded into every process: `initdb`,
//! the server (a postmaster that forks a process per connection, with
//! shared memory and signals between them), an SQL script whose results
//! are compared with the same run without the library, and `pgbench` with
//! four clients at once, checked by the invariant of its transactions.
//! Run plain, preloaded, and preloaded in secure mode, like the other real
//! programs (`real_programs.rs`).
//!
//! The server refuses to run as root: as root (CI) every PostgreSQL
//! command runs as the `postgres` user, which Debian's package creates, in
//! a directory under the system's temporary directory that it owns, with
//! its own copy of the library (the build directory may not be readable
//! by that user).

mod common;

use common::{mode, run, so_path, Outcome};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(300);

/// The directory of the newest PostgreSQL's server programs.
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("postgres").exists() && b.join("pgbench").exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed: install it with `apt-get install postgresql` \
             (.ci/apt-packages.txt lists what these tests need)"
        )
    })
}

/// The user and group the server runs as: the `postgres` user when this
/// process is root, else none (this process's own).
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("running as root, and there is no postgres user to run the server as");
    let f: Vec<&str> = line.split(':').collect();
    Some((f[2].parse().unwrap(), f[3].parse().unwrap()))
}

/// One run's setting: where, as whom, with which allocator.
struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    user: Option<(u32, u32)>,
    lib: Option<PathBuf>,
    secure: bool,
}

impl Cluster {
    fn new(name: &str, preloaded: bool, secure: bool) -> Cluster {
        let dir = std::env::temp_dir().join(format!("tm-pg-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let lib = preloaded.then(|| {
            let copy = dir.join("libtinymalloc.so");
            std::fs::copy(so_path(), &copy).unwrap();
            copy
        });
        let user = server_user();
        if let Some((uid, gid)) = user {
            for p in [Some(dir.as_path()), lib.as_deref()].into_iter().flatten() {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
            }
        }
        Cluster {
            dir,
            bin: bin_dir(),
            user,
            lib,
            secure,
        }
    }

    /// A PostgreSQL program, as the server's user, with the allocator.
    fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.current_dir(&self.dir)
            .env("HOME", &self.dir)
            .env("PGHOST", &self.dir)
            .env("PGPORT", "5432")
            .env("PGDATABASE", "postgres")
            .env_remove("LD_PRELOAD");
        mode(&mut cmd, self.secure);
        if let Some(lib) = &self.lib {
            cmd.env("LD_PRELOAD", lib);
        }
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn run(&self, program: &str, args: &[&str], stdin: &str) -> Outcome {
        let mut cmd = self.cmd(program);
        cmd.args(args);
        let out = run(&mut cmd, stdin.as_bytes(), LIMIT);
        out.assert_success(&format!(
            "{program} {args:?} (preloaded: {})",
            self.lib.is_some()
        ));
        assert!(
            !out.stderr.contains("tinymalloc"),
            "{program}: {}",
            out.stderr
        );
        out
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Whether libtinymalloc is mapped in process `pid`.
    fn mapped(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .unwrap_or_else(|e| panic!("no maps of process {pid}: {e}"))
            .contains("libtinymalloc")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A server left behind by a failed assertion is stopped at once.
        if self.data().join("postmaster.pid").exists() {
            let data = self.data();
            let _ = self
                .cmd("pg_ctl")
                .args(["stop", "-m", "immediate", "-w", "-D"])
                .arg(&data)
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Tables, indexes, sorts (one spilling to disk), hash joins, window
/// functions, arrays, JSON and big numbers: results that must not depend
/// on the allocator.
const SQL: &str = r"
CREATE TABLE items(id int PRIMARY KEY, grp int, name text, tags text[], doc jsonb);
INSERT INTO items
  SELECT g, g % 97, 'name-' || lpad(((g * 7919) % 50000)::text, 6, '0'),
         ARRAY(SELECT (g * j % 1000)::text FROM generate_series(1, g % 7) j),
         jsonb_build_object('v', g, 'w', repeat('x', g % 300))
  FROM generate_series(1, 50000) g;
CREATE INDEX ON items(grp, name);
ANALYZE items;
SELECT grp, count(*), min(name), max(name), sum(length(doc::text))
  FROM items GROUP BY grp ORDER BY grp LIMIT 5;
SELECT md5(string_agg(name || array_to_string(tags, ','), ';' ORDER BY name, id)) FROM items;
SELECT count(*), sum(r) FROM
  (SELECT rank() OVER (PARTITION BY grp ORDER BY name DESC) r FROM items) s;
SELECT count(*), sum(a.id - b.id) FROM items a JOIN items b
  ON a.grp = b.grp AND substr(a.name, 6, 3) = substr(b.name, 6, 3);
WITH RECURSIVE fib(n, a, b) AS
  (SELECT 1, 0::numeric, 1::numeric UNION ALL SELECT n + 1, b, a + b FROM fib WHERE n < 3000)
  SELECT md5(b::text) FROM fib WHERE n = 3000;
SET work_mem = '64kB';
SELECT md5(string_agg(x::text, ',' ORDER BY x)) FROM
  (SELECT (g * 7919) % 100003 AS x FROM generate_series(1, 200000) g) s;
SELECT doc->>'v', jsonb_array_length(jsonb_agg(tags)) FROM items
  WHERE id % 5000 = 0 GROUP BY doc->>'v' ORDER BY 1;
";

/// The invariant of pgbench's transactions: every account, teller and
/// branch balance moved by the history's deltas, one history row each.
const CHECK: &str = r"
SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT sum(tbalance) FROM pgbench_tellers),
       (SELECT sum(tbalance) FROM pgbench_tellers) = (SELECT sum(bbalance) FROM pgbench_branches),
       (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT sum(delta) FROM pgbench_history),
       (SELECT count(*) FROM pgbench_history);
";

/// One whole run: returns what must be the same under every allocator.
fn session(name: &str, preloaded: bool, secure: bool) -> String {
    let c = Cluster::new(name, preloaded, secure);
    let data = c.data();
    let data_s = data.to_str().unwrap();
    let dir_s = c.dir.to_str().unwrap().to_string();
    c.run(
        "initdb",
        &["-D", data_s, "-A", "trust", "--no-sync", "-E", "UTF8"],
        "",
    );
    let opts = format!("-k {dir_s} -p 5432 -c listen_addresses= -c fsync=off");
    let log = c.dir.join("server.log");
    c.run(
        "pg_ctl",
        &[
            "start",
            "-w",
            "-D",
            data_s,
            "-l",
            log.to_str().unwrap(),
            "-o",
            &opts,
        ],
        "",
    );
    let pid = std::fs::read_to_string(data.join("postmaster.pid")).unwrap();
    let pid = pid.lines().next().unwrap().trim().to_string();
    let psql = ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"];
    let mut out = c.run("psql", &psql, SQL).stdout;
    // A backend reads its own maps (a superuser may read any file).
    let backend = c.run(
        "psql",
        &psql,
        "SELECT position('libtinymalloc' in pg_read_file('/proc/self/maps')) > 0;",
    );
    assert_eq!(
        backend.stdout.trim(),
        if preloaded { "t" } else { "f" },
        "{name}: libtinymalloc mapped in a backend?"
    );
    assert_eq!(
        Cluster::mapped(&pid),
        preloaded,
        "{name}: libtinymalloc mapped in the postmaster?"
    );
    c.run("pgbench", &["-i", "-s", "2", "-q"], "");
    let bench = c.run("pgbench", &["-n", "-c", "4", "-j", "2", "-t", "250"], "");
    assert!(
        bench.stdout.contains("number of failed transactions: 0"),
        "{name}: pgbench: {}",
        bench.stdout
    );
    out.push_str(&c.run("psql", &psql, CHECK).stdout);
    c.run("pg_ctl", &["stop", "-w", "-m", "fast", "-D", data_s], "");
    let log = std::fs::read_to_string(&log).unwrap();
    for bad in [
        "tinymalloc",
        "PANIC",
        "terminated by signal",
        "was terminated",
    ] {
        assert!(
            !log.contains(bad),
            "{name}: the server log says {bad:?}:\n{log}"
        );
    }
    out
}

#[test]
fn postgres_server_sql_and_pgbench() {
    let plain = session("plain", false, false);
    assert!(
        plain.trim_end().ends_with("t|t|t|1000"),
        "pgbench's invariant does not hold even without the library:\n{plain}"
    );
    assert_eq!(
        plain,
        session("preload", true, false),
        "output differs when preloaded"
    );
    assert_eq!(
        plain,
        session("secure", true, true),
        "output differs when preloaded in secure mode"
    );
}
