//! The request pipeline: retries by class, Retry-After, idempotency, 401/421 handling, typed
//! errors for JSON/HTML/empty bodies, tenant state, timeouts. Against a scripted server on
//! 127.0.0.1 (exact sequences) and the in-process emulator (real behaviour).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use superoffice::prelude::*;
use superoffice::retry::RetryPolicy;
use superoffice::runtime::Observer;
use superoffice::{Error, RawRequest};
use support::{Scripted, Step, emulator_client};

fn fast_retries() -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(4)
        .with_backoff(Duration::from_millis(1), Duration::from_millis(5))
}

fn contact(id: i32) -> serde_json::Value {
    json!({ "ContactId": id, "Name": "Amadeus AS" })
}

#[tokio::test]
async fn every_retry_class_is_retried_for_gets() {
    for failure in [
        Step::Drop,
        Step::json(429, json!({})),
        Step::text(502, "text/html", "<h1>Bad gateway</h1>"),
        Step::text(503, "text/plain", ""),
        Step::json(504, json!({})),
    ] {
        let server = Scripted::start(vec![
            failure.clone(),
            failure.clone(),
            Step::json(200, contact(5)),
        ])
        .await;
        let client = server.client().retry(fast_retries()).build().unwrap();
        let got = client
            .contact_get()
            .id(5)
            .send()
            .await
            .map_err(Error::from)
            .expect("recovers");
        assert_eq!(got.contact_id, Some(5), "{failure:?}");
        assert_eq!(
            server.requests().len(),
            3,
            "{failure:?}: two failures, then success"
        );
    }
}

#[tokio::test]
async fn retries_stop_at_max_attempts_with_the_typed_error() {
    let server = Scripted::start(vec![
        Step::json(
            503,
            json!({ "Error": true, "ErrorType": "Busy", "ErrorMessage": "busy" })
        );
        10
    ])
    .await;
    let client = server
        .client()
        .retry(fast_retries().with_max_attempts(3))
        .build()
        .unwrap();
    let err = client
        .contact_get()
        .id(5)
        .send()
        .await
        .map_err(Error::from)
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert!(
        matches!(&err, Error::Api(api) if api.error_type.as_deref() == Some("Busy")),
        "{err:?}"
    );
    assert_eq!(server.requests().len(), 3);

    let server = Scripted::start(vec![
        Step::json(429, json!({}))
            .with_header("retry-after", "0");
        10
    ])
    .await;
    let client = server
        .client()
        .retry(fast_retries().with_max_attempts(2))
        .build()
        .unwrap();
    let err = client
        .contact_get()
        .id(5)
        .send()
        .await
        .map_err(Error::from)
        .unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { retry_after: Some(d), .. } if d == Duration::ZERO),
        "{err:?}"
    );
}

#[tokio::test]
async fn posts_and_patches_are_not_retried_unless_opted_in() {
    let body: superoffice::types::ContactEntity = serde_json::from_value(contact(0)).unwrap();
    let server = Scripted::start(vec![
        Step::json(503, json!({})),
        Step::json(200, contact(9)),
    ])
    .await;
    let client = server.client().retry(fast_retries()).build().unwrap();
    let err = client
        .contact_post()
        .body(body.clone())
        .send()
        .await
        .map_err(Error::from)
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(
        server.requests().len(),
        1,
        "a POST is not retried by default"
    );

    let server = Scripted::start(vec![Step::Drop, Step::json(200, contact(9))]).await;
    let client = server.client().retry(fast_retries()).build().unwrap();
    assert!(
        client
            .contact_post()
            .body(body.clone())
            .send()
            .await
            .is_err()
    );
    assert_eq!(server.requests().len(), 1);

    // Opted in for this operation only.
    let mut policy = fast_retries();
    policy
        .non_idempotent_operations
        .insert("contact_post".into());
    let server = Scripted::start(vec![
        Step::json(503, json!({})),
        Step::json(200, contact(9)),
    ])
    .await;
    let client = server.client().retry(policy).build().unwrap();
    let created = client
        .contact_post()
        .body(body.clone())
        .send()
        .await
        .map_err(Error::from)
        .unwrap();
    assert_eq!(created.contact_id, Some(9));
    assert_eq!(server.requests().len(), 2);

    // Or for one call, through a derived client.
    let server = Scripted::start(vec![
        Step::json(502, json!({})),
        Step::json(200, contact(9)),
    ])
    .await;
    let client = server.client().retry(fast_retries()).build().unwrap();
    let retrying = client.with_retry(fast_retries().retrying_non_idempotent());
    retrying
        .contact_post()
        .body(body)
        .send()
        .await
        .map_err(Error::from)
        .unwrap();
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let server = Scripted::start(vec![
        Step::json(503, json!({})).with_header("retry-after", "30"),
        Step::json(429, json!({})).with_header(
            "retry-after",
            &httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(600)),
        ),
        Step::json(200, contact(5)),
    ])
    .await;
    let http = superoffice::http::client_builder().build().unwrap();
    let mut policy = fast_retries();
    policy.max_retry_after = Duration::from_secs(900);
    let client = server
        .client()
        .http_client(http)
        .attempt_timeout(None)
        .retry(policy)
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    client
        .contact_get()
        .id(5)
        .send()
        .await
        .map_err(Error::from)
        .unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(30 + 590), "waited {waited:?}");
    assert!(waited < Duration::from_secs(30 + 601), "waited {waited:?}");
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_is_not_waited_for() {
    let server = Scripted::start(vec![
        Step::json(503, json!({})).with_header("retry-after", "86400"),
        Step::json(200, contact(5)),
    ])
    .await;
    let client = server.client().retry(fast_retries()).build().unwrap();
    let err = client
        .contact_get()
        .id(5)
        .send()
        .await
        .map_err(Error::from)
        .unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(86400)),
        "{err:?}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn json_html_and_empty_error_bodies_keep_their_status() {
    let server = Scripted::start(vec![
        Step::json(404, json!({ "Error": true, "ErrorType": "SoNotFoundException", "ErrorMessage": "Contact id 99999 not found", "ErrorSource": "SuperOffice.Services" })),
        Step::text(500, "text/html", "<html><body><h1>Server Error</h1></body></html>"),
        Step::text(400, "text/plain", ""),
        Step::json(412, json!({ "Error": true, "ErrorType": "SoPreconditionFailed", "ErrorMessage": "changed" })),
        Step::json(409, json!({ "Error": true, "ErrorType": "JsonPatchTestFailed", "ErrorMessage": "test failed" })),
        Step::text(304, "text/plain", ""),
    ])
    .await;
    let client = server.client().retry(RetryPolicy::never()).build().unwrap();
    let get = || async {
        client
            .contact_get()
            .id(99999)
            .send()
            .await
            .map_err(Error::from)
            .unwrap_err()
    };

    match get().await {
        Error::NotFound(api) => {
            assert_eq!(api.status, StatusCode::NOT_FOUND);
            assert_eq!(api.error_type.as_deref(), Some("SoNotFoundException"));
            assert_eq!(api.message.as_deref(), Some("Contact id 99999 not found"));
            assert!(api.json_body);
        }
        other => panic!("{other:?}"),
    }
    match get().await {
        Error::Api(api) => {
            assert_eq!(api.status, StatusCode::INTERNAL_SERVER_ERROR);
            assert!(!api.json_body);
            assert!(
                api.message
                    .as_deref()
                    .unwrap_or_default()
                    .contains("Server Error"),
                "{api:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    match get().await {
        Error::Api(api) => {
            assert_eq!(api.status, StatusCode::BAD_REQUEST);
            assert_eq!(api.message.as_deref(), Some("Bad Request"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(get().await, Error::PreconditionFailed(_)));
    assert!(matches!(get().await, Error::Conflict(_)));
    assert!(matches!(get().await, Error::NotModified));
}

#[tokio::test]
async fn a_non_json_success_body_is_a_decode_error_with_an_excerpt() {
    let server = Scripted::start(vec![Step::text(
        200,
        "text/html",
        "<html>login page</html>",
    )])
    .await;
    let client = server.client().build().unwrap();
    match client
        .contact_get()
        .id(1)
        .send()
        .await
        .map_err(Error::from)
        .unwrap_err()
    {
        Error::Decode { excerpt, .. } => assert!(excerpt.contains("login page")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn default_headers_and_credentials_are_sent_and_api_version_is_not() {
    let server = Scripted::start(vec![Step::json(200, contact(5))]).await;
    let client = server
        .client()
        .app_token("app-secret")
        .language("en")
        .culture("nb-NO")
        .time_zone("UTC")
        .user_agent("tests/1.0")
        .build()
        .unwrap();
    client
        .contact_get()
        .id(5)
        .send()
        .await
        .map_err(Error::from)
        .unwrap();
    let seen = &server.requests()[0];
    assert_eq!(seen.target, "/Cust1/api/v1/Contact/5");
    assert_eq!(seen.header("authorization"), Some("Bearer token"));
    assert_eq!(seen.header("so-apptoken"), Some("app-secret"));
    assert_eq!(seen.header("so-language"), Some("en"));
    assert_eq!(seen.header("accept-language"), Some("en"));
    assert_eq!(seen.header("so-culture"), Some("nb-NO"));
    assert_eq!(seen.header("so-timezone"), Some("UTC"));
    assert_eq!(seen.header("user-agent"), Some("tests/1.0"));
    assert_eq!(seen.header("api-version"), None);
    assert!(
        !format!("{client:?}").contains("app-secret"),
        "secrets stay out of Debug"
    );
}

#[tokio::test]
async fn a_401_refreshes_once_then_is_unauthorized() {
    let server = Scripted::start(vec![Step::json(401, json!({})); 3]).await;
    let client = server.client().build().unwrap();
    let err = client
        .contact_get()
        .id(5)
        .send()
        .await
        .map_err(Error::from)
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized(_)), "{err:?}");
    assert_eq!(server.requests().len(), 2, "one replay after refreshing");
}

#[tokio::test]
async fn the_overall_timeout_covers_every_attempt() {
    let server = Scripted::start(vec![Step::json(503, json!({})); 100]).await;
    let policy = RetryPolicy::default()
        .with_max_attempts(100)
        .with_backoff(Duration::from_millis(50), Duration::from_millis(50));
    let client = server
        .client()
        .retry(policy)
        .overall_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = client
        .contact_get()
        .id(5)
        .send()
        .await
        .map_err(Error::from)
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout(d) if d == Duration::from_millis(300)),
        "{err:?}"
    );
}

#[derive(Debug, Default)]
struct Recorder {
    retries: Mutex<Vec<String>>,
    attempts: Mutex<Vec<Option<u16>>>,
}

impl Observer for Recorder {
    fn attempt(
        &self,
        _operation: &str,
        status: Option<StatusCode>,
        _attempt: u32,
        _latency: Duration,
    ) {
        self.attempts
            .lock()
            .unwrap()
            .push(status.map(|s| s.as_u16()));
    }
    fn retry(&self, operation: &str, reason: &str, _delay: Duration) {
        self.retries
            .lock()
            .unwrap()
            .push(format!("{operation}: {reason}"));
    }
}

#[tokio::test]
async fn the_emulator_serves_a_contact_through_the_state_api() {
    let emu = emulator::Emulator::start(emulator::Config {
        counts: emulator::SeedCounts::contacts_only(20),
        ..Default::default()
    })
    .await
    .unwrap();
    let client = emulator_client(&emu).build().unwrap();
    let contact = client
        .contact_get()
        .id(1)
        .send()
        .await
        .map_err(Error::from)
        .unwrap();
    assert_eq!(contact.contact_id, Some(1));
    let state = client
        .runtime()
        .tenant()
        .unwrap()
        .last_known()
        .await
        .unwrap();
    assert_eq!(state.endpoint, emu.tenant_url());
    let missing = client
        .contact_get()
        .id(999_999)
        .send()
        .await
        .map_err(Error::from)
        .unwrap_err();
    assert!(matches!(missing, Error::NotFound(_)), "{missing:?}");
}

#[tokio::test]
async fn an_image_download_asks_for_the_image_types_the_operation_produces() {
    // The scripted server records the Accept header the generated operation sends.
    let server = Scripted::start(vec![Step::json(200, contact(5))]).await;
    let client = server.client().build().unwrap();
    let _ = client.contact_get_image().contact_id(5).send().await;
    let accept = server.requests()[0].header("accept").map(str::to_string);
    let accept = accept.expect("an Accept header");
    assert!(accept.contains("image/png"), "{accept}");
    assert!(!accept.contains("json"), "{accept}");

    // The emulator answers 406 to an Accept without an image type, like content negotiation
    // does; the generated call gets the PNG.
    let emu = emulator::Emulator::start(emulator::Config {
        counts: emulator::SeedCounts::contacts_only(3),
        ..Default::default()
    })
    .await
    .unwrap();
    let client = emulator_client(&emu).build().unwrap();
    let image = client
        .contact_get_image()
        .contact_id(1)
        .send()
        .await
        .map_err(Error::from)
        .unwrap();
    assert_eq!(
        image
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/png")
    );
    let chunks: Vec<bytes::Bytes> =
        futures::TryStreamExt::try_collect(image.into_inner().into_inner())
            .await
            .unwrap();
    let bytes: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    assert_eq!(&bytes[..4], b"\x89PNG");
    // JSON operations still ask for JSON.
    client
        .contact_get()
        .id(1)
        .send()
        .await
        .map_err(Error::from)
        .unwrap();
}

#[tokio::test]
async fn errors_name_status_type_message_operation_and_retryability() {
    let emu = emulator::Emulator::start(emulator::Config {
        counts: emulator::SeedCounts::contacts_only(3),
        ..Default::default()
    })
    .await
    .unwrap();
    let client = emulator_client(&emu).build().unwrap();
    let err = client
        .contact_get()
        .id(999_999)
        .send()
        .await
        .map_err(Error::from)
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    assert_eq!(err.operation(), Some("contact_get"));
    assert!(err.error_type().is_some(), "{err:?}");
    assert!(err.message().is_some(), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_421_re_resolves_the_endpoint_once() {
    let emu = emulator::Emulator::start(emulator::Config {
        counts: emulator::SeedCounts::contacts_only(5),
        ..Default::default()
    })
    .await
    .unwrap();
    let recorder = Arc::new(Recorder::default());
    let client = emulator_client(&emu)
        .observer(recorder.clone())
        .build()
        .unwrap();
    client
        .contact_get()
        .id(1)
        .send()
        .await
        .map_err(Error::from)
        .unwrap();
    let before = emu.tenant_url();
    emu.move_tenant();
    assert_ne!(before, emu.tenant_url());
    client
        .contact_get()
        .id(2)
        .send()
        .await
        .map_err(Error::from)
        .expect("follows the move");
    assert_eq!(
        recorder.retries.lock().unwrap().as_slice(),
        ["contact_get: re-resolve"]
    );
    assert_eq!(
        recorder.attempts.lock().unwrap().as_slice(),
        [Some(200), Some(421), Some(200)]
    );
    let state = client
        .runtime()
        .tenant()
        .unwrap()
        .last_known()
        .await
        .unwrap();
    assert_eq!(state.endpoint, emu.tenant_url());
}

#[tokio::test]
async fn a_tenant_that_is_not_running_is_a_typed_error() {
    let emu = emulator::Emulator::start(emulator::Config {
        counts: emulator::SeedCounts::contacts_only(1),
        ..Default::default()
    })
    .await
    .unwrap();
    emu.set_tenant_state(emulator::tenant::TenantState::Suspended);
    let client = emulator_client(&emu).build().unwrap();
    let err = client
        .contact_get()
        .id(1)
        .send()
        .await
        .map_err(Error::from)
        .unwrap_err();
    match err {
        Error::TenantNotRunning { context, state } => {
            assert_eq!(context, emu.context_identifier());
            assert_eq!(state, "Suspended");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn raw_requests_use_the_same_pipeline() {
    let emu = emulator::Emulator::start(emulator::Config {
        counts: emulator::SeedCounts::contacts_only(3),
        ..Default::default()
    })
    .await
    .unwrap();
    let client = emulator_client(&emu).build().unwrap();
    let request = RawRequest::new(reqwest::Method::PATCH, "/api/v1/Contact/2")
        .json(
            "application/merge-patch+json",
            &json!({ "Name": "Merged Name" }),
        )
        .unwrap();
    let response = client
        .send_raw("contact_merge_patch", request)
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["Name"], "Merged Name");
    let err = client
        .send_raw(
            "contact_get",
            RawRequest::new(reqwest::Method::GET, "/api/v1/Contact/424242"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn image_uploads_are_multipart_puts() {
    let server = Scripted::start(vec![
        Step::json(503, json!({})),
        Step::Respond {
            status: 200,
            headers: vec![],
            body: "42".into(),
        },
    ])
    .await;
    let client = server.client().retry(fast_retries()).build().unwrap();
    let blob = superoffice::upload::save_image(
        &client,
        superoffice::upload::ImageOwner::Person,
        7,
        bytes::Bytes::from_static(b"GIF89a"),
        "image/gif",
    )
    .await
    .unwrap();
    assert_eq!(blob, 42);
    let seen = server.requests();
    assert_eq!(seen.len(), 2, "a PUT is retried");
    assert_eq!(seen[1].method, "PUT");
    assert_eq!(seen[1].target, "/Cust1/api/v1/Person/7/Image");
    assert!(
        seen[1]
            .header("content-type")
            .unwrap()
            .starts_with("multipart/form-data; boundary=")
    );
}

/// Fails `failures` times with a 503 from the "token endpoint", then hands out a token.
#[derive(Debug)]
struct FlakyAuth {
    failures: std::sync::atomic::AtomicU32,
}

impl superoffice::auth::Auth for FlakyAuth {
    fn credential(
        &self,
    ) -> superoffice::auth::BoxFuture<'_, superoffice::Result<superoffice::auth::Credential>> {
        Box::pin(async move {
            if self.failures.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                self.failures
                    .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                return Err(Error::Api(Box::new(superoffice::ApiError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    error_type: None,
                    message: Some("token endpoint down".into()),
                    source: None,
                    json_body: false,
                    operation: None,
                })));
            }
            Ok(superoffice::auth::Credential::Bearer("fresh".into()))
        })
    }
    fn refresh(
        &self,
        _rejected: &superoffice::auth::Credential,
    ) -> superoffice::auth::BoxFuture<'_, superoffice::Result<superoffice::auth::Credential>> {
        self.credential()
    }
}

#[tokio::test]
async fn a_login_host_outage_is_retried_for_any_method() {
    let server = Scripted::start(vec![Step::json(200, contact(9))]).await;
    let client = Client::builder()
        .base_url(format!("{}/Cust1", server.url()))
        .auth(FlakyAuth { failures: 2.into() })
        .retry(fast_retries())
        .build()
        .unwrap();
    let body: superoffice::types::ContactEntity = serde_json::from_value(contact(0)).unwrap();
    client
        .contact_post()
        .body(body)
        .send()
        .await
        .map_err(Error::from)
        .expect("the POST was never sent before, so retrying is safe");
    assert_eq!(server.requests().len(), 1);
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Bearer fresh")
    );

    let client = Client::builder()
        .base_url(format!("{}/Cust1", server.url()))
        .auth(FlakyAuth {
            failures: 100.into(),
        })
        .retry(fast_retries())
        .build()
        .unwrap();
    let err = client
        .contact_get()
        .id(1)
        .send()
        .await
        .map_err(Error::from)
        .unwrap_err();
    assert_eq!(
        err.status(),
        Some(StatusCode::SERVICE_UNAVAILABLE),
        "{err:?}"
    );
    assert!(err.to_string().contains("token endpoint down"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Credentials never follow a redirect

/// A client for `server` carrying a ticket, `SO-AppToken` and a builder-level app token.
fn ticket_client(server: &Scripted) -> superoffice::ClientBuilder {
    Client::builder()
        .base_url(format!("{}/Cust1", server.url()))
        .auth(superoffice::auth::StaticAuth::ticket(
            "7T:ticket",
            "app-secret",
        ))
        .app_token("app-secret")
        .retry(fast_retries())
}

fn assert_no_credentials(seen: &[support::Seen]) {
    for request in seen {
        for header in ["authorization", "so-apptoken"] {
            assert_eq!(
                request.header(header),
                None,
                "{header} reached the redirect target: {request:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_an_error_and_carries_no_credential() {
    for status in [301, 302, 303, 307, 308] {
        let elsewhere = Scripted::start(vec![]).await;
        let target = format!("{}/Cust1/api/v1/Contact/5", elsewhere.url());
        let server = Scripted::start(vec![
            Step::json(status, json!({})).with_header("location", &target),
        ])
        .await;
        let client = ticket_client(&server).build().unwrap();
        let err = client
            .contact_get()
            .id(5)
            .send()
            .await
            .map_err(Error::from)
            .unwrap_err();
        let Error::Redirect {
            operation,
            status: got,
            location,
            followed,
        } = &err
        else {
            panic!("{status}: expected Error::Redirect, got {err:?}")
        };
        assert_eq!(operation, "contact_get");
        assert_eq!(got.as_u16(), status);
        assert_eq!(location.as_deref(), Some(target.as_str()));
        assert!(!followed);
        assert_eq!(err.status().map(|s| s.as_u16()), Some(status));
        // The origin saw the credential once (no replay of a redirect); the target nothing.
        let seen = server.requests();
        assert_eq!(seen.len(), 1, "{status}: a redirect is not retried");
        assert_eq!(seen[0].header("authorization"), Some("SOTicket 7T:ticket"));
        assert_eq!(seen[0].header("so-apptoken"), Some("app-secret"));
        assert!(
            elsewhere.requests().is_empty(),
            "{status}: the redirect target was contacted: {:?}",
            elsewhere.requests()
        );
    }
}

#[tokio::test]
async fn hand_written_requests_refuse_redirects_too() {
    let elsewhere = Scripted::start(vec![]).await;
    let server = Scripted::start(vec![
        Step::json(307, json!({})).with_header("location", &format!("{}/x", elsewhere.url())),
    ])
    .await;
    let client = ticket_client(&server).build().unwrap();
    let request = RawRequest::new(reqwest::Method::PATCH, "/api/v1/Contact/2")
        .json("application/merge-patch+json", &json!({ "Name": "n" }))
        .unwrap();
    let err = client
        .send_raw("contact_merge_patch", request)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Redirect { operation, status, .. }
            if operation == "contact_merge_patch" && status.as_u16() == 307),
        "{err:?}"
    );
    assert!(elsewhere.requests().is_empty());
}

#[tokio::test]
async fn not_modified_is_not_a_redirect() {
    let server = Scripted::start(vec![Step::text(304, "text/plain", "")]).await;
    let client = ticket_client(&server).build().unwrap();
    let err = client
        .send_raw(
            "contact_get",
            RawRequest::new(reqwest::Method::GET, "/api/v1/Contact/1"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotModified), "{err:?}");
}

#[tokio::test]
async fn a_caller_client_that_follows_a_redirect_gets_the_answer_refused() {
    let elsewhere = Scripted::start(vec![Step::json(200, contact(5))]).await;
    let target = format!("{}/Cust1/api/v1/Contact/5", elsewhere.url());
    let server = Scripted::start(vec![
        Step::json(302, json!({})).with_header("location", &target),
    ])
    .await;
    // A client with reqwest's default policy (follows up to 10 redirects).
    let following = superoffice::http::client_builder()
        .redirect(reqwest::redirect::Policy::default())
        .build()
        .unwrap();
    let client = ticket_client(&server)
        .http_client(following)
        .build()
        .unwrap();
    let err = client
        .contact_get()
        .id(5)
        .send()
        .await
        .map_err(Error::from)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Redirect { followed: true, location: Some(l), status, .. }
            if *l == target && status.as_u16() == 200),
        "the answer from the other origin is refused: {err:?}"
    );
    // What the docs warn about: such a client re-sent the request before the SDK could
    // refuse the answer. reqwest drops `Authorization` across origins, but not `SO-AppToken`;
    // hence "build the client from superoffice::http::client_builder".
    let leaked = elsewhere.requests();
    assert_eq!(leaked.len(), 1);
    assert_eq!(leaked[0].header("authorization"), None);
    assert_eq!(leaked[0].header("so-apptoken"), Some("app-secret"));

    // The same setup with a client from the SDK's builder: refused, and nothing leaves.
    let elsewhere = Scripted::start(vec![Step::json(200, contact(5))]).await;
    let target = format!("{}/Cust1/api/v1/Contact/5", elsewhere.url());
    let server = Scripted::start(vec![
        Step::json(302, json!({})).with_header("location", &target),
    ])
    .await;
    let safe = superoffice::http::client_builder().build().unwrap();
    let client = ticket_client(&server).http_client(safe).build().unwrap();
    let err = client
        .contact_get()
        .id(5)
        .send()
        .await
        .map_err(Error::from)
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Redirect {
                followed: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert_no_credentials(&elsewhere.requests());
    assert!(elsewhere.requests().is_empty());
}

/// A State API answer for `Cust1` with `endpoint`.
fn state_answer(endpoint: &str) -> Step {
    Step::json(
        200,
        json!({
            "ContextIdentifier": "Cust1", "Endpoint": endpoint, "State": "Running",
            "IsRunning": true,
        }),
    )
}

#[tokio::test]
async fn an_endpoint_outside_the_environment_is_refused_and_never_contacted() {
    let elsewhere = Scripted::start(vec![]).await;
    let foreign = format!("{}/Cust1", elsewhere.url());
    // The "login host" answers the State API with an endpoint on another origin, every time.
    let login = Scripted::start(vec![state_answer(&foreign); 8]).await;
    let client = Client::builder()
        .environment(superoffice::Environment::custom(&login.url()).unwrap())
        .customer_id("Cust1")
        .auth(superoffice::auth::StaticAuth::bearer("token"))
        .app_token("app-secret")
        .retry(fast_retries())
        .build()
        .unwrap();
    let err = client
        .contact_get()
        .id(5)
        .send()
        .await
        .map_err(Error::from)
        .unwrap_err();
    let Error::UntrustedEndpoint {
        context,
        endpoint,
        reason,
    } = &err
    else {
        panic!("expected Error::UntrustedEndpoint, got {err:?}")
    };
    assert_eq!(context, "Cust1");
    assert_eq!(endpoint, &foreign);
    assert!(reason.contains("own origin"), "{reason}");
    assert!(err.to_string().contains(&foreign), "{err}");
    assert!(
        elsewhere.requests().is_empty(),
        "the foreign endpoint was contacted"
    );
    let asked = login.requests();
    assert_eq!(
        asked.len(),
        1,
        "an untrusted endpoint is not retried: {asked:?}"
    );
    assert_eq!(asked[0].target, "/api/state/Cust1");
    assert_no_credentials(&asked);
    assert!(
        client
            .runtime()
            .tenant()
            .unwrap()
            .last_known()
            .await
            .is_none(),
        "an untrusted endpoint is not cached"
    );

    // The same login host naming its own origin is trusted.
    let login = Scripted::start(vec![]).await;
    let own = format!("{}/tenant1/Cust1", login.url());
    login.push([state_answer(&own), Step::json(200, contact(5))]);
    let client = Client::builder()
        .environment(superoffice::Environment::custom(&login.url()).unwrap())
        .customer_id("Cust1")
        .auth(superoffice::auth::StaticAuth::bearer("token"))
        .build()
        .unwrap();
    let got = client
        .contact_get()
        .id(5)
        .send()
        .await
        .map_err(Error::from)
        .unwrap();
    assert_eq!(got.contact_id, Some(5));
    assert_eq!(
        login.requests()[1].target,
        "/tenant1/Cust1/api/v1/Contact/5"
    );
}

#[tokio::test]
async fn a_state_api_redirect_is_refused() {
    let elsewhere = Scripted::start(vec![]).await;
    let login =
        Scripted::start(vec![Step::json(302, json!({})).with_header(
            "location",
            &format!("{}/api/state/Cust1", elsewhere.url()),
        )])
        .await;
    let client = Client::builder()
        .environment(superoffice::Environment::custom(&login.url()).unwrap())
        .customer_id("Cust1")
        .auth(superoffice::auth::StaticAuth::bearer("token"))
        .retry(fast_retries())
        .build()
        .unwrap();
    let err = client
        .contact_get()
        .id(5)
        .send()
        .await
        .map_err(Error::from)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Redirect { operation, status, followed: false, .. }
            if operation == "state api" && status.as_u16() == 302),
        "{err:?}"
    );
    assert!(elsewhere.requests().is_empty());
    assert_eq!(login.requests().len(), 1, "a redirect is not retried");
}
