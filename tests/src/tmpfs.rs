//! A size-limited tmpfs for disk-full tests (needs root), and a file filling it to the last byte.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

/// A tmpfs of a fixed size, unmounted when dropped (then its mount point is removed).
pub struct Tmpfs {
    /// Where it is mounted.
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts one of `size_mb` MiB (needs root).
    pub fn mount(size_mb: u32) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mf-tmpfs-")
            .tempdir()
            .expect("tempdir");
        let path = dir.path().to_owned();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(&path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount a tmpfs (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { path, _dir: dir }
    }
}

impl Tmpfs {
    /// Fills the filesystem to the last byte; dropping the [`Filler`] frees the space.
    pub fn fill(&self) -> Filler {
        let path = self.path.join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0x5a; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
        let mut byte = [0u8; 1];
        while f.write_all(&byte).is_ok() {
            byte[0] ^= 1;
        }
        Filler(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// The file taking a [`Tmpfs`]'s space; removed when dropped.
pub struct Filler(PathBuf);

impl Drop for Filler {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
