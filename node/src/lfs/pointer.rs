//! LFS pointer files (git-lfs `docs/spec.md`): what git stores in place of a large file.
//!
//! ```text
//! version https://git-lfs.github.com/spec/v1
//! oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393
//! size 12345
//! ```
//! Keys after `version` are sorted; each line ends with `\n`; other keys (extensions) may come
//! between them. A blob larger than [`MAX_POINTER`] is never a pointer (git-lfs's own cut-off).

use crate::lfs::oid::LfsOid;

/// The largest blob git-lfs reads as a possible pointer.
pub const MAX_POINTER: usize = 1024;

/// The versions of the pointer format git-lfs accepts.
const VERSIONS: [&str; 2] = [
    "https://git-lfs.github.com/spec/v1",
    "https://hawser.github.com/spec/v1",
];

/// An LFS object a pointer names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pointer {
    /// Its ID.
    pub oid: LfsOid,
    /// Its size in bytes.
    pub size: u64,
}

impl Pointer {
    /// Reads a blob as a pointer file; `None` for anything else (most blobs).
    pub fn parse(blob: &[u8]) -> Option<Self> {
        if blob.len() > MAX_POINTER || !blob.ends_with(b"\n") {
            return None;
        }
        let text = std::str::from_utf8(blob).ok()?;
        let mut lines = text[..text.len() - 1].split('\n');
        let version = lines.next()?.strip_prefix("version ")?;
        if !VERSIONS.contains(&version) {
            return None;
        }
        let (mut oid, mut size, mut last_key) = (None, None, "");
        for line in lines {
            let (key, value) = line.split_once(' ')?;
            if key.is_empty() || key <= last_key {
                return None;
            }
            last_key = key;
            match key {
                "oid" => oid = LfsOid::parse(value.strip_prefix("sha256:")?),
                "size" => {
                    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    size = value.parse::<u64>().ok();
                }
                _ => {}
            }
        }
        Some(Self {
            oid: oid?,
            size: size?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OID: &str = "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393";

    fn pointer(body: &str) -> Option<Pointer> {
        Pointer::parse(body.as_bytes())
    }

    #[test]
    fn reads_what_git_lfs_writes_and_nothing_else() {
        let p = pointer(&format!(
            "version https://git-lfs.github.com/spec/v1\noid sha256:{OID}\nsize 12345\n"
        ))
        .expect("pointer");
        assert_eq!(p.oid.as_str(), OID);
        assert_eq!(p.size, 12345);
        // An extension key sorted between them is allowed.
        assert!(pointer(&format!(
            "version https://git-lfs.github.com/spec/v1\next-0-foo sha256:{OID}\noid sha256:{OID}\nsize 1\n"
        ))
        .is_some());
        for bad in [
            format!("version https://git-lfs.github.com/spec/v1\noid sha256:{OID}\nsize 12345"),
            format!("version https://example.com/spec/v1\noid sha256:{OID}\nsize 1\n"),
            format!("version https://git-lfs.github.com/spec/v1\nsize 1\noid sha256:{OID}\n"),
            format!("version https://git-lfs.github.com/spec/v1\noid sha256:{OID}\n"),
            format!("version https://git-lfs.github.com/spec/v1\noid md5:{OID}\nsize 1\n"),
            format!("version https://git-lfs.github.com/spec/v1\noid sha256:{OID}\nsize -1\n"),
            format!("version https://git-lfs.github.com/spec/v1\noid sha256:{OID}\nsize 99999999999999999999999\n"),
            format!("oid sha256:{OID}\nsize 1\n"),
            "just a small file\n".to_owned(),
            String::new(),
        ] {
            assert!(pointer(&bad).is_none(), "{bad:?} read as a pointer");
        }
        let mut big =
            format!("version https://git-lfs.github.com/spec/v1\noid sha256:{OID}\nsize 1\n");
        big.push_str(&"x".repeat(MAX_POINTER));
        assert!(Pointer::parse(big.as_bytes()).is_none());
    }
}
