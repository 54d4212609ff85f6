//! A real kill -9: a child process (this test binary, re-run) publishes and downloads objects in
//! a loop and is killed at an arbitrary moment; re-opening must give a consistent store.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nearcast_proto::content::{CHUNK_SIZE, manifest_for};
use nearcast_store::{Store, StoreOptions};

const DIR_VAR: &str = "NEARCAST_STORE_CRASH_DIR";
const NOSYNC_VAR: &str = "NEARCAST_STORE_CRASH_NOSYNC";

fn data(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64 * 131 + seed * 17) % 253) as u8)
        .collect()
}

/// The child's work: never returns on its own when run by the parent.
fn writer_loop(dir: &Path) {
    let options = StoreOptions {
        budget: Some(8 * 1024 * 1024),
        sync_fetched: std::env::var_os(NOSYNC_VAR).is_none(),
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir, options).expect("child open");
    let cs = CHUNK_SIZE as usize;
    for i in 0u64.. {
        // Publishing (the seeder's `add`).
        store
            .add_bytes(&data(300_000 + (i as usize % 7) * 50_000, i), "x/y")
            .expect("add");
        // Downloading (the peer daemon): manifest first, then chunks.
        let content = data(700_000, i + 1_000_000);
        let m = manifest_for(&content, "x/z");
        let id = store.put_manifest(&m).expect("manifest");
        for (index, chunk) in content.chunks(cs).enumerate() {
            store
                .put_chunk(&id, index as u32, chunk.to_vec())
                .expect("chunk");
        }
        if i % 3 == 0 {
            store.remove(&id).expect("remove");
        }
    }
}

#[test]
fn crash_child() {
    // Only does something when started by `kill_9_leaves_a_consistent_store`.
    if let Some(dir) = std::env::var_os(DIR_VAR) {
        writer_loop(Path::new(&dir));
    }
}

#[test]
fn kill_9_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    for round in 0..3u64 {
        let mut command = Command::new(&exe);
        if round == 1 {
            // Unsynced chunks lose nothing to a process crash either.
            command.env(NOSYNC_VAR, "1");
        }
        let mut child = command
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(DIR_VAR, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        std::thread::sleep(Duration::from_millis(300 + round * 170));
        child.kill().expect("kill -9"); // SIGKILL on Unix
        let status = child.wait().expect("wait");
        assert!(!status.success(), "child was killed, not finished");

        let store = Store::open(dir.path(), None).expect("reopen after kill");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("tmp"))
            .expect("tmp")
            .collect();
        assert!(leftovers.is_empty(), "leftovers: {leftovers:?}");
        let list = store.list();
        assert!(!list.is_empty(), "the child wrote something");
        for info in &list {
            let m = store
                .manifest(&info.id)
                .expect("manifest verifies")
                .expect("manifest held");
            assert_eq!(m.id(), info.id);
            // Published objects appear only once complete.
            if info.pinned {
                assert!(info.complete, "pinned object {} incomplete", info.id);
            }
            for (index, held) in store
                .chunks_held(&info.id)
                .expect("held")
                .iter()
                .enumerate()
            {
                let got = store
                    .chunk(&info.id, index as u32)
                    .expect("no corrupt chunk");
                assert_eq!(got.is_some(), *held);
            }
        }
    }
}
