//! `nearcast-seeder add` publishes files with stable ids into a store that survives reopening.

use std::process::Command;

fn add(data: &std::path::Path, paths: &[&std::path::Path]) -> Vec<(String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_nearcast-seeder"))
        .arg("add")
        .arg("--data")
        .arg(data)
        .args(paths)
        .output()
        .expect("run nearcast-seeder");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once("  ")
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect()
}

#[test]
fn add_prints_stable_ids_per_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = dir.path().join("files");
    std::fs::create_dir_all(files.join("sub")).expect("mkdir");
    std::fs::write(files.join("a.txt"), b"hello nearcast").expect("write");
    let big: Vec<u8> = (0..700_000u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(files.join("sub/b.jpg"), &big).expect("write");
    let data = dir.path().join("seed");
    let first = add(&data, &[&files]);
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(first.iter().any(|(_, p)| p.ends_with("a.txt")));
    // Publishing again (a restart, another process) gives the same ids.
    let second = add(&data, &[&files]);
    assert_eq!(first, second);
    // Nonexistent input is a clear error.
    let out = Command::new(env!("CARGO_BIN_EXE_nearcast-seeder"))
        .args(["add", "--data"])
        .arg(&data)
        .arg(dir.path().join("missing"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}
