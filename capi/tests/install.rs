//! `make install` / `make uninstall` with DESTDIR and PREFIX, and the
//! installed pkg-config file: examples/hello.c builds with
//! `pkg-config --cflags --libs tinymalloc` against the staged install.

mod common;

use common::{lib_dir, profile_dir, repo_root, require, run, scratch};
use std::process::Command;
use std::time::Duration;

/// Runs make in the repository root with the test's profile and target dir.
fn make(target: &str, destdir: &std::path::Path) {
    lib_dir(); // built already: make's cargo build is then a no-op
    let dir = profile_dir();
    let profile = match dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev".to_string(),
        other => other.to_string(),
    };
    let status = Command::new("make")
        .current_dir(repo_root())
        .arg(target)
        .arg("PREFIX=/usr/local")
        .arg(format!("DESTDIR={}", destdir.display()))
        .arg(format!("PROFILE={profile}"))
        .arg(format!("TARGET_DIR={}", dir.parent().unwrap().display()))
        .status()
        .expect("make: install it with `apt-get install make`");
    assert!(status.success(), "make {target} failed");
}

#[test]
fn make_install_pkg_config_and_uninstall() {
    require("/usr/bin/make", "make");
    require("/usr/bin/pkg-config", "pkg-config");
    let stage = scratch("install");
    make("install", &stage);
    let prefix = stage.join("usr/local");
    let files = [
        "lib/libtinymalloc.so",
        "lib/libtinymalloc.a",
        "include/tinymalloc.h",
        "lib/pkgconfig/tinymalloc.pc",
    ];
    for f in files {
        assert!(prefix.join(f).is_file(), "{f} not installed");
    }
    let pc = std::fs::read_to_string(prefix.join("lib/pkgconfig/tinymalloc.pc")).unwrap();
    assert!(
        pc.contains("prefix=/usr/local\n") && !pc.contains('@'),
        "{pc}"
    );

    // pkg-config finds it; the sysroot maps /usr/local into the stage.
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "tinymalloc"])
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .env("PKG_CONFIG_SYSROOT_DIR", &stage)
        .output()
        .unwrap();
    assert!(flags.status.success(), "{flags:?}");
    let flags = String::from_utf8(flags.stdout).unwrap();
    assert!(flags.contains("-ltinymalloc"), "{flags}");
    let exe = stage.join("hello");
    let status = Command::new("cc")
        .arg(repo_root().join("examples/hello.c"))
        .args(flags.split_whitespace())
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "hello.c does not build with pkg-config's flags: {flags}"
    );
    let mut cmd = Command::new(&exe);
    cmd.env("LD_LIBRARY_PATH", prefix.join("lib"));
    let out = run(&mut cmd, b"", Duration::from_secs(60));
    out.assert_success("installed hello");
    assert!(out.stdout.contains("hello from tinymalloc"), "{out:#?}");

    make("uninstall", &stage);
    for f in files {
        assert!(!prefix.join(f).exists(), "{f} left after uninstall");
    }
}
