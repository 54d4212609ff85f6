//! Map files on disk (feature `fs`): loading, crash-safe writing (temporary file in the same
//! directory, fsync, rename, directory fsync) and the text of `nearcast-seeder asmap lookup`.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::{AsMap, AsMapError};

/// A file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Reading, writing or renaming failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file's content is not a valid map or table.
    #[error("{path}: {source}")]
    Map {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        source: AsMapError,
    },
    /// No input files were given.
    #[error("no input files given")]
    NoInput,
}

impl FileError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        FileError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Reads and decodes a map file.
pub fn load_map_file(path: &Path) -> Result<AsMap, FileError> {
    let bytes = std::fs::read(path).map_err(|e| FileError::io(path, e))?;
    AsMap::from_bytes(&bytes).map_err(|source| FileError::Map {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes bytes to `path` crash-safely: a temporary file in the same directory, fsync, rename
/// over `path`, then fsync of the directory. A crash leaves either the old or the new file.
pub fn write_map_file(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "asmap".to_string());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| FileError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| FileError::io(&tmp, e))?;
        f.sync_all().map_err(|e| FileError::io(&tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| FileError::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    // Make the rename durable; not every platform can open a directory, so failures to open
    // are ignored.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The text `nearcast-seeder asmap lookup FILE IP...` prints: a summary line of the map, each
/// address's prefix and origin AS (or "no route"), and for exactly two addresses their AS
/// distance.
pub fn lookup_cli(map_file: &Path, ips: &[IpAddr]) -> Result<String, FileError> {
    let map = load_map_file(map_file)?;
    let mut out = format!(
        "map {}: {} prefixes ({} IPv4, {} IPv6), {} ASes, {} AS edges\n",
        map_file.display(),
        map.prefix_count(),
        map.prefix_count_v4(),
        map.prefix_count_v6(),
        map.as_count(),
        map.edge_count()
    );
    out.push_str(&map.describe_lookup(ips));
    Ok(out)
}
