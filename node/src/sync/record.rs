//! The record a finished sync leaves: the durable result (with the message an admin reads on
//! /status) and the repository's entry, written in place.

use crate::state::RepoEntry;
use crate::store::{now_ms, RepoRecord, SyncResult};
use crate::sync::fetch::{SyncFailure, Synced};

/// Stores the result of a finished sync in the repository's entry, in place: what others set
/// while the sync ran or its result was stored (the farm's `withheld`, a staged state) stays.
pub(crate) fn finished(e: &mut RepoEntry, rec: RepoRecord, follow_up: bool) {
    if rec.last_result == Some(SyncResult::NotFound) {
        // Gone upstream (its directory is removed): nothing staged or kept is held any more.
        e.staged = None;
        e.kept.clear();
    }
    e.record = rec;
    e.syncing = follow_up;
}

pub(crate) fn next(prev: &RepoRecord, res: &Result<Synced, SyncFailure>, host: &str) -> RepoRecord {
    let now = now_ms();
    let mut rec = prev.clone();
    rec.last_sync_ms = Some(now);
    match res {
        Ok(s) if s.again => {}
        // The served state and generation were recorded at the flip (`advance`).
        Ok(_) => {
            rec.last_success_ms = Some(now);
            rec.last_result = Some(SyncResult::Ok);
            rec.last_message.clear();
        }
        Err(f) => {
            rec.last_result = Some(f.kind.clone());
            rec.last_message = match f.kind {
                SyncResult::HostKeyChanged => format!(
                    "the host key of upstream host {host} has changed; sync is stopped. If the change is expected, remove the old key from the node's ssh/known_hosts"
                ),
                SyncResult::Unauthorized => "the upstream refused the farm key: grant it read access (see publicKey)".into(),
                _ => f.message.chars().take(2000).collect(),
            };
            if f.kind == SyncResult::NotFound {
                rec.generation = 0;
                rec.refs_hash.clear();
            }
        }
    }
    rec
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::names::RepoId;

    #[test]
    fn finishing_a_sync_keeps_what_the_farm_marked_meanwhile() {
        let id = RepoId::parse("P/r").expect("id");
        let mut entry = RepoEntry::default();
        entry.record.generation = 3;
        entry.record.refs_hash = "a".into();
        entry.syncing = true;
        let repos = parking_lot::RwLock::new(BTreeMap::from([(id.clone(), entry)]));
        // The scheduler reads the record, then awaits (store, directories)…
        let prev = repos
            .read()
            .get(&id)
            .map(|e| e.record.clone())
            .expect("entry");
        // …while the farm finds this node behind and withholds the repository.
        repos.write().get_mut(&id).expect("entry").withheld = Some("behind the farm: catching up");
        let ok: Result<Synced, SyncFailure> = Ok(Synced {
            changed: 0,
            changed_refs: Vec::new(),
            refs_hash: "a".into(),
            elapsed: Duration::ZERO,
            again: false,
            size_bytes: None,
        });
        let rec = next(&prev, &ok, "h");
        if let Some(e) = repos.write().get_mut(&id) {
            finished(e, rec, false);
        }
        let e = repos.read().get(&id).cloned().expect("entry");
        assert_eq!(e.withheld, Some("behind the farm: catching up"));
        assert!(!e.syncing);
        assert_eq!(e.record.last_result, Some(SyncResult::Ok));
        assert_eq!((e.record.generation, e.record.refs_hash.as_str()), (3, "a"));
    }

    #[test]
    fn generation_moves_only_when_refs_change() {
        let mut e = RepoEntry::default();
        assert!(crate::sync::publish::advance(&mut e, "a", None));
        assert_eq!((e.record.generation, e.kept.len()), (1, 0));
        assert!(
            !crate::sync::publish::advance(&mut e, "a", None),
            "same state: nothing moves"
        );
        assert!(crate::sync::publish::advance(&mut e, "b", None));
        assert_eq!(e.record.generation, 2);
        assert!(
            crate::sync::publish::advance(&mut e, "c", Some(7)),
            "the farm's generation wins"
        );
        assert!(crate::sync::publish::advance(&mut e, "d", None));
        assert_eq!(e.record.generation, 8);
        assert_eq!(e.kept, ["c", "b"], "two earlier states kept, newest first");
        let gone = Err(SyncFailure {
            kind: SyncResult::NotFound,
            message: "x".into(),
        });
        assert_eq!(next(&e.record, &gone, "h").generation, 0);
        let hk = Err(SyncFailure {
            kind: SyncResult::HostKeyChanged,
            message: "x".into(),
        });
        assert!(next(&e.record, &hk, "[up]:22")
            .last_message
            .contains("[up]:22"));
    }
}
