//! The node's LFS objects: `<root>/objects/ab/cd/<oid>`. Each is written to `<root>/tmp/` first
//! and moved into place only once its size and SHA-256 match what was asked, so a download that
//! fails midway or brings other bytes is never kept, and nothing half-written is ever served.
//! An object's modification time is its last use ([`LfsStore::touch`]); [`LfsStore::evict_to`]
//! removes the least recently used ones past a bound (a reader holding one open keeps reading it).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::lfs::oid::LfsOid;

/// Why an object could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or directory of the store.
    #[error("{path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// More or fewer bytes than the object's size.
    #[error("LFS object {oid}: expected {expected} bytes, got {got}")]
    Size {
        /// The object.
        oid: LfsOid,
        /// Its size, as asked.
        expected: u64,
        /// What came (at least).
        got: u64,
    },
    /// The bytes are another object's.
    #[error("LFS object {oid}: the content's SHA-256 is {got}")]
    Hash {
        /// The object asked for.
        oid: LfsOid,
        /// What the bytes hash to.
        got: LfsOid,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The store under one root directory.
#[derive(Debug, Clone)]
pub struct LfsStore {
    objects: PathBuf,
    tmp: PathBuf,
}

impl LfsStore {
    /// Opens (creating) the store at `root`; files left in its `tmp/` by a process that stopped
    /// mid-download are removed.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let (objects, tmp) = (root.join("objects"), root.join("tmp"));
        std::fs::create_dir_all(&objects).map_err(io(&objects))?;
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        Ok(Self { objects, tmp })
    }

    /// Where object `oid` lives (whether or not it is there).
    pub fn path(&self, oid: &LfsOid) -> PathBuf {
        self.objects.join(oid.rel_path())
    }

    /// The object's size, if the store holds it.
    pub async fn size(&self, oid: &LfsOid) -> Option<u64> {
        tokio::fs::metadata(self.path(oid))
            .await
            .ok()
            .map(|m| m.len())
    }

    /// The object opened for reading, with its size, if the store holds it.
    pub async fn open_object(
        &self,
        oid: &LfsOid,
    ) -> Result<Option<(tokio::fs::File, u64)>, StoreError> {
        let path = self.path(oid);
        match tokio::fs::File::open(&path).await {
            Ok(f) => {
                let len = f.metadata().await.map_err(io(&path))?.len();
                Ok(Some((f, len)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Marks object `oid` as used now (eviction takes the least recently used first).
    pub async fn touch(&self, oid: &LfsOid) {
        let path = self.path(oid);
        let _ = tokio::task::spawn_blocking(move || {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()))
        })
        .await;
    }

    /// Every object: (last use, size, path). Blocking: walks the store.
    fn walk(&self) -> Result<Vec<(std::time::SystemTime, u64, PathBuf)>, StoreError> {
        let mut all = Vec::new();
        let mut dirs = vec![self.objects.clone()];
        while let Some(dir) = dirs.pop() {
            for e in std::fs::read_dir(&dir).map_err(io(&dir))? {
                let e = e.map_err(io(&dir))?;
                let Ok(meta) = e.metadata() else { continue };
                if meta.is_dir() {
                    dirs.push(e.path());
                } else {
                    let used = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                    all.push((used, meta.len(), e.path()));
                }
            }
        }
        Ok(all)
    }

    /// How many objects the store holds and their bytes. Blocking: walks the store.
    pub fn usage(&self) -> Result<(u64, u64), StoreError> {
        let all = self.walk()?;
        let bytes = all
            .iter()
            .fold(0u64, |b, (_, len, _)| b.saturating_add(*len));
        Ok((all.len() as u64, bytes))
    }

    /// Removes the least recently used objects until the store holds at most `max` bytes;
    /// returns how many objects and bytes went. Blocking: walks the store.
    pub fn evict_to(&self, max: u64) -> Result<(usize, u64), StoreError> {
        let mut all = self.walk()?;
        let mut total = all
            .iter()
            .fold(0u64, |b, (_, len, _)| b.saturating_add(*len));
        all.sort();
        let (mut removed, mut freed) = (0usize, 0u64);
        for (_, len, path) in all {
            if total <= max {
                break;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    total -= len;
                    removed += 1;
                    freed += len;
                }
                // Gone already (another eviction): counts as gone.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => total -= len,
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Ok((removed, freed))
    }

    /// Starts writing object `oid` of `size` bytes.
    pub async fn writer(&self, oid: &LfsOid, size: u64) -> Result<ObjectWriter, StoreError> {
        let mut name = [0u8; 8];
        getrandom::getrandom(&mut name).expect("the OS random source is available");
        let tmp = self.tmp.join(format!(
            "{oid}.{}",
            mirrorfarm_common::farm::proof::hex(&name)
        ));
        let file = tokio::fs::File::create(&tmp).await.map_err(io(&tmp))?;
        Ok(ObjectWriter {
            file,
            tmp,
            dest: self.path(oid),
            hasher: Sha256::new(),
            written: 0,
            expected: size,
            oid: oid.clone(),
            kept: false,
        })
    }
}

/// An object being written: bytes are hashed as they come; [`ObjectWriter::commit`] keeps it if
/// they are the object's, and dropping it without that removes what was written.
pub struct ObjectWriter {
    file: tokio::fs::File,
    tmp: PathBuf,
    dest: PathBuf,
    hasher: Sha256,
    written: u64,
    expected: u64,
    oid: LfsOid,
    kept: bool,
}

impl ObjectWriter {
    /// Appends `chunk`; refuses bytes past the object's size.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        let got = self.written.saturating_add(chunk.len() as u64);
        if got > self.expected {
            return Err(StoreError::Size {
                oid: self.oid.clone(),
                expected: self.expected,
                got,
            });
        }
        self.file.write_all(chunk).await.map_err(io(&self.tmp))?;
        // tokio's file hands the write to a blocking thread and returns; readers following the
        // file must find the bytes there once `written` says so.
        self.file.flush().await.map_err(io(&self.tmp))?;
        self.hasher.update(chunk);
        self.written = got;
        Ok(())
    }

    /// The file being written (readers may follow it; it is moved or removed at the end).
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Keeps the object if its size and SHA-256 are right (durably, then moved into place);
    /// otherwise removes what was written and says why.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        if self.written != self.expected {
            return Err(StoreError::Size {
                oid: self.oid.clone(),
                expected: self.expected,
                got: self.written,
            });
        }
        let got = LfsOid::from_digest(&std::mem::take(&mut self.hasher).finalize());
        if got != self.oid {
            return Err(StoreError::Hash {
                oid: self.oid.clone(),
                got,
            });
        }
        self.file.sync_all().await.map_err(io(&self.tmp))?;
        if let Some(dir) = self.dest.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
        }
        tokio::fs::rename(&self.tmp, &self.dest)
            .await
            .map_err(io(&self.dest))?;
        self.kept = true;
        Ok(())
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if !self.kept {
            // One unlink of a file in the store's own directory.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid_of(data: &[u8]) -> LfsOid {
        LfsOid::from_digest(&Sha256::digest(data))
    }

    fn tmp_files(root: &Path) -> usize {
        std::fs::read_dir(root.join("tmp"))
            .expect("tmp dir")
            .count()
    }

    #[tokio::test]
    async fn only_the_right_bytes_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LfsStore::open(dir.path()).expect("open");
        let data = b"large file content".repeat(1000);
        let oid = oid_of(&data);
        assert_eq!(store.size(&oid).await, None);

        // Other bytes of the right size: refused, nothing kept.
        let mut w = store.writer(&oid, data.len() as u64).await.expect("writer");
        let mut other = data.clone();
        other[0] ^= 1;
        w.write(&other).await.expect("write");
        assert!(matches!(w.commit().await, Err(StoreError::Hash { .. })));
        assert_eq!(store.size(&oid).await, None);
        assert_eq!(tmp_files(dir.path()), 0);

        // Too few bytes, too many bytes: refused.
        let mut w = store.writer(&oid, data.len() as u64).await.expect("writer");
        w.write(&data[..10]).await.expect("write");
        assert!(matches!(
            w.commit().await,
            Err(StoreError::Size { got: 10, .. })
        ));
        let mut w = store.writer(&oid, 5).await.expect("writer");
        assert!(matches!(w.write(&data).await, Err(StoreError::Size { .. })));
        drop(w);
        assert_eq!(tmp_files(dir.path()), 0);

        // A download abandoned midway leaves nothing.
        let mut w = store.writer(&oid, data.len() as u64).await.expect("writer");
        w.write(&data[..100]).await.expect("write");
        assert_eq!(tmp_files(dir.path()), 1);
        drop(w);
        assert_eq!(tmp_files(dir.path()), 0);
        assert_eq!(store.size(&oid).await, None);

        // The right bytes, in pieces: kept, readable.
        let mut w = store.writer(&oid, data.len() as u64).await.expect("writer");
        for piece in data.chunks(777) {
            w.write(piece).await.expect("write");
        }
        assert_eq!(w.written(), data.len() as u64);
        w.commit().await.expect("commit");
        assert_eq!(store.size(&oid).await, Some(data.len() as u64));
        let (_, len) = store.open_object(&oid).await.expect("open").expect("held");
        assert_eq!(len, data.len() as u64);
        assert_eq!(std::fs::read(store.path(&oid)).expect("read"), data);
        assert!(store.path(&oid).starts_with(dir.path().join("objects")));
    }

    #[tokio::test]
    async fn the_least_recently_used_objects_go_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LfsStore::open(dir.path()).expect("open");
        let mut oids = Vec::new();
        for i in 0..4u8 {
            let data = vec![i; 1000];
            let oid = oid_of(&data);
            let mut w = store.writer(&oid, 1000).await.expect("writer");
            w.write(&data).await.expect("write");
            w.commit().await.expect("commit");
            // Distinct times of last use, oldest first.
            let when =
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + u64::from(i));
            std::fs::File::options()
                .write(true)
                .open(store.path(&oid))
                .and_then(|f| f.set_modified(when))
                .expect("set time");
            oids.push(oid);
        }
        // The oldest is used again: it is now the newest.
        store.touch(&oids[0]).await;
        assert_eq!(store.evict_to(4000).expect("evict"), (0, 0));
        assert_eq!(store.evict_to(2500).expect("evict"), (2, 2000));
        let held: Vec<bool> = {
            let mut v = Vec::new();
            for o in &oids {
                v.push(store.size(o).await.is_some());
            }
            v
        };
        assert_eq!(held, [true, false, false, true]);
        assert_eq!(store.evict_to(0).expect("evict"), (2, 2000));
    }

    #[test]
    fn leftovers_of_a_stopped_process_are_removed_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("tmp")).expect("mkdir");
        std::fs::write(dir.path().join("tmp/half"), b"half an object").expect("write");
        LfsStore::open(dir.path()).expect("open");
        assert_eq!(tmp_files(dir.path()), 0);
    }
}
