//! `nearcast-seeder add`: publishes files and directory trees into a seeder's store, pinned.

use std::path::{Path, PathBuf};

use anyhow::Context;
use nearcast_store::Store;

/// Media type from a file name's extension.
pub fn media_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "svg" => "image/svg+xml",
        "txt" | "md" => "text/plain; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "json" => "application/json",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            collect(&e, out)?;
        }
    } else if meta.is_file() {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// Publishes `paths` into the store under `data`, printing `ID  PATH` per file.
pub fn add(data: &Path, paths: &[PathBuf]) -> anyhow::Result<()> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files)?;
    }
    std::fs::create_dir_all(data)
        .with_context(|| format!("cannot create data directory {}", data.display()))?;
    let store = Store::open(&data.join("store"), None)
        .with_context(|| format!("cannot open the store in {}", data.display()))?;
    for f in files {
        let id = store
            .add_file(&f, media_type(&f))
            .with_context(|| format!("cannot publish {}", f.display()))?;
        println!("{id}  {}", f.display());
    }
    Ok(())
}
