//! The pack cache against a real repository and real `git upload-pack` runs.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::*;
use crate::serve::processes::Processes;
use crate::testing::git;

const LIMIT: Duration = Duration::from_secs(60);

/// A bare repository of one commit holding `mib` MiB of random bytes; its head commit.
fn repo(dir: &Path, mib: usize) -> (std::path::PathBuf, String) {
    let work = dir.join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    git(&work, &["init", "-q"]);
    for i in 0..mib {
        let mut data = vec![0u8; 1 << 20];
        getrandom::getrandom(&mut data).expect("random");
        std::fs::write(work.join(format!("f{i}")), data).expect("write");
    }
    git(&work, &["add", "."]);
    git(
        &work,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            "c",
        ],
    );
    let head = git(&work, &["rev-parse", "HEAD"]);
    let bare = dir.join("r.git");
    git(dir, &["clone", "-q", "--bare", "work", "r.git"]);
    (bare, head)
}

/// A v0 stateless upload-pack request for `head`; `tag` makes it a request of its own.
fn request(head: &str, tag: &str) -> Vec<u8> {
    // No side band (its packets follow git's pipe reads): every answer is the same bytes.
    let want = format!("want {head} ofs-delta agent=t/{tag}\n");
    let mut out = format!("{:04x}{want}0000", want.len() + 4).into_bytes();
    out.extend_from_slice(b"0009done\n");
    out
}

fn repo_id() -> RepoId {
    RepoId::parse("P/r").expect("repo id")
}

async fn drain(mut s: CachedStream) -> std::io::Result<u64> {
    let mut n = 0;
    while let Some(chunk) = s.next().await {
        n += chunk?.len() as u64;
    }
    Ok(n)
}

/// Polls `f` every 10 ms until it holds, for at most [`LIMIT`].
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bound_holds_while_entries_are_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (bare, head) = repo(tmp.path(), 4);
    let processes = Processes::new(8, Duration::from_secs(30));
    // The size of one answer, from a cache that keeps it.
    let probe = Arc::new(PackCache::new(&tmp.path().join("probe"), u64::MAX).expect("cache"));
    let (s, _) = probe
        .serve(
            &repo_id(),
            "s",
            &bare,
            None,
            request(&head, "probe"),
            &processes,
        )
        .await
        .expect("serve");
    let one = drain(s).await.expect("read");
    assert!(one > 4 << 20, "{one}");
    // Room for one and a half answers; four different requests at once.
    let max = one * 3 / 2;
    let cache = Arc::new(PackCache::new(&tmp.path().join("cache"), max).expect("cache"));
    let (done, highest) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let sampler = {
        let (cache, done, highest) = (cache.clone(), done.clone(), highest.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Acquire) {
                highest.fetch_max(cache.size(), Ordering::AcqRel);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let mut clients = Vec::new();
    for i in 0..4 {
        let (cache, bare, head) = (cache.clone(), bare.clone(), head.clone());
        let processes = &processes;
        let req = request(&head, &i.to_string());
        let (s, outcome) = cache
            .serve(&repo_id(), "s", &bare, None, req, processes)
            .await
            .expect("serve");
        assert_eq!(outcome, Outcome::Miss);
        clients.push(tokio::spawn(drain(s)));
    }
    for c in clients {
        assert_eq!(c.await.expect("join").expect("a whole answer"), one);
    }
    done.store(true, Ordering::Release);
    sampler.await.expect("sampler");
    let highest = highest.load(Ordering::Acquire);
    assert!(
        highest <= max,
        "the index held {highest} bytes, bound {max}"
    );
    assert!(highest > 0, "the sampler saw entries being written");
    assert!(cache.size() <= max && cache.size() > 0, "{}", cache.size());
    // Entries not kept are removed once read.
    until("files of entries not kept to go", || {
        files_in(&tmp.path().join("cache")) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_every_reader_left_stops_unless_nearly_done() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (bare, head) = repo(tmp.path(), 16);
    let processes = Processes::new(8, Duration::from_secs(30));
    let dir = tmp.path().join("cache");

    // No grace: the client that reads one chunk and leaves stops the writer.
    let cache = Arc::new(
        PackCache::new(&dir, u64::MAX)
            .expect("cache")
            .with_abandon_grace(Duration::ZERO),
    );
    let serve = |cache: Arc<PackCache>| {
        let (bare, req) = (bare.clone(), request(&head, "x"));
        let processes = &processes;
        async move {
            cache
                .serve(&repo_id(), "s", &bare, None, req, processes)
                .await
                .expect("serve")
        }
    };
    let (mut s, outcome) = serve(cache.clone()).await;
    assert_eq!(outcome, Outcome::Miss);
    s.next().await.expect("a first chunk").expect("read");
    drop(s);
    until("the abandoned entry's file to go", || files_in(&dir) == 0).await;
    assert_eq!(cache.size(), 0);
    let (s, outcome) = serve(cache.clone()).await;
    assert_eq!(outcome, Outcome::Miss, "an abandoned entry is not served");
    let whole = drain(s).await.expect("a whole answer");

    // A grace long enough to finish: the entry is kept for the next request.
    let cache = Arc::new(
        PackCache::new(&dir, u64::MAX)
            .expect("cache")
            .with_abandon_grace(LIMIT),
    );
    let (mut s, _) = serve(cache.clone()).await;
    s.next().await.expect("a first chunk").expect("read");
    drop(s);
    until("the entry to be written whole", || cache.size() == whole).await;
    let (s, outcome) = serve(cache.clone()).await;
    // `size` counts bytes written; the entry is complete once the writer has checked git's exit.
    assert!(
        matches!(outcome, Outcome::Hit | Outcome::Shared),
        "{outcome:?}"
    );
    assert_eq!(drain(s).await.expect("read"), whole);
}

/// Every chunk of a stream, in one buffer.
async fn bytes_of(mut s: CachedStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_fills_finishes_its_responses_from_memory_and_is_not_kept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (bare, head) = repo(tmp.path(), 8);
    let processes = Processes::new(8, Duration::from_secs(30));
    let req = || request(&head, "x");
    let probe = Arc::new(PackCache::new(&tmp.path().join("probe"), u64::MAX).expect("cache"));
    let (s, _) = probe
        .serve(&repo_id(), "s", &bare, None, req(), &processes)
        .await
        .expect("serve");
    let whole = bytes_of(s).await.expect("read");
    assert!(whole.len() > 8 << 20, "{}", whole.len());

    // Files fill after 0 bytes, a third of the answer, and all but its last byte.
    let third = whole.len() as u64 / 3;
    for limit in [0, third, whole.len() as u64 - 1] {
        let dir = tmp.path().join(format!("cache-{limit}"));
        let cache = Arc::new(
            PackCache::new(&dir, u64::MAX)
                .expect("cache")
                .with_write_limit(limit),
        );
        // Two clients at once: the second shares the first's entry if it comes before the
        // file filled, else it starts its own (which fills too).
        let (first, outcome) = cache
            .serve(&repo_id(), "s", &bare, None, req(), &processes)
            .await
            .expect("serve");
        assert_eq!(outcome, Outcome::Miss);
        let (second, _) = cache
            .serve(&repo_id(), "s", &bare, None, req(), &processes)
            .await
            .expect("serve");
        let (a, b) = tokio::join!(bytes_of(first), bytes_of(second));
        assert!(
            a.expect("first client's answer") == whole,
            "limit {limit}: first differs"
        );
        assert!(
            b.expect("second client's answer") == whole,
            "limit {limit}: second differs"
        );
        // Not kept: out of the index, and the files go.
        until("the spilled entries' files to go", || files_in(&dir) == 0).await;
        assert_eq!(cache.size(), 0, "limit {limit}");
    }
}
