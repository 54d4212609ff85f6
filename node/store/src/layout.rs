//! On-disk layout: where each file of the store lives, and parsing names found on disk.
//!
//! ```text
//! DIR/objects/<first 2 chars of id>/<id>/manifest      canonical manifest encoding
//! DIR/objects/<first 2 chars of id>/<id>/chunks/<i>    chunk i (decimal, no leading zeros)
//! DIR/objects/<first 2 chars of id>/<id>/pinned        marker: pinned (holds the writer's pid)
//! DIR/tmp/<pid>.<seq>.<kind>                           temporaries and trash of process <pid>
//! ```
//!
//! An object exists once its `manifest` file exists; chunk files and the marker are only
//! meaningful beside one.

use std::path::{Path, PathBuf};

use nearcast_proto::content::ObjectId;

pub(crate) const OBJECTS_DIR: &str = "objects";
pub(crate) const TMP_DIR: &str = "tmp";
pub(crate) const MANIFEST_FILE: &str = "manifest";
pub(crate) const CHUNKS_DIR: &str = "chunks";
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

    pub fn chunks_dir(&self, id: &ObjectId) -> PathBuf {
        self.object_dir(id).join(CHUNKS_DIR)
    }

    pub fn chunk_path(&self, id: &ObjectId, index: u32) -> PathBuf {
        self.chunks_dir(id).join(index.to_string())
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

/// The chunk index named by a chunk file name, if canonical (decimal, no leading zeros).
pub(crate) fn parse_chunk_name(name: &str) -> Option<u32> {
    let index: u32 = name.parse().ok()?;
    (index.to_string() == name).then_some(index)
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
        assert_eq!(parse_chunk_name("12"), Some(12));
        assert_eq!(parse_chunk_name("012"), None);
        assert_eq!(parse_chunk_name("+1"), None);
        assert_eq!(parse_chunk_name("x"), None);
    }
}
