//! PROXY protocol version 2 (binary), the header the load balancer puts in front of an SSH
//! connection so the node sees the real client address. Only `PROXY` over TCP/IPv4 and TCP/IPv6
//! and `LOCAL` are produced and accepted.

use std::net::{IpAddr, SocketAddr};

/// The 12-byte signature every v2 header starts with.
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Longest address block accepted (TLVs included).
pub const MAX_LEN: usize = 512;

/// Encodes a `PROXY` header for a TCP connection from `src` to `dst` (same address family).
pub fn encode(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut h = SIGNATURE.to_vec();
    h.push(0x21); // version 2, PROXY
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            h.push(0x11); // TCP over IPv4
            h.extend_from_slice(&12u16.to_be_bytes());
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            h.push(0x21); // TCP over IPv6
            h.extend_from_slice(&36u16.to_be_bytes());
            h.extend_from_slice(&v6(s).octets());
            h.extend_from_slice(&v6(d).octets());
        }
    }
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

/// A bad header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Not a PROXY v2 signature.
    #[error("connection does not start with a PROXY protocol v2 header")]
    Signature,
    /// Version or command not supported.
    #[error("unsupported PROXY protocol version/command {0:#04x}")]
    Version(u8),
    /// Family or length not acceptable.
    #[error("unsupported or malformed PROXY protocol address block")]
    Address,
}

/// Length of the address block announced by a 16-byte fixed header (after checking it).
pub fn block_len(fixed: &[u8; 16]) -> Result<usize, HeaderError> {
    if fixed[..12] != SIGNATURE {
        return Err(HeaderError::Signature);
    }
    if fixed[12] != 0x21 && fixed[12] != 0x20 {
        return Err(HeaderError::Version(fixed[12]));
    }
    let len = u16::from_be_bytes([fixed[14], fixed[15]]) as usize;
    if len > MAX_LEN {
        return Err(HeaderError::Address);
    }
    Ok(len)
}

/// The source address in a header (`None` for `LOCAL`, e.g. health checks).
pub fn source(fixed: &[u8; 16], block: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    if fixed[12] == 0x20 {
        return Ok(None);
    }
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match fixed[13] {
        0x11 if block.len() >= 12 => {
            let ip: [u8; 4] = block[0..4].try_into().map_err(|_| HeaderError::Address)?;
            Ok(Some(SocketAddr::new(IpAddr::from(ip), port(&block[8..10]))))
        }
        0x21 if block.len() >= 36 => {
            let ip: [u8; 16] = block[0..16].try_into().map_err(|_| HeaderError::Address)?;
            let ip = std::net::Ipv6Addr::from(ip);
            let ip = ip
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(ip));
            Ok(Some(SocketAddr::new(ip, port(&block[32..34]))))
        }
        _ => Err(HeaderError::Address),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(src: &str, dst: &str) -> Option<SocketAddr> {
        let h = encode(src.parse().expect("src"), dst.parse().expect("dst"));
        let fixed: [u8; 16] = h[..16].try_into().expect("16");
        let len = block_len(&fixed).expect("len");
        assert_eq!(h.len(), 16 + len);
        source(&fixed, &h[16..]).expect("source")
    }

    #[test]
    fn encodes_and_decodes() {
        assert_eq!(
            roundtrip("10.1.2.3:5555", "127.0.0.1:7999"),
            Some("10.1.2.3:5555".parse().expect("a"))
        );
        assert_eq!(
            roundtrip("[2001:db8::1]:22", "[::1]:7999"),
            Some("[2001:db8::1]:22".parse().expect("a"))
        );
        let mut bad = [0u8; 16];
        assert_eq!(block_len(&bad), Err(HeaderError::Signature));
        bad[..12].copy_from_slice(&SIGNATURE);
        bad[12] = 0x11;
        assert_eq!(block_len(&bad), Err(HeaderError::Version(0x11)));
    }

    #[test]
    fn random_headers_never_panic() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..10_000 {
            let mut fixed = [0u8; 16];
            fixed[..12].copy_from_slice(&SIGNATURE);
            let mut block = vec![0u8; (x % 64) as usize];
            for b in fixed[12..].iter_mut().chain(block.iter_mut()) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if let Ok(len) = block_len(&fixed) {
                let _ = source(&fixed, &block[..len.min(block.len())]);
            }
        }
    }
}
