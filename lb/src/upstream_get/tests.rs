use super::*;

#[derive(Default)]
struct Collect {
    data: Vec<u8>,
    ended: bool,
}

#[async_trait::async_trait]
impl ResponseSink for Collect {
    async fn head(&mut self, _head: &Head, _end: bool) -> Result<()> {
        Ok(())
    }

    async fn body(&mut self, data: Option<Bytes>, end: bool) -> Result<()> {
        assert!(!self.ended, "body written after its end");
        if let Some(d) = data {
            self.data.extend_from_slice(&d);
        }
        self.ended = end;
        Ok(())
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

#[test]
fn chunked_bodies_decode_whether_buffered_or_read() {
    let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
    for split in [0, 3, 12, wire.len()] {
        let (first, rest) = wire.split_at(split);
        let mut sink = Collect::default();
        let mut reader: &[u8] = rest;
        let clean = rt()
            .block_on(copy_chunked(&mut sink, &mut reader, BytesMut::from(first)))
            .expect("decodes");
        assert_eq!(sink.data, b"hello world", "split at {split}");
        assert!(sink.ended && clean);
    }
    let mut sink = Collect::default();
    let mut reader: &[u8] = b"5\r\nhelloXX";
    assert!(rt()
        .block_on(copy_chunked(&mut sink, &mut reader, BytesMut::new()))
        .is_err());
    let mut reader: &[u8] = b"zz\r\n";
    assert!(rt()
        .block_on(copy_chunked(
            &mut Collect::default(),
            &mut reader,
            BytesMut::new()
        ))
        .is_err());
}

#[test]
fn length_and_close_delimited_bodies() {
    let mut sink = Collect::default();
    let mut reader: &[u8] = b"lo world";
    let clean = rt()
        .block_on(copy_length(
            &mut sink,
            &mut reader,
            BytesMut::from(&b"hel"[..]),
            11,
        ))
        .expect("copies");
    assert_eq!(sink.data, b"hello world");
    assert!(sink.ended && clean);
    // The node closing early is an error, not a short body.
    let mut reader: &[u8] = b"short";
    assert!(rt()
        .block_on(copy_length(
            &mut Collect::default(),
            &mut reader,
            BytesMut::new(),
            11
        ))
        .is_err());
    let mut sink = Collect::default();
    let mut reader: &[u8] = b"until the end";
    let clean = rt()
        .block_on(copy_until_close(&mut sink, &mut reader, BytesMut::new()))
        .expect("copies");
    assert_eq!(sink.data, b"until the end");
    assert!(sink.ended && !clean);
}

/// A node on 127.0.0.1 answering every connection's request with `answer`.
async fn node(answer: &'static [u8]) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf).await;
            let _ = c.write_all(answer).await;
        }
    });
    addr
}

#[test]
fn a_503_for_elsewhere_goes_to_another_node_while_one_is_left() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let elsewhere: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\n\
            x-mirrorfarm-elsewhere: withheld\r\nContent-Length: 8\r\n\r\nwithheld";
        let plain: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy";
        let (a, b) = (node(elsewhere).await, node(plain).await);
        let pool = Pool::default();
        let req = b"GET /scm/P/r.git/info/refs HTTP/1.1\r\nHost: n\r\n\r\n";
        let mut sink = Collect::default();
        let out = forward(&mut sink, &pool, a, req, false, || true).await;
        assert!(matches!(out, Ok(Outcome::Elsewhere)), "{out:?}");
        assert!(
            sink.data.is_empty() && !sink.ended,
            "nothing reached the client"
        );
        // The last node left: its answer goes to the client as it is.
        let out = forward(&mut sink, &pool, a, req, false, || false).await;
        assert!(matches!(out, Ok(Outcome::Done)), "{out:?}");
        assert_eq!(sink.data, b"withheld");
        // A 503 without the header is the node's answer to give.
        let mut sink = Collect::default();
        let out = forward(&mut sink, &pool, b, req, false, || true).await;
        assert!(matches!(out, Ok(Outcome::Done)), "{out:?}");
        assert_eq!(sink.data, b"busy");
    });
}

#[test]
fn a_new_connection_dropped_before_any_answer_goes_to_another_node() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (silent, cut) = (node(b"").await, node(b"HTTP/1.1 200 OK\r\nContent-").await);
        let pool = Pool::default();
        let req = b"GET /scm/P/r.git/info/refs HTTP/1.1\r\nHost: n\r\n\r\n";
        let mut sink = Collect::default();
        let out = forward(&mut sink, &pool, silent, req, false, || true).await;
        assert!(matches!(out, Ok(Outcome::Dropped(_))), "{out:?}");
        assert!(
            sink.data.is_empty() && !sink.ended,
            "nothing reached the client"
        );
        // Part of an answer came: not sent again (the node did answer), an error.
        let out = forward(&mut sink, &pool, cut, req, false, || true).await;
        assert!(out.is_err(), "{out:?}");
    });
}
