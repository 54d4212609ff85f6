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

/// Adds the files under a path named on the command line. The named path itself must be a
/// file or a directory (a symlink to one is followed); a fault there stops everything before
/// anything is published.
fn collect_named(path: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() {
        collect_tree(path, out);
    } else if meta.is_file() {
        out.push(path.to_path_buf());
    } else {
        anyhow::bail!(
            "{} is neither a regular file nor a directory",
            path.display()
        );
    }
    Ok(())
}

/// Adds the regular files under directory `dir`, sorted by name. Entries that cannot be read
/// (a broken symlink, no permission) are reported and skipped, and so are symlinks to
/// directories (which could loop) and special files: one bad entry does not stop a tree.
fn collect_tree(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => {
            eprintln!("warning: skipping {}: cannot list it: {e}", dir.display());
            return;
        }
    };
    entries.sort();
    let readable = |path: &Path, meta: std::io::Result<std::fs::Metadata>| match meta {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("warning: skipping {}: {e}", path.display());
            None
        }
    };
    for path in entries {
        let Some(link) = readable(&path, std::fs::symlink_metadata(&path)) else {
            continue;
        };
        if link.is_dir() {
            collect_tree(&path, out);
            continue;
        }
        // A symlink is followed to a file only.
        let Some(meta) = readable(&path, std::fs::metadata(&path)) else {
            continue;
        };
        if meta.is_file() {
            out.push(path);
        } else if meta.is_dir() {
            eprintln!(
                "warning: skipping {}: a symlink to a directory (name the directory itself to publish it)",
                path.display()
            );
        } else {
            eprintln!("warning: skipping {}: not a regular file", path.display());
        }
    }
}

/// Publishes `paths` into the store under `data`, printing `ID  PATH` per file.
pub fn add(data: &Path, paths: &[PathBuf]) -> anyhow::Result<()> {
    let mut files = Vec::new();
    for p in paths {
        collect_named(p, &mut files)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_with_bad_entries_publishes_the_good_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("site");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::write(root.join("ok.txt"), "ok").expect("write");
        std::fs::write(root.join("sub/b.txt"), "b").expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            symlink("/nonexistent/nearcast-test", root.join("dangling")).expect("symlink");
            symlink(root.join("ok.txt"), root.join("link-to-ok")).expect("symlink");
            // A loop: sub/up -> site.
            symlink(&root, root.join("sub/up")).expect("symlink");
        }
        let mut files = Vec::new();
        collect_named(&root, &mut files).expect("collect");
        let mut want = vec![root.join("ok.txt"), root.join("sub/b.txt")];
        #[cfg(unix)]
        want.insert(0, root.join("link-to-ok"));
        assert_eq!(files, want);

        let mut none = Vec::new();
        let e = collect_named(&dir.path().join("missing"), &mut none).expect_err("missing");
        assert!(e.to_string().contains("cannot read"), "{e}");
        #[cfg(unix)]
        {
            let e = collect_named(Path::new("/dev/null"), &mut none).expect_err("device");
            assert!(e.to_string().contains("neither a regular file"), "{e}");
        }
        assert!(none.is_empty());
    }
}
