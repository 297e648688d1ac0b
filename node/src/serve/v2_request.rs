//! Reading the start of a protocol-v2 request body to see whether it is an `ls-refs` command the
//! node can answer from memory. Everything read is kept, so any other request (or one with an
//! argument or capability the node does not know) is replayed to `git upload-pack` unchanged.

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::serve::refs_cache::LsRefs;

/// The most of a request body read while deciding (an ls-refs request is small).
const MAX_PEEK: usize = 1024 * 1024;

enum Pkt {
    Flush,
    Delim,
    Data(Vec<u8>),
}

/// Reads up to `n` bytes (fewer only at the end of the stream), keeping every byte read in `raw`
/// (so a request replayed after a failed peek is whole, even when it ends inside a packet).
async fn read_kept<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    n: usize,
    raw: &mut Vec<u8>,
) -> std::io::Result<Vec<u8>> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        let k = r.read(&mut out[got..]).await?;
        if k == 0 {
            break;
        }
        raw.extend_from_slice(&out[got..got + k]);
        got += k;
    }
    out.truncate(got);
    Ok(out)
}

fn cut_short() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "pkt-line cut short")
}

async fn read_pkt<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    raw: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Option<Pkt>> {
    // The stream may end cleanly before a packet, not inside one.
    let len = read_kept(r, 4, raw).await?;
    match len.len() {
        0 => return Ok(None),
        4 => {}
        _ => return Err(cut_short()),
    }
    let n = len
        .as_slice()
        .try_into()
        .ok()
        .and_then(crate::pktline::length)
        .ok_or_else(|| std::io::Error::other("bad pkt-line length"))?;
    match n {
        0 => Ok(Some(Pkt::Flush)),
        1 => Ok(Some(Pkt::Delim)),
        2..=3 => Err(std::io::Error::other("unexpected special packet")),
        _ => {
            if raw.len() + n > limit {
                return Err(std::io::Error::other(format!(
                    "request larger than {limit} bytes"
                )));
            }
            let data = read_kept(r, n - 4, raw).await?;
            if data.len() < n - 4 {
                return Err(cut_short());
            }
            Ok(Some(Pkt::Data(data)))
        }
    }
}

/// Reads one whole v2 command request (pkt-lines up to and including the closing flush, at most
/// `limit` bytes: what HTTP accepts) into a buffer; `None` when the stream ends before a request
/// starts.
pub async fn read_request<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    limit: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut raw = Vec::new();
    loop {
        match read_pkt(r, &mut raw, limit).await? {
            None if raw.is_empty() => return Ok(None),
            None => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "request cut short",
                ))
            }
            Some(Pkt::Flush) => return Ok(Some(raw)),
            Some(_) => {}
        }
    }
}

/// Reads from `r` (appending every byte read to `raw`) and returns the arguments when the
/// request is an `ls-refs` the node answers itself; `None` means "let git answer".
pub async fn peek_ls_refs<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    raw: &mut Vec<u8>,
) -> std::io::Result<Option<LsRefs>> {
    match read_pkt(r, raw, MAX_PEEK).await? {
        Some(Pkt::Data(d)) if d == b"command=ls-refs\n" => {}
        _ => return Ok(None),
    }
    // Capabilities until the delimiter.
    loop {
        match read_pkt(r, raw, MAX_PEEK).await? {
            Some(Pkt::Delim) => break,
            Some(Pkt::Flush) => return Ok(Some(LsRefs::default())),
            Some(Pkt::Data(d)) => {
                let line = String::from_utf8_lossy(&d);
                let line = line.trim_end_matches('\n');
                let known = line.starts_with("agent=") || line == "object-format=sha1";
                if !known {
                    return Ok(None);
                }
            }
            None => return Ok(None),
        }
    }
    let mut args = LsRefs::default();
    loop {
        match read_pkt(r, raw, MAX_PEEK).await? {
            Some(Pkt::Flush) => return Ok(Some(args)),
            Some(Pkt::Data(d)) => {
                let line = String::from_utf8_lossy(&d);
                let line = line.strip_suffix('\n').unwrap_or(&line);
                match line {
                    "peel" => args.peel = true,
                    "symrefs" => args.symrefs = true,
                    "unborn" => args.unborn = true,
                    l => match l.strip_prefix("ref-prefix ") {
                        Some(p) => args.prefixes.push(p.to_owned()),
                        None => return Ok(None),
                    },
                }
            }
            Some(Pkt::Delim) | None => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn recognises_ls_refs_and_keeps_every_byte() {
        use crate::pktline::pkt;
        let mut body = Vec::new();
        for l in [
            "command=ls-refs\n",
            "agent=git/2.47.3\n",
            "object-format=sha1\n",
        ] {
            body.extend(pkt(l));
        }
        body.extend(b"0001");
        for l in ["peel\n", "symrefs\n", "ref-prefix refs/heads/\n"] {
            body.extend(pkt(l));
        }
        body.extend(b"0000");
        let mut raw = Vec::new();
        let args = peek_ls_refs(&mut &body[..], &mut raw)
            .await
            .expect("read")
            .expect("ls-refs");
        assert!(args.peel && args.symrefs && !args.unborn);
        assert_eq!(args.prefixes, vec!["refs/heads/".to_owned()]);
        assert_eq!(raw, body);
        let first = pkt("command=fetch\n");
        let fetch = [first.clone(), b"0000".to_vec()].concat();
        let mut raw = Vec::new();
        assert!(peek_ls_refs(&mut &fetch[..], &mut raw)
            .await
            .expect("read")
            .is_none());
        assert_eq!(raw, first, "only the first packet is consumed");
        let odd = [
            pkt("command=ls-refs\n"),
            b"0001".to_vec(),
            pkt("weird\n"),
            b"0000".to_vec(),
        ]
        .concat();
        let mut raw = Vec::new();
        assert!(peek_ls_refs(&mut &odd[..], &mut raw)
            .await
            .expect("read")
            .is_none());
    }
}
