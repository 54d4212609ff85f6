//! Integration tests of the on-disk store: round trips, restarts, corruption, crash leftovers,
//! rejected chunks, eviction, two handles on one directory, unusable directories, damaged logs.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

use nearcast_proto::content::{CHUNK_SIZE, ObjectId, manifest_for};
use nearcast_store::{CorruptPart, Store, StoreError, StoreOptions};

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + seed as usize * 7) % 251) as u8)
        .collect()
}

fn tmp_entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir.join("tmp"))
        .expect("tmp dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[test]
fn inline_and_chunked_objects_round_trip_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let small = b"a short post".to_vec();
    let big = data(600 * 1024, 1);
    let (small_id, big_id) = {
        let store = Store::open(dir.path(), None).expect("open");
        let small_id = store.add_bytes(&small, "text/plain").expect("add small");
        let big_id = store.add_bytes(&big, "image/jpeg").expect("add big");
        assert_eq!(store.read_object(&small_id).expect("read"), small);
        assert_eq!(store.read_object(&big_id).expect("read"), big);
        assert!(store.is_complete(&small_id) && store.is_complete(&big_id));
        assert!(store.is_pinned(&big_id));
        let m = store.manifest(&big_id).expect("manifest").expect("held");
        assert_eq!(m.chunk_count(), 3);
        assert_eq!(m.id(), big_id);
        assert_eq!(store.chunks_held(&big_id).expect("held"), vec![true; 3]);
        assert!(store.chunks_held(&small_id).expect("held").is_empty());
        // Ranges across chunk boundaries.
        let off = CHUNK_SIZE as u64 - 10;
        assert_eq!(
            store.read_range(&big_id, off, 20).expect("range"),
            big[off as usize..off as usize + 20]
        );
        assert_eq!(
            store
                .read_range(&big_id, 500_000, 10_000_000)
                .expect("tail"),
            big[500_000..]
        );
        assert_eq!(store.read_range(&small_id, 2, 3).expect("inline"), b"sho");
        assert!(matches!(
            store.read_range(&big_id, big.len() as u64 + 1, 1),
            Err(StoreError::Range { .. })
        ));
        (small_id, big_id)
    };
    assert!(tmp_entries(dir.path()).is_empty());
    let store = Store::open(dir.path(), None).expect("reopen");
    let list = store.list();
    assert_eq!(list.len(), 2);
    let big_info = list.iter().find(|o| o.id == big_id).expect("listed");
    assert_eq!(big_info.size, big.len() as u64);
    assert_eq!(big_info.media_type, "image/jpeg");
    assert!(big_info.complete && big_info.pinned);
    assert_eq!(store.read_object(&small_id).expect("read"), small);
    assert_eq!(store.read_object(&big_id).expect("read"), big);
    let usage = store.usage();
    assert_eq!(usage.objects, 2);
    assert!(usage.bytes >= big.len() as u64);
    assert_eq!(usage.pinned_bytes, usage.bytes);
}

#[test]
fn add_file_streams_a_file_and_matches_add_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.bin");
    let content = data(2 * CHUNK_SIZE as usize, 3); // exact multiple of the chunk size
    fs::write(&src, &content).expect("write src");
    let store = Store::open(&dir.path().join("store"), None).expect("open");
    let id = store
        .add_file(&src, "application/octet-stream")
        .expect("add");
    assert_eq!(id, manifest_for(&content, "application/octet-stream").id());
    assert_eq!(store.read_object(&id).expect("read"), content);
    let missing = store.add_file(&dir.path().join("nope"), "x/y");
    assert!(matches!(missing, Err(StoreError::Io { .. })), "{missing:?}");
}

/// Flips one byte of chunk `index` in the data file of `id`.
fn corrupt_on_disk(store: &Store, id: &ObjectId, index: usize) {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(store.data_path(id))
        .expect("open data");
    let at = (index * CHUNK_SIZE as usize + 77) as u64;
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, at).expect("read byte");
    byte[0] ^= 0x01;
    file.write_all_at(&byte, at).expect("corrupt");
}

#[test]
fn corrupted_chunks_are_detected_removed_and_never_returned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = data(600 * 1024, 2);
    let other = data(10_000, 9);
    let store = Store::open(dir.path(), None).expect("open");
    let id = store.add_bytes(&big, "image/png").expect("add");
    let other_id = store.add_bytes(&other, "image/png").expect("add other");

    let cs = CHUNK_SIZE as usize;
    corrupt_on_disk(&store, &id, 1);
    match store.chunk(&id, 1) {
        Err(StoreError::Corrupt { id: cid, part, .. }) => {
            assert_eq!(cid, id);
            assert_eq!(part, CorruptPart::Chunk(1));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(store.chunk(&id, 1).expect("second read"), None);
    assert!(!store.has_chunk(&id, 1));
    assert!(!store.is_complete(&id));
    assert_eq!(
        store.chunks_held(&id).expect("held"),
        vec![true, false, true]
    );
    assert!(matches!(
        store.read_object(&id),
        Err(StoreError::MissingChunk { index: 1, .. })
    ));

    // The drop is recorded on disk: another handle (or a restart) does not hold it either.
    let second = Store::open(dir.path(), None).expect("second handle");
    assert_eq!(
        second.chunks_held(&id).expect("held"),
        vec![true, false, true]
    );
    drop(second);

    // Cut the data file inside chunk 2 (the short last chunk), read through read_range.
    fs::OpenOptions::new()
        .write(true)
        .open(store.data_path(&id))
        .and_then(|f| f.set_len(big.len() as u64 - 1))
        .expect("truncate");
    let err = store.read_range(&id, 2 * CHUNK_SIZE as u64, 10);
    assert!(
        matches!(
            err,
            Err(StoreError::Corrupt {
                part: CorruptPart::Chunk(2),
                ..
            })
        ),
        "{err:?}"
    );
    assert!(!store.has_chunk(&id, 2));

    // The rest is intact; refetching the chunk repairs the object.
    assert_eq!(
        store.chunk(&id, 0).expect("ok").as_deref(),
        Some(&big[..CHUNK_SIZE as usize])
    );
    assert_eq!(store.read_object(&other_id).expect("other"), other);
    store
        .put_chunk(&id, 1, big[cs..2 * cs].to_vec())
        .expect("refetch 1");
    store
        .put_chunk(&id, 2, big[2 * cs..].to_vec())
        .expect("refetch 2");
    assert_eq!(store.read_object(&id).expect("repaired"), big);
    drop(store);
    let store = Store::open(dir.path(), None).expect("reopen");
    assert!(store.is_complete(&id));
    assert_eq!(store.read_object(&id).expect("repaired"), big);
}

#[test]
fn recent_chunks_are_served_from_memory_only_while_held() {
    let dir = tempfile::tempdir().expect("tempdir");
    let content = data(3 * CHUNK_SIZE as usize, 21);
    let cs = CHUNK_SIZE as usize;
    let m = manifest_for(&content, "x/y");
    let store = Store::open(dir.path(), None).expect("open");
    let id = store.put_manifest(&m).expect("manifest");
    for i in 0..3 {
        let part = content[i * cs..(i + 1) * cs].to_vec();
        store.put_chunk(&id, i as u32, part).expect("chunk");
    }
    // Stored chunks are kept verified in memory: damage on disk afterwards is not served
    // (nor read: the kept copy answers), whole or through a range.
    corrupt_on_disk(&store, &id, 1);
    assert_eq!(
        store.chunk(&id, 1).expect("kept").as_deref(),
        Some(&content[cs..2 * cs])
    );
    assert_eq!(store.read_object(&id).expect("whole"), content);
    assert_eq!(
        store.read_range(&id, cs as u64 + 5, 10).expect("range"),
        content[cs + 5..cs + 15].to_vec()
    );
    // A handle that keeps nothing in memory reads the disk, and finds the damage.
    let cold = Store::open_with(
        dir.path(),
        StoreOptions {
            recent_chunk_bytes: 0,
            ..StoreOptions::default()
        },
    )
    .expect("cold handle");
    assert!(matches!(
        cold.chunk(&id, 1),
        Err(StoreError::Corrupt {
            part: CorruptPart::Chunk(1),
            ..
        })
    ));
    drop(cold);
    // Once the object is gone, the kept chunks are not served either.
    assert!(store.remove(&id).expect("remove"));
    assert_eq!(store.chunk(&id, 0).expect("gone"), None);
    assert!(store.read_object(&id).is_err());
}

#[test]
fn truncated_data_file_found_on_open_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = data(600 * 1024, 4);
    let cs = CHUNK_SIZE as usize;
    let id = {
        let store = Store::open(dir.path(), Some(u64::MAX)).expect("open");
        store.add_bytes(&big, "x/y").expect("add")
    };
    let path = Store::open(dir.path(), None).expect("open").data_path(&id);
    // Cut inside chunk 1: chunks 1 and 2 are gone.
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(2 * CHUNK_SIZE as u64 - 5))
        .expect("truncate");
    let store = Store::open(dir.path(), None).expect("reopen");
    assert_eq!(
        store.chunks_held(&id).expect("held"),
        vec![true, false, false]
    );
    assert_eq!(store.chunk(&id, 1).expect("absent"), None);
    assert_eq!(
        store.chunk(&id, 0).expect("ok").as_deref(),
        Some(&big[..cs])
    );
    // Storing them again repairs the object (the last one first: the file grows past the hole).
    store.put_chunk(&id, 2, big[2 * cs..].to_vec()).expect("c2");
    store
        .put_chunk(&id, 1, big[cs..2 * cs].to_vec())
        .expect("c1");
    drop(store);
    let store = Store::open(dir.path(), None).expect("reopen");
    assert!(store.is_complete(&id));
    assert_eq!(store.read_object(&id).expect("read"), big);
}

#[test]
fn damaged_held_logs_are_bounded_and_never_make_bad_bytes_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let content = data(3 * CHUNK_SIZE as usize, 12);
    let cs = CHUNK_SIZE as usize;
    let m = manifest_for(&content, "x/y");
    let id = {
        let store = Store::open(dir.path(), None).expect("open");
        let id = store.put_manifest(&m).expect("manifest");
        store.put_chunk(&id, 0, content[..cs].to_vec()).expect("c0");
        store
            .put_chunk(&id, 2, content[2 * cs..].to_vec())
            .expect("c2");
        id
    };
    let held_path = Store::open(dir.path(), None).expect("open").held_path(&id);
    let good_log = fs::read(&held_path).expect("log");
    assert_eq!(good_log.len(), 16, "one 8-byte record per chunk stored");

    // A torn last record (a crash mid-append) is ignored.
    let mut torn = good_log.clone();
    torn.extend_from_slice(&[1, 0, 0]);
    fs::write(&held_path, &torn).expect("torn");
    let store = Store::open(dir.path(), None).expect("reopen");
    assert_eq!(
        store.chunks_held(&id).expect("held"),
        vec![true, false, true]
    );
    drop(store);

    // Garbage, and a huge sparse tail, cost a bounded read; nothing in them counts as held.
    let mut junk = good_log.clone();
    junk.extend((0..4096u32).map(|i| (i * 7 + 3) as u8));
    fs::write(&held_path, &junk).expect("junk");
    fs::OpenOptions::new()
        .write(true)
        .open(&held_path)
        .and_then(|f| f.set_len(1 << 34))
        .expect("huge");
    let store = Store::open(dir.path(), None).expect("reopen");
    assert_eq!(
        store.chunks_held(&id).expect("held"),
        vec![true, false, true]
    );
    assert!(
        fs::metadata(&held_path).expect("log").len() < 1 << 20,
        "an over-long log is rewritten"
    );
    // The object still completes.
    store
        .put_chunk(&id, 1, content[cs..2 * cs].to_vec())
        .expect("c1");
    assert_eq!(store.read_object(&id).expect("read"), content);
    drop(store);

    // A log claiming a chunk whose bytes never reached the disk (a power cut without sync):
    // the chunk fails verification on read, is dropped, and is never returned.
    let fresh = data(2 * cs, 13);
    let fm = manifest_for(&fresh, "x/y");
    let store = Store::open(dir.path(), None).expect("reopen");
    let fid = store.put_manifest(&fm).expect("manifest");
    store.put_chunk(&fid, 0, fresh[..cs].to_vec()).expect("c0");
    store.put_chunk(&fid, 1, fresh[cs..].to_vec()).expect("c1");
    fs::OpenOptions::new()
        .write(true)
        .open(store.data_path(&fid))
        .and_then(|f| f.write_all_at(&vec![0u8; cs], cs as u64))
        .expect("zero chunk 1");
    drop(store);
    let store = Store::open(dir.path(), None).expect("reopen");
    assert_eq!(store.chunks_held(&fid).expect("held"), vec![true, true]);
    assert!(matches!(
        store.read_object(&fid),
        Err(StoreError::Corrupt {
            part: CorruptPart::Chunk(1),
            ..
        })
    ));
    assert_eq!(store.chunk(&fid, 1).expect("dropped"), None);
    drop(store);
    let store = Store::open(dir.path(), None).expect("reopen");
    assert_eq!(store.chunks_held(&fid).expect("held"), vec![true, false]);

    // A record whose index was altered no longer matches its check: it is not a record.
    let mut log = fs::read(store.held_path(&fid)).expect("log");
    log.truncate(8);
    log[0] ^= 1;
    fs::write(store.held_path(&fid), &log).expect("alter");
    drop(store);
    let store = Store::open(dir.path(), None).expect("reopen");
    assert_eq!(store.chunks_held(&fid).expect("held"), vec![false, false]);
}

#[test]
fn chunk_files_of_the_old_layout_are_moved_into_the_data_file_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let content = data(3 * CHUNK_SIZE as usize, 14);
    let cs = CHUNK_SIZE as usize;
    let m = manifest_for(&content, "x/y");
    let (id, object_dir) = {
        let store = Store::open(dir.path(), None).expect("open");
        let id = store.put_manifest(&m).expect("manifest");
        store.pin(&id).expect("pin");
        let d = store
            .manifest_path(&id)
            .parent()
            .expect("dir")
            .to_path_buf();
        (id, d)
    };
    // An object as the old layout kept it: manifest, pin and one file per chunk; no data file
    // or log. Chunk 1 is damaged, chunk 2 missing.
    fs::remove_file(object_dir.join("data")).expect("no data file");
    fs::remove_file(object_dir.join("held")).expect("no log");
    fs::create_dir_all(object_dir.join("chunks")).expect("old dir");
    fs::write(object_dir.join("chunks/0"), &content[..cs]).expect("old chunk 0");
    let mut bad = content[cs..2 * cs].to_vec();
    bad[7] ^= 1;
    fs::write(object_dir.join("chunks/1"), &bad).expect("old chunk 1");
    let store = Store::open(dir.path(), None).expect("reopen");
    assert!(!object_dir.join("chunks").exists());
    assert!(store.is_pinned(&id));
    assert_eq!(
        store.chunks_held(&id).expect("held"),
        vec![true, false, false]
    );
    assert_eq!(
        store.chunk(&id, 0).expect("c0").as_deref(),
        Some(&content[..cs])
    );
    store
        .put_chunk(&id, 1, content[cs..2 * cs].to_vec())
        .expect("c1");
    store
        .put_chunk(&id, 2, content[2 * cs..].to_vec())
        .expect("c2");
    drop(store);
    let store = Store::open(dir.path(), None).expect("reopen again");
    assert_eq!(store.read_object(&id).expect("read"), content);
}

#[test]
fn an_unreadable_object_is_left_out_and_the_store_still_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), None).expect("open");
    let bad = store.add_bytes(&data(300_000, 7), "x/y").expect("add");
    let keep = store.add_bytes(&data(300_000, 8), "x/y").expect("add");
    let mp = store.manifest_path(&bad);
    drop(store);
    // A manifest that cannot be read (here a directory in its place: EISDIR on read).
    fs::remove_file(&mp).expect("remove manifest");
    fs::create_dir(&mp).expect("directory in its place");
    let store = Store::open(dir.path(), None).expect("the store opens despite one bad object");
    assert_eq!(
        store.read_object(&keep).expect("other object"),
        data(300_000, 8)
    );
    assert!(!store.is_complete(&bad));
    assert!(
        store.data_path(&bad).exists(),
        "the unreadable object is left on disk untouched"
    );
}

#[test]
fn corrupted_manifest_is_reported_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), None).expect("open");
    let id = store.add_bytes(&data(300_000, 5), "x/y").expect("add");
    let keep = store.add_bytes(b"keep me", "text/plain").expect("add");
    let mp = store.manifest_path(&id);
    let mut bytes = fs::read(&mp).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&mp, &bytes).expect("corrupt");
    drop(store);
    // On open the object is dropped; a second handle opened before sees Corrupt on lookup.
    let a = Store::open(dir.path(), None).expect("open");
    assert!(!a.contains(&id));
    assert_eq!(a.manifest(&id).expect("lookup"), None);
    assert_eq!(a.read_object(&keep).expect("other"), b"keep me");

    let id2 = a.add_bytes(&data(300_000, 6), "x/y").expect("add");
    let b = Store::open(dir.path(), None).expect("second handle");
    let mp2 = a.manifest_path(&id2);
    fs::write(&mp2, b"garbage").expect("corrupt");
    let got = b.manifest(&id2);
    assert!(
        matches!(
            got,
            Err(StoreError::Corrupt {
                part: CorruptPart::Manifest,
                ..
            })
        ),
        "{got:?}"
    );
    assert!(!mp2.exists());
    assert!(tmp_entries(dir.path()).is_empty());
}

#[test]
fn crash_leftovers_are_cleaned_and_not_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kept = data(300_000, 7);
    let kept_id = {
        let store = Store::open(dir.path(), None).expect("open");
        store.add_bytes(&kept, "x/y").expect("add")
    };
    // A writer (pid that cannot exist) killed mid-write: temporaries, trash, an unparseable name.
    let tmp = dir.path().join("tmp");
    fs::write(tmp.join("4294967295.7.tmp"), vec![1u8; 1000]).expect("temp");
    fs::create_dir_all(tmp.join("4294967295.8.trash")).expect("trash");
    fs::write(tmp.join("4294967295.8.trash/data"), b"x").expect("trash data");
    fs::write(tmp.join("weird"), b"x").expect("junk");
    // A publish killed after its pin marker, data file and log, before the manifest.
    let half = data(600 * 1024, 8);
    let half_id = manifest_for(&half, "x/y").id();
    let half_dir = {
        let s = Store::open(dir.path(), None).expect("open");
        s.manifest_path(&half_id)
            .parent()
            .expect("object dir")
            .to_path_buf()
    };
    fs::create_dir_all(&half_dir).expect("dirs");
    fs::write(half_dir.join("data"), &half).expect("data");
    fs::write(half_dir.join("held"), b"").expect("log");
    fs::write(half_dir.join("pinned"), b"4294967295\n").expect("marker");
    // A temporary of a live process (ours) is left alone.
    let live = tmp.join(format!("{}.999999.tmp", std::process::id()));
    fs::write(&live, b"in flight").expect("live temp");

    let store = Store::open(dir.path(), None).expect("reopen");
    let names = tmp_entries(dir.path());
    assert_eq!(names, vec![format!("{}.999999.tmp", std::process::id())]);
    assert!(!half_dir.exists(), "half-written object removed");
    let list = store.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, kept_id);
    assert!(!store.contains(&half_id));
    assert_eq!(store.read_object(&kept_id).expect("kept"), kept);
    fs::remove_file(live).expect("cleanup");
}

#[test]
fn wrong_chunks_are_rejected_and_nothing_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), None).expect("open");
    let content = data(600 * 1024, 10);
    let m = manifest_for(&content, "image/jpeg");
    let id = m.id();
    let cs = CHUNK_SIZE as usize;
    // No manifest yet.
    assert!(matches!(
        store.put_chunk(&id, 0, content[..cs].to_vec()),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.put_manifest(&m).expect("put manifest"), id);
    assert!(!store.is_complete(&id));
    let before = store.usage().bytes;
    let mut bad = content[..cs].to_vec();
    bad[5] ^= 1;
    assert!(matches!(
        store.put_chunk(&id, 0, bad.to_vec()),
        Err(StoreError::Rejected { index: 0, .. })
    ));
    assert!(matches!(
        store.put_chunk(&id, 0, content[..cs - 1].to_vec()),
        Err(StoreError::Rejected { .. })
    ));
    assert!(matches!(
        store.put_chunk(&id, 9, content[..cs].to_vec()),
        Err(StoreError::Rejected { .. })
    ));
    assert_eq!(
        fs::metadata(store.held_path(&id)).expect("log").len(),
        0,
        "nothing recorded as held"
    );
    assert_eq!(store.chunks_held(&id).expect("held"), vec![false; 3]);
    assert_eq!(store.usage().bytes, before);
    assert!(tmp_entries(dir.path()).is_empty());
    assert_eq!(store.chunk(&id, 0).expect("absent"), None);
    // The right chunks are accepted in any order.
    store
        .put_chunk(&id, 2, content[2 * cs..].to_vec())
        .expect("c2");
    store.put_chunk(&id, 0, content[..cs].to_vec()).expect("c0");
    store
        .put_chunk(&id, 1, content[cs..2 * cs].to_vec())
        .expect("c1");
    assert!(store.is_complete(&id));
    assert!(!store.is_pinned(&id));
    assert_eq!(store.read_object(&id).expect("read"), content);
}

#[test]
fn eviction_respects_budget_lru_order_pins_and_protection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let size = 300_000;
    // Room for three objects of ~300 KB, not four.
    let budget = 3 * size as u64 + 3 * 1024;
    let store = Store::open(dir.path(), Some(budget)).expect("open");
    let put = |seed: u8| -> ObjectId {
        let content = data(size, seed);
        let m = manifest_for(&content, "x/y");
        let id = store.put_manifest(&m).expect("manifest");
        let cs = CHUNK_SIZE as usize;
        store.put_chunk(&id, 0, content[..cs].to_vec()).expect("c0");
        store.put_chunk(&id, 1, content[cs..].to_vec()).expect("c1");
        id
    };
    let pinned = store.add_bytes(&data(size, 100), "x/y").expect("pinned");
    let a = put(1);
    let b = put(2);
    let t = now();
    // Uses are recorded forward only; `pinned` keeps its publication time.
    store.touch(&b, t + 100);
    store.touch(&a, t + 200);
    store.touch(&pinned, t - 1000);
    // Adding c goes over budget: b is the least recently used unpinned object.
    let c = put(3);
    let ids: Vec<ObjectId> = store.list().iter().map(|o| o.id).collect();
    assert!(ids.contains(&pinned), "pinned never evicted");
    assert!(ids.contains(&a) && ids.contains(&c));
    assert!(!ids.contains(&b), "LRU evicted");
    assert!(store.usage().bytes <= budget);
    assert!(!store.manifest_path(&b).exists());

    // Protected objects survive; the object being written is never its own victim.
    store.touch(&c, t + 300);
    store.protect(&a);
    let d = put(4);
    store.touch(&d, t + 400);
    let ids: Vec<ObjectId> = store.list().iter().map(|o| o.id).collect();
    assert!(ids.contains(&a) && ids.contains(&d) && ids.contains(&pinned));
    assert!(!ids.contains(&c));
    store.unprotect(&a);

    // Unpinning makes the pinned object the coldest one.
    store.unpin(&pinned).expect("unpin");
    let e = put(5);
    let ids: Vec<ObjectId> = store.list().iter().map(|o| o.id).collect();
    assert!(!ids.contains(&pinned));
    assert!(ids.contains(&e));
    let usage = store.usage();
    assert!(usage.bytes <= budget);
    assert_eq!(usage.pinned_bytes, 0);
    assert_eq!(usage.budget, Some(budget));

    // Last use survives a restart (persisted as the manifest's mtime), so order is kept.
    drop(store);
    let store = Store::open(dir.path(), Some(budget)).expect("reopen");
    assert_eq!(store.list().len(), 3);
    let infos = store.list();
    let a_use = infos.iter().find(|o| o.id == a).expect("a").last_use;
    assert_eq!(a_use, t + 200);
    // A smaller budget on open evicts right away, coldest first (e, then a).
    drop(store);
    let store = Store::open(dir.path(), Some(size as u64 + 2048)).expect("reopen small");
    let ids: Vec<ObjectId> = store.list().iter().map(|o| o.id).collect();
    assert_eq!(ids, vec![d]);
    assert_eq!(store.evict_to_budget().expect("nothing more"), vec![]);
}

#[test]
fn second_handle_publishes_and_first_finds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Store::open(dir.path(), None).expect("daemon");
    let before = daemon.add_bytes(b"first", "text/plain").expect("add");
    let adder = Store::open(dir.path(), None).expect("add process");
    let big = data(700 * 1024, 11);
    let id = adder.add_bytes(&big, "video/mp4").expect("publish");
    let small = adder
        .add_bytes(b"hello", "text/plain")
        .expect("publish small");
    // Found on demand by id...
    assert!(daemon.is_complete(&id));
    assert!(daemon.is_pinned(&id));
    assert_eq!(daemon.read_object(&id).expect("read"), big);
    // ...and by a rescan for listings.
    assert_eq!(daemon.list().len(), 2);
    daemon.rescan().expect("rescan");
    assert_eq!(daemon.list().len(), 3);
    assert!(daemon.list().iter().any(|o| o.id == small));
    // The adder opening did not disturb the daemon's objects; removals are seen too.
    assert_eq!(adder.read_object(&before).expect("read"), b"first");
    assert!(adder.remove(&small).expect("remove"));
    assert!(!adder.remove(&small).expect("remove twice"));
    daemon.rescan().expect("rescan");
    assert!(!daemon.contains(&small));
    assert_eq!(daemon.list().len(), 2);
}

#[test]
fn many_threads_share_one_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = std::sync::Arc::new(Store::open(dir.path(), None).expect("open"));
    let handles: Vec<_> = (0..4u8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..5u8)
                    .map(|i| {
                        let content = data(1000 + 70_000 * i as usize, t * 10 + i);
                        let id = store.add_bytes(&content, "x/y").expect("add");
                        assert_eq!(store.read_object(&id).expect("read"), content);
                        id
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut n = 0;
    for h in handles {
        n += h.join().expect("thread").len();
    }
    assert_eq!(store.list().len(), n);
}

#[test]
fn unusable_directories_give_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    fs::write(&file, b"x").expect("file");
    let err = Store::open(&file, None).expect_err("file is not a dir");
    assert!(matches!(err, StoreError::Unusable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("a-file") && msg.contains("not a directory"),
        "{msg}"
    );
    // A store whose objects/ is a file.
    let bad = dir.path().join("bad");
    fs::create_dir(&bad).expect("dir");
    fs::write(bad.join("objects"), b"x").expect("file");
    let err = Store::open(&bad, None).expect_err("objects is a file");
    assert!(err.to_string().contains("objects"), "{err}");
    // A path below a file.
    let err = Store::open(&file.join("sub"), None).expect_err("below a file");
    assert!(matches!(err, StoreError::Unusable { .. }), "{err:?}");
}

#[test]
fn remove_and_remanifest_inline_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), None).expect("open");
    let m = manifest_for(b"tiny", "text/plain");
    let id = store.put_manifest(&m).expect("put");
    assert!(store.is_complete(&id));
    assert_eq!(store.read_object(&id).expect("read"), b"tiny");
    assert_eq!(store.chunk(&id, 0).expect("no chunks"), None);
    assert_eq!(store.put_manifest(&m).expect("again"), id);
    assert!(store.remove(&id).expect("remove"));
    assert!(matches!(
        store.read_object(&id),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.manifest(&id).expect("gone"), None);
    assert!(matches!(store.pin(&id), Err(StoreError::NotFound(_))));
    assert_eq!(store.usage().objects, 0);
    assert_eq!(store.usage().bytes, 0);
}
