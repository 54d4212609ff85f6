//! Publishing: turning a file or bytes into a pinned object, reading the source once, one chunk
//! at a time (a 256 MiB file never sits in memory).
//!
//! The object's bytes are written in one sequential pass to a temporary data file while the
//! manifest is built (its id is only known at the end), and fsynced; then the pin marker is
//! written, the data file is renamed into place, the `held` log naming every chunk is written
//! (temporary, fsync, rename, fsync of the directory) and the manifest goes last. An object
//! therefore appears to other processes only when it is complete and pinned, and a crash before
//! that leaves only leftovers that the next open removes.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use nearcast_proto::content::{
    CHUNK_SIZE, ContentError, INLINE_MAX, MAX_OBJECT_SIZE, ManifestBuilder, ObjectId,
};

use crate::atomic::{self, TempFile};
use crate::error::{Result, StoreError};
use crate::held;
use crate::scan;
use crate::store::Store;

/// Reads until `buf` is full or the source ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl Store {
    /// Publishes the file at `path` as a pinned object of type `media_type`.
    pub fn add_file(&self, path: &Path, media_type: &str) -> Result<ObjectId> {
        let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
        self.publish(file, media_type, path)
    }

    /// Publishes `data` as a pinned object of type `media_type`.
    pub fn add_bytes(&self, data: &[u8], media_type: &str) -> Result<ObjectId> {
        self.publish(data, media_type, Path::new("<bytes>"))
    }

    /// Publishes everything `reader` yields as a pinned object of type `media_type`.
    pub fn add_reader(&self, reader: impl Read, media_type: &str) -> Result<ObjectId> {
        self.publish(reader, media_type, Path::new("<reader>"))
    }

    fn publish(&self, mut reader: impl Read, media_type: &str, source: &Path) -> Result<ObjectId> {
        let mut builder = ManifestBuilder::new(media_type);
        // The temporary data file, created with the first chunk (inline objects have none).
        let mut staged: Option<(TempFile, File)> = None;
        let mut buf = vec![0u8; CHUNK_SIZE as usize];
        let mut total: u64 = 0;
        loop {
            let n = read_full(&mut reader, &mut buf).map_err(|e| StoreError::io(source, e))?;
            total += n as u64;
            if total > MAX_OBJECT_SIZE {
                return Err(StoreError::InvalidManifest(ContentError::Malformed(
                    format!("object larger than {MAX_OBJECT_SIZE} bytes"),
                )));
            }
            let data = buf.get(..n).unwrap_or_default();
            builder.update(data);
            // A short read is the end; a last partial chunk is stored unless the object is inline.
            if n == buf.len() || (n > 0 && total > INLINE_MAX) {
                if staged.is_none() {
                    staged = Some(TempFile::create(&self.layout.tmp)?);
                }
                if let Some((temp, file)) = staged.as_mut() {
                    file.write_all(data)
                        .map_err(|e| StoreError::io(temp.path(), e))?;
                }
            }
            if n < buf.len() {
                break;
            }
        }
        if let Some((temp, file)) = &staged {
            file.sync_all()
                .map_err(|e| StoreError::io(temp.path(), e))?;
        }
        let manifest = builder.finish();
        manifest.validate().map_err(StoreError::InvalidManifest)?;
        let id = manifest.id();
        atomic::create_dir_durable(&self.layout.object_dir(&id))?;
        self.write_pin_marker(&id)?;
        if let Some((temp, file)) = staged {
            drop(file);
            temp.rename_to(&self.layout.data_path(&id))?;
            // Its fsync of the object directory makes the data file's rename durable too.
            let all = vec![true; manifest.chunk_count() as usize];
            held::rewrite(&self.layout.tmp, &self.layout.held_path(&id), &all)?;
        }
        let bytes = manifest.encode();
        atomic::write_atomic(&self.layout.tmp, &self.layout.manifest_path(&id), &bytes)?;
        let entry = scan::load_entry(
            &self.layout,
            &id,
            &manifest,
            bytes.len() as u64,
            scan::now_secs(),
        )?;
        {
            let mut idx = self.lock();
            idx.insert(id, entry);
            idx.cache_manifest(id, Arc::new(manifest));
        }
        tracing::debug!(%id, size = total, source = %source.display(), "published");
        Ok(id)
    }
}
