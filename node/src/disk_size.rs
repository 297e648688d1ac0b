//! How many bytes a repository takes on disk: its files' lengths, counted on the blocking pool
//! (symbolic links are not followed).

use std::path::{Path, PathBuf};

/// The bytes of the regular files under `dir`.
pub async fn of(dir: PathBuf) -> std::io::Result<u64> {
    tokio::task::spawn_blocking(move || walk(&dir))
        .await
        .map_err(std::io::Error::other)?
}

fn walk(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0u64;
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            // The kind comes with the directory listing: only files are asked for their length.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                // A file removed while counting (a repack's old pack) is not counted.
                let Ok(meta) = entry.metadata() else { continue };
                total = total.saturating_add(meta.len());
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn counts_files_below_and_not_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("objects/pack")).expect("mkdir");
        std::fs::write(dir.path().join("HEAD"), b"0123456789").expect("write");
        std::fs::write(dir.path().join("objects/pack/p.pack"), vec![0u8; 1000]).expect("write");
        std::os::unix::fs::symlink("/usr", dir.path().join("link")).expect("symlink");
        assert_eq!(super::of(dir.path().to_owned()).await.expect("size"), 1010);
        assert!(super::of(dir.path().join("missing")).await.is_err());
    }
}
