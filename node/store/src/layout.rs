//! On-disk layout: where each file of the store lives, and parsing names found on disk.
//!
//! ```text
//! DIR/objects/<first 2 chars of id>/<id>/manifest   canonical manifest encoding
//! DIR/objects/<first 2 chars of id>/<id>/data       the object's bytes: chunk i at i * chunk_size
//!                                                   (sparse: chunks not held are holes)
//! DIR/objects/<first 2 chars of id>/<id>/held       append-only log of 8-byte records naming the
//!                                                   chunks held (see the `held` module)
//! DIR/objects/<first 2 chars of id>/<id>/pinned     marker: pinned (holds the writer's pid)
//! DIR/tmp/<pid>.<seq>.<kind>                        temporaries and trash of process <pid>
//! ```
//!
//! An object exists once its `manifest` file exists; `data`, `held` and the marker are only
//! meaningful beside one. Inline objects (no chunks) have neither `data` nor `held`. A chunk is
//! held once its bytes are in `data` and a record naming it is in `held`; the bytes are verified
//! against the manifest on every read all the same.
//!
//! Stores written before this layout kept one file per chunk in `<id>/chunks/<i>`; when the
//! store is opened, the chunks of such a directory that verify are moved into `data` and
//! `held`, and the directory is removed.

use std::path::{Path, PathBuf};

use nearcast_proto::content::ObjectId;

pub(crate) const OBJECTS_DIR: &str = "objects";
pub(crate) const TMP_DIR: &str = "tmp";
pub(crate) const MANIFEST_FILE: &str = "manifest";
pub(crate) const DATA_FILE: &str = "data";
pub(crate) const HELD_FILE: &str = "held";
/// Per-chunk files of the old layout, moved into the data file on open.
pub(crate) const OLD_CHUNKS_DIR: &str = "chunks";
pub(crate) const PINNED_FILE: &str = "pinned";

/// Paths of one store directory.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub root: PathBuf,
    pub objects: PathBuf,
    pub tmp: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
            objects: root.join(OBJECTS_DIR),
            tmp: root.join(TMP_DIR),
        }
    }

    pub fn object_dir(&self, id: &ObjectId) -> PathBuf {
        let s = id.to_string();
        self.objects.join(shard_of(&s)).join(&s)
    }

    pub fn manifest_path(&self, id: &ObjectId) -> PathBuf {
        self.object_dir(id).join(MANIFEST_FILE)
    }

    pub fn data_path(&self, id: &ObjectId) -> PathBuf {
        self.object_dir(id).join(DATA_FILE)
    }

    pub fn held_path(&self, id: &ObjectId) -> PathBuf {
        self.object_dir(id).join(HELD_FILE)
    }

    pub fn old_chunks_dir(&self, id: &ObjectId) -> PathBuf {
        self.object_dir(id).join(OLD_CHUNKS_DIR)
    }

    pub fn pinned_path(&self, id: &ObjectId) -> PathBuf {
        self.object_dir(id).join(PINNED_FILE)
    }
}

/// The shard directory name of a text id (its first two characters).
fn shard_of(id_text: &str) -> &str {
    id_text.get(..2).unwrap_or(id_text)
}

/// The id named by object directory `name` inside shard `shard`, if the name is canonical.
pub(crate) fn parse_object_dir(shard: &str, name: &str) -> Option<ObjectId> {
    let id: ObjectId = name.parse().ok()?;
    (id.to_string() == name && shard_of(name) == shard).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_non_canonical() {
        let id = ObjectId([7; 32]);
        let layout = Layout::new(Path::new("/s"));
        let dir = layout.object_dir(&id);
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let shard = dir
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert_eq!(parse_object_dir(shard, name), Some(id));
        assert_eq!(parse_object_dir("zz", name), None);
        assert_eq!(parse_object_dir(shard, "nope"), None);
        assert_eq!(layout.data_path(&id), dir.join("data"));
        assert_eq!(layout.held_path(&id), dir.join("held"));
    }
}
