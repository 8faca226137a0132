//! kiln-registry against hostile or broken servers (the test proxy's
//! faults): a silent registry, a slow but moving upload, a token service
//! that redirects credentials to another origin or hands out a token with
//! a line break, and a remote cache that drip-feeds a lazy blob.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_oci::sha256_bytes;
use kiln_registry::cas::HttpCas;
use kiln_registry::deadline::SILENT_ATTEMPTS;
use kiln_registry::{Client, ClientOptions, Deadlines, DockerConfig, ImageRef, RepoRef, Target};
use kiln_testsupport::registry::{basic_auth, docker_config, Action, Proxy, Registry, Request};

/// Short deadlines, so that each fault costs seconds.
fn short() -> Deadlines {
    Deadlines {
        connect: Duration::from_secs(2),
        answer: Duration::from_secs(1),
        transfer: Duration::from_secs(30),
    }
}

fn client(config: DockerConfig, deadlines: Deadlines) -> Client {
    Client::with_deadlines(
        ClientOptions {
            docker_config: config,
            user_agent: "kiln-registry-test".into(),
        },
        deadlines,
    )
    .expect("client")
}

fn repo(addr: &str, path: &str) -> RepoRef {
    RepoRef::parse(&format!("{addr}/{path}")).expect("repository")
}

fn message(e: anyhow::Error) -> String {
    format!("{e:#}")
}

fn latest(repo: &RepoRef) -> ImageRef {
    ImageRef::new(repo.clone(), Target::tag("latest").unwrap())
}

#[test]
fn the_default_deadlines_end_a_silent_registry_within_about_a_minute() {
    let d = Deadlines::default();
    // Each silent try waits at most the connect and the silence deadline;
    // the retry waits between them are under a second in all.
    let worst = (d.answer + d.connect).max(d.answer) * SILENT_ATTEMPTS;
    assert!(
        d.answer * SILENT_ATTEMPTS <= Duration::from_secs(60),
        "{d:?}"
    );
    assert!(worst <= Duration::from_secs(90), "{d:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_silent_registry_fails_fast_naming_the_host_and_what_was_awaited() {
    let silent = Proxy::start("127.0.0.1:1", |_| Action::Silent);
    let c = client(DockerConfig::empty(), short());
    let started = Instant::now();
    let err = message(
        c.get_manifest(&latest(&repo(&silent.addr, "kiln/app")))
            .await
            .unwrap_err(),
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}: {err}");
    assert!(
        err.contains(&format!(
            "{} sent nothing for 1 s while the answer to http://{}/v2/ was awaited \
             (KILN_REGISTRY_ANSWER_TIMEOUT sets this deadline in seconds)",
            silent.addr, silent.addr
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("gave up after {SILENT_ATTEMPTS} silent tries")),
        "{err}"
    );
    assert_eq!(silent.requests().len(), SILENT_ATTEMPTS as usize);
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_but_moving_upload_succeeds() {
    let registry = Registry::start();
    // 12 MiB read 512 KiB at a time, 120 ms apart: about 3 s of upload,
    // far longer than the 1 s silence deadline, within the transfer one.
    let slow = Proxy::start_paced(
        &registry.addr,
        Some((512 << 10, Duration::from_millis(120))),
        |_| Action::Forward { corrupt: false },
    );
    let blob: Vec<u8> = (0..12u32 << 20).map(|i| (i % 251) as u8).collect();
    let digest = sha256_bytes(&blob);
    let dest = repo(&slow.addr, "kiln/slow");
    let c = client(DockerConfig::empty(), short());
    let started = Instant::now();
    c.push_blob_bytes(&dest, &digest, &blob).await.unwrap();
    assert!(
        started.elapsed() > short().answer * 2,
        "the upload was not slow: {:?}",
        started.elapsed()
    );
    assert!(c
        .blob_exists(&repo(&registry.addr, "kiln/slow"), &digest)
        .await
        .unwrap());
}

/// A registry (`/v2/` wants a Bearer token from `/token` here) whose token
/// service redirects (307) to `elsewhere`.
fn redirecting_token_registry(elsewhere: String) -> Proxy {
    Proxy::start("127.0.0.1:1", move |r: &Request| {
        let host = r.header("host").unwrap_or_default().to_string();
        if r.path() == "/token" {
            Action::Respond {
                status: 307,
                headers: vec![(
                    "Location".into(),
                    format!("http://{elsewhere}/token?{}", r.query()),
                )],
                body: vec![],
            }
        } else {
            Action::Respond {
                status: 401,
                headers: vec![(
                    "WWW-Authenticate".into(),
                    format!(r#"Bearer realm="http://{host}/token",service="kiln-test""#),
                )],
                body: vec![],
            }
        }
    })
}

#[tokio::test(flavor = "current_thread")]
async fn credentials_for_the_token_service_never_follow_a_redirect_to_another_origin() {
    let elsewhere = Proxy::start("127.0.0.1:1", |_| Action::Respond {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: br#"{"token":"stolen"}"#.to_vec(),
    });
    let registry = redirecting_token_registry(elsewhere.addr.clone());
    let dir = tempfile::tempdir().unwrap();
    for entry in [
        serde_json::json!({"identitytoken": "kiln-refresh-token"}),
        serde_json::json!({"auth": basic_auth("kiln", "kiln-password")}),
    ] {
        docker_config(
            dir.path(),
            &serde_json::json!({"auths": {registry.addr.clone(): entry}}),
        );
        let c = client(DockerConfig::load(dir.path()).unwrap(), short());
        let err = message(
            c.get_manifest(&latest(&repo(&registry.addr, "kiln/app")))
                .await
                .unwrap_err(),
        );
        assert!(
            err.contains(&format!(
                "refusing the token service's redirect from http://{}/token",
                registry.addr
            )) && err.contains("credentials go to the token service's own origin only"),
            "{err}"
        );
        assert!(!err.contains("kiln-refresh-token"), "{err}");
        assert!(!err.contains("kiln-password"), "{err}");
        assert!(
            elsewhere.requests().is_empty(),
            "the other origin was contacted: {:?}",
            elsewhere.requests()
        );
    }
    // Anonymous token requests carry nothing: they may follow it.
    let c = client(DockerConfig::empty(), short());
    let _ = c
        .get_manifest(&latest(&repo(&registry.addr, "kiln/app")))
        .await;
    assert_eq!(elsewhere.requests().len(), 1);
    assert!(elsewhere.requests()[0].header("authorization").is_none());
}

#[tokio::test(flavor = "current_thread")]
async fn a_token_with_a_line_break_is_refused_naming_the_token_service() {
    let registry = Proxy::start("127.0.0.1:1", |r: &Request| {
        let host = r.header("host").unwrap_or_default().to_string();
        if r.path() == "/token" {
            Action::Respond {
                status: 200,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: br#"{"token":"abc\r\nInjected: yes"}"#.to_vec(),
            }
        } else {
            Action::Respond {
                status: 401,
                headers: vec![(
                    "WWW-Authenticate".into(),
                    format!(r#"Bearer realm="http://{host}/token",service="kiln-test""#),
                )],
                body: vec![],
            }
        }
    });
    let c = client(DockerConfig::empty(), short());
    let err = message(
        c.get_manifest(&latest(&repo(&registry.addr, "kiln/app")))
            .await
            .unwrap_err(),
    );
    assert!(
        err.contains(&format!(
            "from the token service http://{}/token of {}",
            registry.addr, registry.addr
        )) && err.contains(
            "the token service's answer holds a token with a line break (CR or LF), \
             which cannot be sent in an Authorization header"
        ),
        "{err}"
    );
    assert!(!err.contains("failed to parse header value"), "{err}");

    // An identity token with one, from config.json: named with its source.
    let dir = tempfile::tempdir().unwrap();
    docker_config(
        dir.path(),
        &serde_json::json!({"auths": {registry.addr.clone(): {"identitytoken": "a\r\nb"}}}),
    );
    let c = client(DockerConfig::load(dir.path()).unwrap(), short());
    let lookup = c.credentials(&registry.addr).describe();
    assert!(
        lookup.contains(&format!("auths[\"{}\"] in ", registry.addr))
            && lookup.contains("the identity token contains a line break (CR or LF)"),
        "{lookup}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_drip_feeding_remote_cache_is_named_not_the_registry() {
    let registry = Registry::start();
    let blob: Vec<u8> = (0..4096u32).map(|i| (i % 253) as u8).collect();
    let digest = sha256_bytes(&blob);
    let body = blob.clone();
    let cache = Proxy::start("127.0.0.1:1", move |_| Action::Drip {
        status: 200,
        headers: vec![],
        body: body.clone(),
        pause: Duration::from_millis(100),
    });
    let deadlines = Deadlines {
        transfer: Duration::from_secs(2),
        ..short()
    };
    let cas = HttpCas::with_deadlines(
        &format!("http://{}", cache.addr),
        "kiln-registry-test",
        deadlines,
    )
    .unwrap();
    let c = client(DockerConfig::empty(), deadlines);
    let dest = repo(&registry.addr, "kiln/lazy");
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let err = message(
        c.push_blob_stream(&dest, &digest, blob.len() as u64, &sent, || async {
            cas.open(&digest, blob.len() as u64)
                .await?
                .ok_or_else(|| anyhow::anyhow!("not in the cache"))
        })
        .await
        .unwrap_err(),
    );
    assert!(started.elapsed() < Duration::from_secs(60), "{err}");
    let cas_url = format!("http://{}/cas/{}", cache.addr, digest.hex());
    assert!(
        err.contains(&format!(
            "reading blob {digest} from the remote cache failed: no complete answer from \
             {cas_url} within the deadline of 2 s"
        )),
        "{err}"
    );
    assert!(!err.contains("/blobs/uploads/"), "{err}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_registry_silent_after_an_upload_fails_after_three_silences() {
    let registry = Proxy::start("127.0.0.1:1", |r: &Request| match r.method.as_str() {
        "POST" => Action::Respond {
            status: 202,
            headers: vec![("Location".into(), "/v2/kiln/app/blobs/uploads/s1".into())],
            body: vec![],
        },
        "PUT" => Action::Silent,
        "DELETE" => Action::Respond {
            status: 204,
            headers: vec![],
            body: vec![],
        },
        _ => Action::Respond {
            status: 404,
            headers: vec![],
            body: vec![],
        },
    });
    let blob = vec![7u8; 4096];
    let digest = sha256_bytes(&blob);
    let c = client(DockerConfig::empty(), short());
    let started = Instant::now();
    let err = message(
        c.push_blob_bytes(&repo(&registry.addr, "kiln/app"), &digest, &blob)
            .await
            .unwrap_err(),
    );
    assert!(started.elapsed() < Duration::from_secs(20), "{err}");
    assert!(
        err.contains(&format!(
            "gave up after {SILENT_ATTEMPTS} silent tries: {} neither read more of the upload \
             nor answered for 1 s (PUT http://{}/v2/kiln/app/blobs/uploads/s1; \
             KILN_REGISTRY_ANSWER_TIMEOUT sets this deadline in seconds)",
            registry.addr, registry.addr
        )),
        "{err}"
    );
    let puts = registry
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .count();
    assert_eq!(puts, SILENT_ATTEMPTS as usize);
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_first_byte_is_waited_for_up_to_the_silence_deadline() {
    let late = |after| {
        Proxy::start("127.0.0.1:1", move |_| Action::Late {
            after,
            status: 200,
            body: b"{}".to_vec(),
        })
    };
    let c = client(DockerConfig::empty(), short());
    // Under the 1 s silence deadline: answered.
    let in_time = late(Duration::from_millis(300));
    c.ping(&repo(&in_time.addr, "kiln/app")).await.unwrap();
    // Past it: a silence, tried 3 times, naming the host.
    let too_late = late(Duration::from_secs(3));
    let err = message(c.ping(&repo(&too_late.addr, "kiln/app")).await.unwrap_err());
    assert!(
        err.contains(&format!(
            "gave up after {SILENT_ATTEMPTS} silent tries: {} sent nothing for 1 s",
            too_late.addr
        )),
        "{err}"
    );
}
