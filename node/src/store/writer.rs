//! Group commit of repository records: one thread writes every record handed to it meanwhile in
//! one LMDB transaction — one commit, one fsync — instead of a transaction per record.
//!
//! A record written *now* (a flip's new state) is committed at once, with whatever waits, and
//! its writer is told when it is durable. A record written *soon* (a finished sync's times and
//! result) waits up to [`SOON`] for company: a reconcile of 20 000 unchanged repositories commits
//! a few times a second, not 20 000 times. Records of one repository are applied in the order
//! they were handed over; the last one wins.

use std::collections::HashMap;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use heed::types::{SerdeJson, Str};
use heed::{Database, Env, WithoutTls};
use tokio::sync::oneshot;

use crate::names::RepoId;
use crate::store::{RepoRecord, StoreError};

/// The longest a record written "soon" waits before it is committed.
pub const SOON: Duration = Duration::from_secs(1);
/// Records committed together at most (a bound on one transaction's size).
const MAX_BATCH: usize = 4096;

/// Told when a commit is done (one failure, shared by everyone who waited for it).
type Ack = oneshot::Sender<Result<(), Arc<StoreError>>>;

enum Msg {
    /// A record (`None`: forget the repository), and who waits for it to be durable.
    Put(String, Option<RepoRecord>, Option<Ack>),
    /// Commit what waits, and say so.
    Flush(Ack),
}

/// The handle to the writing thread; the thread ends when the last handle is dropped, after
/// committing what it holds.
pub struct Writer {
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    /// Lets the thread commit what it holds and waits for it (the environment is closed after).
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Writer {
    /// Starts the thread writing to `repos` in `env`.
    pub fn start(
        env: Env<WithoutTls>,
        repos: Database<'static, Str, SerdeJson<RepoRecord>>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mf-records".into())
            .spawn(move || run(&env, repos, &rx))?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Writes `rec` (or forgets the repository) and waits until it is durable.
    pub async fn now(&self, id: &RepoId, rec: Option<RepoRecord>) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        self.send(Msg::Put(id.key(), rec, Some(ack)))?;
        done.await
            .map_err(|_| StoreError::WriterGone)?
            .map_err(StoreError::Shared)
    }

    /// Writes `rec` within [`SOON`], together with others; returns at once.
    pub fn soon(&self, id: &RepoId, rec: RepoRecord) -> Result<(), StoreError> {
        self.send(Msg::Put(id.key(), Some(rec), None))
    }

    /// Commits everything handed over so far and waits until it is durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        self.send(Msg::Flush(ack))?;
        done.await
            .map_err(|_| StoreError::WriterGone)?
            .map_err(StoreError::Shared)
    }

    fn send(&self, m: Msg) -> Result<(), StoreError> {
        let tx = self.tx.as_ref().ok_or(StoreError::WriterGone)?;
        tx.send(m).map_err(|_| StoreError::WriterGone)
    }
}

/// Records waiting for their commit.
#[derive(Default)]
struct Batch {
    records: HashMap<String, Option<RepoRecord>>,
    acks: Vec<Ack>,
    /// When the oldest record written "soon" must be committed.
    due: Option<Instant>,
}

impl Batch {
    fn take(&mut self, m: Msg) {
        match m {
            Msg::Put(key, rec, ack) => {
                self.records.insert(key, rec);
                match ack {
                    Some(a) => self.acks.push(a),
                    None => {
                        self.due.get_or_insert_with(|| Instant::now() + SOON);
                    }
                }
            }
            Msg::Flush(a) => self.acks.push(a),
        }
    }

    fn ready(&self) -> bool {
        !self.acks.is_empty()
            || self.records.len() >= MAX_BATCH
            || self.due.is_some_and(|d| d <= Instant::now())
    }
}

fn run(
    env: &Env<WithoutTls>,
    repos: Database<'static, Str, SerdeJson<RepoRecord>>,
    rx: &mpsc::Receiver<Msg>,
) {
    let mut batch = Batch::default();
    loop {
        let got = match batch.due {
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
        };
        let gone = match got {
            Ok(m) => {
                batch.take(m);
                false
            }
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Err(mpsc::RecvTimeoutError::Disconnected) => true,
        };
        while batch.records.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.take(m),
                Err(_) => break,
            }
        }
        if gone || batch.ready() {
            let b = std::mem::take(&mut batch);
            let res = commit(env, repos, b.records).map_err(Arc::new);
            if let Err(e) = &res {
                tracing::error!(error = %e, "cannot record repository states");
            }
            for a in b.acks {
                let _ = a.send(res.clone());
            }
        }
        if gone {
            return;
        }
    }
}

fn commit(
    env: &Env<WithoutTls>,
    repos: Database<'static, Str, SerdeJson<RepoRecord>>,
    records: HashMap<String, Option<RepoRecord>>,
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let err = |source| StoreError::Heed {
        path: env.path().display().to_string(),
        source,
    };
    let mut wtxn = env.write_txn().map_err(err)?;
    for (key, rec) in &records {
        match rec {
            Some(r) => repos.put(&mut wtxn, key, r).map_err(err)?,
            None => {
                repos.delete(&mut wtxn, key).map_err(err)?;
            }
        }
    }
    wtxn.commit().map_err(err)
}
