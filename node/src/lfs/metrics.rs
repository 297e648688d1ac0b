//! The LFS part of `/metrics` (`mirrorfarm_lfs_*`), written from the service's counters at each
//! scrape.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use mirrorfarm_common::status::LfsStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FromLabel {
    from: &'static str,
}

fn gauge(registry: &mut Registry, name: &str, help: &str, v: u64) {
    let g = Gauge::<i64>::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    registry.register(name, help, g);
}

fn counter(registry: &mut Registry, name: &str, help: &str, v: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(v);
    registry.register(name, help, c);
}

/// Appends the LFS metrics of `s` to `out` (OpenMetrics text, without the closing `# EOF`).
pub fn encode(s: &LfsStatus, out: &mut String) -> std::fmt::Result {
    let mut r = Registry::with_prefix("mirrorfarm_lfs");
    gauge(&mut r, "objects", "LFS objects held", s.objects);
    gauge(&mut r, "bytes", "Bytes of LFS objects held", s.bytes);
    gauge(
        &mut r,
        "downloads_in_progress",
        "LFS downloads under way",
        s.downloading,
    );
    let hits = Family::<SourceLabel, Counter>::default();
    for (source, v) in [
        ("local", s.hits.local),
        ("member", s.hits.member),
        ("upstream", s.hits.upstream),
    ] {
        hits.get_or_create(&SourceLabel { source }).inc_by(v);
    }
    r.register(
        "hits",
        "LFS objects served to clients, by where this node got them",
        hits,
    );
    let downloads = Family::<FromLabel, Counter>::default();
    for (from, v) in [
        ("member", s.member_downloads),
        ("upstream", s.upstream_downloads),
    ] {
        downloads.get_or_create(&FromLabel { from }).inc_by(v);
    }
    r.register(
        "downloads",
        "LFS objects this node downloaded, by source",
        downloads,
    );
    counter(
        &mut r,
        "prefetched",
        "LFS objects prefetched after a sync",
        s.prefetched,
    );
    counter(
        &mut r,
        "evicted",
        "LFS objects evicted (mirror.lfs.maxSize)",
        s.evicted,
    );
    prometheus_client::encoding::text::encode_registry(out, &r)
}
