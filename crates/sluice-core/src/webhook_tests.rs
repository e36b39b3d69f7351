use super::*;
use crate::{Endpoint, Priority};

#[test]
fn signs_the_standard_webhooks_test_vector() {
    // The example of the Standard Webhooks reference libraries.
    let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let signature = secret.sign(
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1_614_265_330,
        br#"{"test": 2432232314}"#,
    );
    assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

#[test]
fn secrets_parse_generate_and_never_print() {
    let s = Secret::generate();
    assert!(s.expose().starts_with("whsec_"));
    let parsed = Secret::parse(s.expose()).unwrap();
    assert_eq!(parsed, s);
    // The generated key and the same key read back from its text sign alike.
    assert_eq!(parsed.sign("msg_1", 7, b"{}"), s.sign("msg_1", 7, b"{}"));
    assert_ne!(Secret::generate(), s);
    assert!(!format!("{s:?}").contains(&s.expose()[6..]));
}

#[test]
fn a_malformed_secret_is_refused_so_nothing_signs_with_an_empty_key() {
    assert_eq!(Secret::parse("sk-nope"), Err(MalformedSecret::Prefix));
    assert_eq!(Secret::parse("whsec_!!!"), Err(MalformedSecret::Base64));
    assert_eq!(Secret::parse("whsec_"), Err(MalformedSecret::Empty));
    // Only the prefix and a non-empty base64 key make a secret.
    assert!(Secret::parse("whsec_AA==").is_ok());
}

#[test]
fn during_an_overlap_both_secrets_sign() {
    let (old, new) = (Secret::generate(), Secret::generate());
    let now = Utc::now();
    let pair = SecretPair {
        current: new.clone(),
        previous: Some((old.clone(), now + chrono::Duration::seconds(60))),
    };
    let header = signature_header(&pair.live(now), "msg_1", 5, b"{}");
    let parts: Vec<&str> = header.split(' ').collect();
    assert_eq!(
        parts,
        [new.sign("msg_1", 5, b"{}"), old.sign("msg_1", 5, b"{}")]
    );
    let later = now + chrono::Duration::seconds(61);
    assert_eq!(pair.live(later), vec![new]);
}

fn ended(status: JobStatus, webhook: Option<JobWebhook>) -> JobRecord {
    let mut r = JobRecord::queued(
        JobId::new(),
        "t1".into(),
        Endpoint::Completions,
        "m".into(),
        Priority::Standard,
        Default::default(),
        Utc::now(),
        None,
    );
    r.status = status;
    r.finished_at = Some(Utc::now());
    r.webhook = webhook;
    r
}

#[test]
fn an_ended_job_with_a_webhook_makes_one_stable_event() {
    let spec: WebhookSpec = serde_json::from_str(r#"{"url": "https://example.com/h"}"#).unwrap();
    assert_eq!(spec.events, EventKind::JOB);
    let record = ended(JobStatus::Succeeded, Some(JobWebhook::Url(spec)));
    let event = JobEvent::of(&record).unwrap();
    assert_eq!(event.webhook_id, format!("msg_{}_succeeded", record.id));
    assert_eq!(JobEvent::of(&record).unwrap().webhook_id, event.webhook_id);
    let body: serde_json::Value = serde_json::from_str(&event.body).unwrap();
    assert_eq!(body["type"], "job.succeeded");
    assert_eq!(body["data"]["id"], record.id.to_string());
    assert_eq!(body["data"]["object"], "job");
    assert_eq!(body["data"]["status"], "succeeded");
    assert!(body["data"].get("tenant_id").is_none());
    assert!(body["timestamp"].is_string());
}

#[test]
fn no_event_without_a_webhook_a_wanted_kind_or_an_end() {
    assert!(JobEvent::of(&ended(JobStatus::Succeeded, None)).is_none());
    let only_failed = WebhookSpec {
        url: "https://example.com/h".parse().unwrap(),
        events: vec![EventKind::Failed],
    };
    let hook = Some(JobWebhook::Url(only_failed));
    assert!(JobEvent::of(&ended(JobStatus::Succeeded, hook.clone())).is_none());
    assert!(JobEvent::of(&ended(JobStatus::Failed, hook.clone())).is_some());
    assert!(JobEvent::of(&ended(JobStatus::Running, hook)).is_none());
    let endpoints = Some(JobWebhook::Endpoints);
    assert!(JobEvent::of(&ended(JobStatus::Canceled, endpoints)).is_some());
}

#[test]
fn messages_round_trip() {
    let record = ended(JobStatus::Failed, Some(JobWebhook::Endpoints));
    let event = WebhookMessage::Event(JobEvent::of(&record).unwrap());
    assert_eq!(
        WebhookMessage::decode(&event.encode().unwrap()).unwrap(),
        event
    );
    let m = WebhookMessage::Retry {
        delivery_id: "d1".into(),
        attempt: 3,
        step: 2,
        not_before: Utc::now(),
    };
    assert_eq!(WebhookMessage::decode(&m.encode().unwrap()).unwrap(), m);
}
