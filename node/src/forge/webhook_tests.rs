use super::*;
use axum::http::{HeaderName, HeaderValue};

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            HeaderName::from_static(k),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    h
}

fn fixture(path: &str) -> Vec<u8> {
    let p = format!(
        "{}/../tests/fixtures/forges/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

#[test]
fn githubs_documented_signature_verifies() {
    // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
    let secret = Secret::new("It's a Secret to Everybody");
    let body = b"Hello, World!";
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(sign(&secret, body), sig);
    let h = headers(&[("x-hub-signature-256", sig)]);
    assert_eq!(verify(&h, body, &secret), Ok(()));
    assert_eq!(
        verify(&h, b"Hello, World?", &secret),
        Err(Refused::BadSignature)
    );
    assert_eq!(
        verify(&h, body, &Secret::new("another secret")),
        Err(Refused::BadSignature)
    );
    let truncated = headers(&[("x-hub-signature-256", &sig[..sig.len() - 2])]);
    assert_eq!(
        verify(&truncated, body, &secret),
        Err(Refused::BadSignature)
    );
    assert_eq!(
        verify(&HeaderMap::new(), body, &secret),
        Err(Refused::Unsigned)
    );
}

#[test]
fn every_forges_scheme_verifies_with_the_one_secret() {
    let secret = Secret::new("webhook-secret-42");
    let body = br#"{"x": 1}"#;
    let hex = sign(&secret, body)["sha256=".len()..].to_owned();
    for h in [
        headers(&[("x-gitea-signature", &hex)]),
        headers(&[("x-forgejo-signature", &hex)]),
        headers(&[("x-hub-signature", &format!("sha256={hex}"))]),
        headers(&[("x-gitlab-token", "webhook-secret-42")]),
    ] {
        assert_eq!(verify(&h, body, &secret), Ok(()), "{h:?}");
    }
    for h in [
        headers(&[("x-gitea-signature", &format!("sha256={hex}"))]),
        headers(&[("x-hub-signature", &hex)]),
        headers(&[("x-gitlab-token", "webhook-secret-4")]),
        headers(&[("x-gitlab-token", "")]),
    ] {
        assert!(verify(&h, body, &secret).is_err(), "{h:?}");
    }
}

#[test]
fn github_events() {
    let push = fixture("github/webhook_push.json");
    let h = headers(&[("x-github-event", "push")]);
    assert!(matches!(parse(&h, &push), Ok(Event::RefsChanged(_))));
    let created = fixture("github/webhook_repository_created.json");
    let h = headers(&[("x-github-event", "repository")]);
    assert_eq!(parse(&h, &created), Ok(Event::Relist));
    let h = headers(&[("x-github-event", "ping")]);
    assert_eq!(parse(&h, b"{}"), Ok(Event::Ignored("ping".into())));
    let h = headers(&[("x-github-event", "push")]);
    assert!(matches!(parse(&h, b"not json"), Err(Refused::Payload(_))));
}

#[test]
fn gitlab_events() {
    let push = fixture("gitlab/webhook_push.json");
    let h = headers(&[("x-gitlab-event", "Push Hook")]);
    let Ok(Event::RefsChanged(name)) = parse(&h, &push) else {
        panic!("push not read");
    };
    assert!(name.contains('/'), "{name}");
    let tag = fixture("gitlab/webhook_tag_push.json");
    let h = headers(&[("x-gitlab-event", "Tag Push Hook")]);
    assert!(matches!(parse(&h, &tag), Ok(Event::RefsChanged(_))));
    let h = headers(&[("x-gitlab-event", "System Hook")]);
    let create = fixture("gitlab/system_hook_project_create.json");
    assert_eq!(parse(&h, &create), Ok(Event::Relist));
    let update = fixture("gitlab/system_hook_repository_update.json");
    assert_eq!(
        parse(&h, &update),
        Ok(Event::RefsChanged("jsmith/example".into()))
    );
}

#[test]
fn names_resolve_to_mirrored_repositories() {
    let ids = [
        RepoId::parse("PROJ/repo").expect("id"),
        RepoId::parse("Octo/Hello-World").expect("id"),
    ];
    assert_eq!(resolve("PROJ/repo", &ids), Some(ids[0].clone()));
    assert_eq!(resolve("proj/REPO.git", &ids), Some(ids[0].clone()));
    assert_eq!(resolve("octo/hello-world", &ids), Some(ids[1].clone()));
    assert_eq!(resolve("PROJ/other", &ids), None);
}

#[test]
fn gitea_events() {
    // https://docs.gitea.com/usage/webhooks (the documented push payload)
    let push = fixture("gitea/webhook_push.json");
    for event in ["x-gitea-event", "x-forgejo-event"] {
        let h = headers(&[(event, "push")]);
        assert_eq!(
            parse(&h, &push),
            Ok(Event::RefsChanged("gitea/webhooks".into()))
        );
    }
    let created = fixture("gitea/webhook_repository_created.json");
    let h = headers(&[("x-gitea-event", "repository")]);
    assert_eq!(parse(&h, &created), Ok(Event::Relist));
}

#[test]
fn bitbucket_events() {
    let changed = fixture("bitbucket/webhook_repo_refs_changed.json");
    let h = headers(&[("x-event-key", "repo:refs_changed")]);
    assert_eq!(
        parse(&h, &changed),
        Ok(Event::RefsChanged("PROJ/repository".into()))
    );
    let modified = fixture("bitbucket/webhook_repo_modified.json");
    let h = headers(&[("x-event-key", "repo:modified")]);
    assert_eq!(parse(&h, &modified), Ok(Event::Relist));
    let h = headers(&[("x-event-key", "diagnostics:ping")]);
    assert_eq!(
        parse(&h, b"{}"),
        Ok(Event::Ignored("diagnostics:ping".into()))
    );
    assert!(matches!(
        parse(&HeaderMap::new(), &changed),
        Err(Refused::Payload(_))
    ));
}
