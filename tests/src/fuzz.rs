//! A small deterministic input generator for property tests of the parsers that see bytes from
//! outside: random bytes, and valid inputs mutated (bytes flipped, inserted, deleted, repeated,
//! tokens that parsers care about spliced in). Each run is bounded: a number of cases, or
//! `FUZZ_SECONDS` of them when that is set (for long runs by hand).

use std::time::{Duration, Instant};

/// Tokens spliced into inputs: framing and separators the parsers look for.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\0",
    b"0000",
    b"0001",
    b"0002",
    b"ffff",
    b"fff0",
    b"0004",
    b"=",
    b":",
    b";",
    b",",
    b" ",
    b"\t",
    b"\\",
    b"\\u",
    b"%",
    b"/",
    b"..",
    b"//",
    b"\"",
    b"chunked",
    b"Content-Length: ",
    b"Transfer-Encoding: ",
    b"Host: ",
    b"BITBUCKETSESSIONID=",
    b"want ",
    b"have ",
    b"done\n",
    b"command=ls-refs\n",
    b"ref-prefix ",
    b"user=\"",
    b"repos=\"",
    b"ssh-ed25519 ",
    b"\xff\xfe",
    b"\xc3\x28",
    b"\r\n\r\n",
];

/// The generator (xorshift64*).
pub struct Gen(u64);

impl Gen {
    /// A generator from `seed` (never zero inside).
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// The next random number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// Up to `max` random bytes, often made of tokens.
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            if self.below(3) == 0 {
                out.extend_from_slice(TOKENS[self.below(TOKENS.len())]);
            } else {
                out.push(self.next_u64() as u8);
            }
        }
        out
    }

    /// `seed` with one to four random changes.
    pub fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..1 + self.below(4) {
            let at = self.below(v.len() + 1);
            match self.below(6) {
                0 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] ^= 1 << self.below(8);
                }
                1 => v.insert(at, self.next_u64() as u8),
                2 if !v.is_empty() => {
                    let end = (at + 1 + self.below(16)).min(v.len());
                    v.drain(at.min(end)..end);
                }
                3 if !v.is_empty() => {
                    let start = self.below(v.len());
                    let end = (start + 1 + self.below(32)).min(v.len());
                    let piece = v[start..end].to_vec();
                    for (k, b) in piece.into_iter().enumerate() {
                        v.insert((at + k).min(v.len()), b);
                    }
                }
                _ => {
                    let t = TOKENS[self.below(TOKENS.len())];
                    for (k, b) in t.iter().enumerate() {
                        v.insert((at + k).min(v.len()), *b);
                    }
                }
            }
        }
        v
    }

    /// Either random bytes or a mutation of one of `seeds`.
    pub fn input(&mut self, seeds: &[&[u8]], max: usize) -> Vec<u8> {
        if seeds.is_empty() || self.below(4) == 0 {
            self.bytes(max)
        } else {
            let s = seeds[self.below(seeds.len())];
            self.mutate(s)
        }
    }
}

/// Runs `case` `cases` times (or for `FUZZ_SECONDS` seconds when set), each with a generator of
/// its own seed; returns how many ran.
pub fn run(name: &str, cases: usize, mut case: impl FnMut(&mut Gen)) -> usize {
    let budget = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let start = Instant::now();
    let mut n = 0usize;
    loop {
        let done = match budget {
            Some(b) => start.elapsed() >= b,
            None => n >= cases,
        };
        if done {
            break;
        }
        let seed = (n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ name.len() as u64;
        case(&mut Gen::new(seed));
        n += 1;
    }
    eprintln!(
        "{name}: {n} cases in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    n
}
