//! Tests of downloads that readers follow.

use super::*;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

fn oid_of(data: &[u8]) -> LfsOid {
    LfsOid::from_digest(&Sha256::digest(data))
}

async fn drain(s: impl Stream<Item = std::io::Result<Bytes>>) -> (Vec<u8>, Option<std::io::Error>) {
    let mut s = Box::pin(s);
    let mut got = Vec::new();
    while let Some(c) = s.next().await {
        match c {
            Ok(b) => got.extend_from_slice(&b),
            Err(e) => return (got, Some(e)),
        }
    }
    (got, None)
}

#[tokio::test]
async fn readers_follow_one_download_and_get_the_last_byte_once_it_verified() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = LfsStore::open(dir.path()).expect("store");
    let flights = Arc::new(Flights::default());
    let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let oid = oid_of(&data);
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (d, r) = (data.clone(), runs.clone());
    let first = flights
        .start(
            &store,
            (&oid, data.len() as u64),
            Source::Upstream,
            move |mut f| async move {
                r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                f.feed(&d[..300_000]).await.map_err(|e| e.to_string())?;
                // Held here until the test has seen a reader get the first half.
                let _ = go_rx.await;
                f.feed(&d[300_000..]).await.map_err(|e| e.to_string())?;
                Ok::<_, String>(f)
            },
        )
        .await
        .expect("start");
    let Started::Flying(flight) = first else {
        panic!("nothing stored yet")
    };
    // A second asker joins the same download; its source never runs.
    let second = flights
        .start(
            &store,
            (&oid, data.len() as u64),
            Source::Upstream,
            |_f| async move { Err::<Feeder, _>("a second download started") },
        )
        .await
        .expect("join");
    assert!(matches!(second, Started::Flying(ref f) if Arc::ptr_eq(f, &flight)));
    let mut reader = Box::pin(flight.reader().await.expect("reader"));
    let mut early = Vec::new();
    while early.len() < 300_000 {
        let chunk = reader.next().await.expect("more").expect("bytes");
        early.extend_from_slice(&chunk);
    }
    assert_eq!(early, data[..300_000]);
    go_tx.send(()).expect("go");
    let (rest, err) = drain(reader).await;
    assert!(err.is_none(), "{err:?}");
    early.extend_from_slice(&rest);
    assert_eq!(early, data);
    flight.finished().await.expect("kept");
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(store.size(&oid).await, Some(data.len() as u64));
    // Landed: a new start finds it stored.
    let again = flights
        .start(
            &store,
            (&oid, data.len() as u64),
            Source::Upstream,
            |_f| async move { Err::<Feeder, _>("downloaded twice") },
        )
        .await
        .expect("stored");
    assert!(matches!(again, Started::Stored));
    assert!(flights.is_empty());
}

#[tokio::test]
async fn bytes_that_are_not_the_object_reach_no_reader_whole_and_are_not_kept() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = LfsStore::open(dir.path()).expect("store");
    let flights = Arc::new(Flights::default());
    let claimed = b"the object the client asked for".to_vec();
    let oid = oid_of(&claimed);
    let mut wrong = claimed.clone();
    wrong[0] ^= 1;
    let w = wrong.clone();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let Started::Flying(flight) = flights
        .start(
            &store,
            (&oid, claimed.len() as u64),
            Source::Upstream,
            move |mut f| async move {
                // Held until a reader follows it.
                let _ = go_rx.await;
                f.feed(&w).await.map_err(|e| e.to_string())?;
                Ok::<_, String>(f)
            },
        )
        .await
        .expect("start")
    else {
        panic!("nothing stored yet")
    };
    let reader = flight.reader().await.expect("reader");
    go_tx.send(()).expect("go");
    let (got, err) = drain(reader).await;
    assert!(err.is_some(), "the reader must see the failure");
    assert!(got.len() < wrong.len(), "never the whole wrong object");
    assert!(flight.finished().await.is_err());
    assert_eq!(store.size(&oid).await, None);
    // A source that fails midway: same.
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let Started::Flying(flight) = flights
        .start(
            &store,
            (&oid, claimed.len() as u64),
            Source::Upstream,
            move |mut f| async move {
                let _ = go_rx.await;
                f.feed(b"the obj").await.map_err(|e| e.to_string())?;
                Err::<Feeder, _>("connection reset".to_owned())
            },
        )
        .await
        .expect("start")
    else {
        panic!("nothing stored yet")
    };
    let reader = flight.reader().await.expect("reader");
    go_tx.send(()).expect("go");
    let (_, err) = drain(reader).await;
    assert!(err.is_some());
    assert_eq!(store.size(&oid).await, None);
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp"))
            .expect("tmp")
            .count(),
        0
    );
}
