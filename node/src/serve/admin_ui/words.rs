//! The admin page's numbers in words: durations, ages, sizes, lag.

use mirrorfarm_common::status::{RepoStatus, SyncResult};

use super::html::esc;

/// A duration in ms, in words.
pub fn took(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// A size in bytes, in words.
pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// How far a repository is behind the upstream, in words (see `RepoStatus::lag_ms`).
pub fn lag(r: &RepoStatus) -> String {
    match r.lag_ms {
        None => "—".into(),
        Some(0) => "none".into(),
        Some(ms) if r.last_result.as_ref().is_some_and(|x| *x != SyncResult::Ok) => {
            format!("unconfirmed for {}", took(ms))
        }
        Some(ms) => format!("{} (a newer state waits for the farm)", took(ms)),
    }
}

/// How long ago an RFC 3339 time was, in words.
pub fn ago(t: Option<&str>) -> String {
    let Some(t) = t else { return "never".into() };
    let Ok(then) = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
    else {
        return esc(t);
    };
    let s = (time::OffsetDateTime::now_utc() - then)
        .whole_seconds()
        .max(0);
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_words() {
        assert_eq!(took(850), "850 ms");
        assert_eq!(took(1500), "1.5 s");
        assert_eq!(bytes(1000), "1000 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        let mut r = RepoStatus::default();
        assert_eq!(lag(&r), "—");
        r.lag_ms = Some(0);
        assert_eq!(lag(&r), "none");
        r.lag_ms = Some(2500);
        r.last_result = Some(SyncResult::Ok);
        assert!(lag(&r).starts_with("2.5 s (a newer state"), "{}", lag(&r));
        r.last_result = Some(SyncResult::Unreachable);
        assert_eq!(lag(&r), "unconfirmed for 2.5 s");
        assert_eq!(ago(None), "never");
    }
}
