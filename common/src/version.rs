//! The version members and load balancers report (gossip, `/status`, the admin page).

/// This build's version. A debug build — the tests' — reports `MIRRORFARM_TEST_VERSION` instead
/// when it is set, so one binary can play both sides of a rolling upgrade; a release build never
/// reads it.
pub fn version() -> String {
    if cfg!(debug_assertions) {
        if let Ok(v) = std::env::var("MIRRORFARM_TEST_VERSION") {
            if !v.trim().is_empty() {
                return v.trim().to_owned();
            }
        }
    }
    env!("CARGO_PKG_VERSION").to_owned()
}
