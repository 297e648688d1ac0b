//! Sessions: issued to a request that authenticated with credentials, named by the random part of
//! the `BITBUCKETSESSIONID` cookie. The store keeps only the SHA-256 of that value, the user, the
//! grants checked so far with their expiry, and when the session was created and last used. In a
//! farm with `hazelcast.http.sessions=replicated` every change is marked for the farm to carry to
//! the other members (see `farm::sessions`); what they send is merged here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::access::credential::CredKey;
use crate::names::RepoId;

/// At most this many sessions are kept; past it, new ones are not issued (requests still work
/// with credentials).
const MAX_SESSIONS: usize = 200_000;

/// The grant an admin's login puts in its session, beside the repositories' (`#` never starts a
/// project key, so no repository is named so; older members carry it as one they never match).
pub const ADMIN_GRANT: &str = "#admin";

pub use mirrorfarm_common::farm::messages::SessionRecord;

/// Folds `other` (the same session as another member has it) into `mine`.
fn merge_record(mine: &mut SessionRecord, other: &SessionRecord) {
    mine.created_ms = mine.created_ms.min(other.created_ms);
    mine.last_used_ms = mine.last_used_ms.max(other.last_used_ms);
    for (repo, exp) in &other.grants {
        let e = mine.grants.entry(repo.clone()).or_insert(*exp);
        *e = (*e).max(*exp);
    }
    mine.removed |= other.removed;
}

/// The session part of a cookie, hashed.
fn key_of(session: &str) -> String {
    Sha256::digest(session.to_ascii_uppercase().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a request's session allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// No such session, or it ended.
    None,
    /// A live session of `user` without a current grant for the repository.
    NoGrant {
        /// Its user.
        user: String,
    },
    /// A live session with a current grant.
    Granted {
        /// Its user.
        user: String,
    },
}

struct Entry {
    record: SessionRecord,
    /// `last_used_ms` as last handed to the farm (touches are carried only now and then).
    published_use_ms: i64,
}

/// The session store.
pub struct Sessions {
    timeout: Duration,
    replicated: bool,
    entries: Mutex<HashMap<String, Entry>>,
    /// The session this node issued to each credential (in memory only; never sent anywhere).
    by_credential: Mutex<HashMap<CredKey, String>>,
    dirty: Mutex<HashSet<String>>,
    /// Woken when sessions changed that the farm should carry.
    pub changed: tokio::sync::Notify,
}

impl Sessions {
    /// A store whose sessions end after `timeout` unused; `replicated` marks changes for the farm.
    pub fn new(timeout: Duration, replicated: bool) -> Self {
        Self {
            timeout,
            replicated,
            entries: Mutex::new(HashMap::new()),
            by_credential: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashSet::new()),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn timeout_ms(&self) -> i64 {
        self.timeout.as_millis() as i64
    }

    fn live(&self, r: &SessionRecord, now: i64) -> bool {
        !r.removed && now < r.last_used_ms + self.timeout_ms()
    }

    fn mark(&self, key: String) {
        if self.replicated {
            self.dirty.lock().insert(key);
            self.changed.notify_one();
        }
    }

    /// Whether changes are marked for the farm (`hazelcast.http.sessions=replicated` in a farm).
    pub fn replicated(&self) -> bool {
        self.replicated
    }

    /// Live sessions.
    pub fn live_count(&self, now: i64) -> usize {
        self.entries
            .lock()
            .values()
            .filter(|e| self.live(&e.record, now))
            .count()
    }

    /// Runs `f` on live session `session` (the cookie's part), marking it used.
    fn use_live<T>(
        &self,
        session: &str,
        now: i64,
        f: impl FnOnce(&SessionRecord) -> T,
    ) -> Option<T> {
        let key = key_of(session);
        let mut entries = self.entries.lock();
        let e = entries.get_mut(&key)?;
        if !self.live(&e.record, now) {
            return None;
        }
        e.record.last_used_ms = now;
        let out = f(&e.record);
        // Other members learn of use often enough that none ends the session early.
        let publish = now - e.published_use_ms > (self.timeout_ms() / 10).min(60_000);
        if publish {
            e.published_use_ms = now;
        }
        drop(entries);
        if publish {
            self.mark(key);
        }
        Some(out)
    }

    /// What session `session` (the cookie's part) allows for `repo`; a live one is marked used.
    pub fn standing(&self, session: &str, repo: &RepoId, now: i64) -> Standing {
        let repo = repo.to_string();
        let found = self.use_live(session, now, |r| {
            let granted = r.grants.get(&repo).is_some_and(|exp| now < *exp);
            (r.user.clone(), granted)
        });
        match found {
            None => Standing::None,
            Some((user, true)) => Standing::Granted { user },
            Some((user, false)) => Standing::NoGrant { user },
        }
    }

    /// The user of live session `session` if it holds a current admin grant (marked used).
    pub fn admin_of(&self, session: &str, now: i64) -> Option<String> {
        self.use_live(session, now, |r| {
            let admin = r.grants.get(ADMIN_GRANT).is_some_and(|exp| now < *exp);
            admin.then(|| r.user.clone())
        })
        .flatten()
    }

    /// The user of live session `session` (marked used).
    pub fn user_of(&self, session: &str, now: i64) -> Option<String> {
        self.use_live(session, now, |r| r.user.clone())
    }

    /// A new session of `user` holding an admin grant until `expires_ms` (an admin's login);
    /// returns the session part of its cookie (`None`: too many sessions).
    pub fn start_admin(&self, user: &str, expires_ms: i64, now: i64) -> Option<String> {
        let mut entries = self.entries.lock();
        let value = self.insert_new(
            &mut entries,
            user,
            BTreeMap::from([(ADMIN_GRANT.to_owned(), expires_ms)]),
            now,
        )?;
        drop(entries);
        self.mark(key_of(&value));
        Some(value)
    }

    /// Inserts a new session (unmarked); returns the session part of its cookie.
    fn insert_new(
        &self,
        entries: &mut HashMap<String, Entry>,
        user: &str,
        grants: BTreeMap<String, i64>,
        now: i64,
    ) -> Option<String> {
        if entries.len() >= MAX_SESSIONS {
            entries.retain(|_, e| self.live(&e.record, now));
            if entries.len() >= MAX_SESSIONS {
                tracing::warn!("{MAX_SESSIONS} live sessions: no new session issued");
                return None;
            }
        }
        let mut random = [0u8; 16];
        getrandom::getrandom(&mut random).expect("the OS random source is available");
        let value: String = random.iter().map(|b| format!("{b:02X}")).collect();
        let key = key_of(&value);
        let record = SessionRecord {
            key: key.clone(),
            user: user.to_owned(),
            created_ms: now,
            last_used_ms: now,
            grants,
            removed: false,
        };
        entries.insert(
            key,
            Entry {
                record,
                published_use_ms: now,
            },
        );
        Some(value)
    }

    /// Records a grant of `repo` until `expires_ms` for `user`, who authenticated with `cred`: in
    /// the session the request presented (when live and `user`'s), else in the one this node
    /// issued earlier to the same credential (clients that keep no cookies, as git by default,
    /// get that one back instead of a new one per request), else in a new one. Returns the
    /// session part of the cookie to set when the client did not present it.
    pub fn grant(
        &self,
        presented: Option<&str>,
        cred: CredKey,
        user: &str,
        repo: &RepoId,
        expires_ms: i64,
        now: i64,
    ) -> Option<String> {
        let mut entries = self.entries.lock();
        let issued = self.by_credential.lock().get(&cred).cloned();
        let candidates = [(presented.map(str::to_owned), false), (issued, true)];
        for (value, set_cookie) in candidates {
            let Some(value) = value else { continue };
            let key = key_of(&value);
            let Some(e) = entries.get_mut(&key) else {
                continue;
            };
            if !self.live(&e.record, now) || e.record.user != user {
                continue;
            }
            e.record.last_used_ms = now;
            let g = e.record.grants.entry(repo.to_string()).or_insert(0);
            // Only a grant that lasts longer is news for the other members.
            let news = expires_ms > *g;
            *g = (*g).max(expires_ms);
            if news {
                e.published_use_ms = now;
            }
            drop(entries);
            if news {
                self.mark(key);
            }
            return set_cookie.then_some(value);
        }
        let value = self.insert_new(
            &mut entries,
            user,
            BTreeMap::from([(repo.to_string(), expires_ms)]),
            now,
        )?;
        let key = key_of(&value);
        drop(entries);
        let mut by_credential = self.by_credential.lock();
        if by_credential.len() >= MAX_SESSIONS {
            by_credential.clear();
        }
        by_credential.insert(cred, value.clone());
        drop(by_credential);
        self.mark(key);
        Some(value)
    }

    /// Ends session `session`; whether there was a live one.
    pub fn remove(&self, session: &str, now: i64) -> bool {
        let key = key_of(session);
        let mut entries = self.entries.lock();
        let ended = match entries.get_mut(&key) {
            Some(e) if self.live(&e.record, now) => {
                e.record.removed = true;
                e.record.last_used_ms = now;
                true
            }
            _ => false,
        };
        drop(entries);
        if ended {
            self.mark(key);
        }
        ended
    }

    /// Forgets sessions ended more than a timeout ago (removed ones are kept that long so every
    /// member hears of the removal).
    pub fn sweep(&self, now: i64) {
        let keep = 2 * self.timeout_ms();
        self.entries
            .lock()
            .retain(|_, e| now < e.record.last_used_ms + keep);
    }

    /// The records changed since the last call (for the farm to send).
    pub fn take_changed(&self) -> Vec<SessionRecord> {
        let keys: Vec<String> = self.dirty.lock().drain().collect();
        let entries = self.entries.lock();
        keys.iter()
            .filter_map(|k| entries.get(k).map(|e| e.record.clone()))
            .collect()
    }

    /// Every record still worth sending to a member that has none (live or recently removed).
    pub fn all(&self, now: i64) -> Vec<SessionRecord> {
        let keep = 2 * self.timeout_ms();
        self.entries
            .lock()
            .values()
            .filter(|e| now < e.record.last_used_ms + keep)
            .map(|e| e.record.clone())
            .collect()
    }

    /// Merges records from another member (never marked for sending on again).
    pub fn merge(&self, records: Vec<SessionRecord>) {
        let mut entries = self.entries.lock();
        for r in records {
            let key_ok = r.key.len() == 64 && r.key.chars().all(|c| c.is_ascii_hexdigit());
            if !key_ok || r.user.is_empty() || r.user.len() > 256 || r.grants.len() > 100_000 {
                continue;
            }
            if let Some(e) = entries.get_mut(&r.key) {
                merge_record(&mut e.record, &r);
            } else if entries.len() < MAX_SESSIONS {
                let used = r.last_used_ms;
                entries.insert(
                    r.key.clone(),
                    Entry {
                        record: r,
                        published_use_ms: used,
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> RepoId {
        RepoId::parse(s).expect("repo")
    }

    #[test]
    fn grant_use_expire_and_merge() {
        let s = Sessions::new(Duration::from_secs(60), true);
        let a = repo("P/a");
        let (ca, cb) = (CredKey::test(1), CredKey::test(2));
        let v = s
            .grant(None, ca, "alice", &a, 10_000, 1_000)
            .expect("new session");
        assert_eq!(v.len(), 32);
        // The same credential without a cookie gets the same session back.
        assert_eq!(
            s.grant(None, ca, "alice", &a, 10_000, 1_500),
            Some(v.clone())
        );
        assert_eq!(
            s.standing(&v, &a, 2_000),
            Standing::Granted {
                user: "alice".into()
            }
        );
        assert_eq!(
            s.standing(&v, &repo("P/b"), 2_000),
            Standing::NoGrant {
                user: "alice".into()
            }
        );
        // The grant expires before the session.
        assert_eq!(
            s.standing(&v, &a, 10_000),
            Standing::NoGrant {
                user: "alice".into()
            }
        );
        // Another grant goes into the same session.
        assert_eq!(
            s.grant(Some(&v), ca, "alice", &repo("P/b"), 20_000, 10_000),
            None
        );
        // Not another user's.
        let bobs = s.grant(Some(&v), cb, "bob", &a, 20_000, 10_000);
        assert!(bobs.is_some_and(|b| b != v));
        // Idle past the timeout.
        assert_eq!(
            s.standing(&v, &repo("P/b"), 10_000 + 60_000),
            Standing::None
        );
        let sent = s.take_changed();
        assert!(!sent.is_empty());
        assert!(sent.iter().all(|r| !r.key.contains(&v)));
        // Another member merges them and knows the session.
        let other = Sessions::new(Duration::from_secs(60), true);
        other.merge(s.all(20_000));
        assert_eq!(
            other.standing(&v, &repo("P/b"), 15_000),
            Standing::Granted {
                user: "alice".into()
            }
        );
        // Removal travels too.
        assert!(s.remove(&v, 16_000));
        other.merge(s.take_changed());
        assert_eq!(other.standing(&v, &repo("P/b"), 16_500), Standing::None);
    }
}
