//! A malformed upload-pack request gets 400 naming the problem (not an empty answer that git
//! reports as a broken connection); a well-formed one is still served.

use mirrorfarm_tests::node::serving_p_r;

#[test]
fn malformed_upload_pack_requests_get_400() {
    let (_up, node) = serving_p_r("");
    let url = format!("{}/git-upload-pack", node.http_url("P", "r"));
    let post = |body: &'static [u8], v2: bool| {
        let mut r = reqwest::blocking::Client::new()
            .post(&url)
            .header("Content-Type", "application/x-git-upload-pack-request")
            .body(body);
        if v2 {
            r = r.header("Git-Protocol", "version=2");
        }
        r.send().expect("POST")
    };
    for (body, v2, what) in [
        (
            &b"hello world"[..],
            false,
            "not a pkt-line length at byte 0",
        ),
        (&b""[..], false, "empty request"),
        (&b"0014command=ls-refs\n0001000"[..], true, "cut short"),
        (&b"0032want 01234"[..], false, "cut short"),
    ] {
        let r = post(body, v2);
        assert_eq!(r.status().as_u16(), 400, "{body:?}");
        let text = r.text().expect("body");
        assert!(
            text.contains("malformed git request") && text.contains(what),
            "{text}"
        );
    }
    // A well-formed v2 request (ls-refs) is answered.
    let r = post(b"0014command=ls-refs\n00010000", true);
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().expect("body").contains("refs/heads/main"));
}
