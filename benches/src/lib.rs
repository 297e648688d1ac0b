//! Benchmarks of mirrorfarm (under `benches/`); this library holds nothing of its own.
