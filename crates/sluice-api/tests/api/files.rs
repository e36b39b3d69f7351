//! The Files API (`/v1/files`): OpenAI's shapes, a tenant's own files, the
//! limits, and errors in OpenAI's shape.

use crate::support::files::{form, upload};
use crate::support::TestApp;

fn lines(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| format!("{{\"custom_id\": \"r{i}\", \"method\": \"POST\"}}\n"))
        .collect::<String>()
        .into_bytes()
}

#[tokio::test]
async fn a_file_uploads_lists_reads_back_and_deletes_as_openai_shows_it() {
    let app = TestApp::spawn().await;
    let content = lines(3);
    let reply = upload(&app, form(Some("batch"), Some(&content))).await;
    reply.expect(200);
    let file = reply.body.clone();
    assert_eq!(file["object"], "file");
    assert_eq!(file["purpose"], "batch");
    assert_eq!(file["filename"], "in.jsonl");
    assert_eq!(file["bytes"], content.len());
    assert_eq!(file["status"], "processed");
    let id = file["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("file-"), "{id}");
    // Kept for the default retention, 30 days.
    let kept = file["expires_at"].as_i64().unwrap() - file["created_at"].as_i64().unwrap();
    assert_eq!(kept, 30 * 86_400);

    assert_eq!(app.get(&format!("/v1/files/{id}")).await.body, file);
    let read = app.get(&format!("/v1/files/{id}/content")).await;
    read.expect(200);
    assert_eq!(read.header("content-type"), "application/octet-stream");
    assert_eq!(read.body.as_str().unwrap().as_bytes(), content.as_slice());

    let second = upload(&app, form(Some("batch"), Some(b"{}\n"))).await;
    let second_id = second.body["id"].as_str().unwrap().to_owned();
    let list = app.get("/v1/files").await;
    list.expect(200);
    assert_eq!(list.body["object"], "list");
    let ids: Vec<&str> = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![second_id.as_str(), id.as_str()], "newest first");
    let page = app.get("/v1/files?limit=1&order=asc").await;
    assert_eq!(page.body["data"][0]["id"], id);
    assert_eq!(page.body["has_more"], true);
    assert_eq!(page.body["last_id"], id);
    let rest = app.get(&format!("/v1/files?order=asc&after={id}")).await;
    assert_eq!(rest.body["data"][0]["id"], second_id);
    assert_eq!(rest.body["has_more"], false);

    let deleted = app.delete(&format!("/v1/files/{id}")).await;
    deleted.expect(200);
    assert_eq!(deleted.body["deleted"], true);
    assert_eq!(deleted.body["id"], id);
    app.get(&format!("/v1/files/{id}"))
        .await
        .expect_openai_error(404, "invalid_request_error", None);
    app.delete(&format!("/v1/files/{id}"))
        .await
        .expect_openai_error(404, "invalid_request_error", None);
}

#[tokio::test]
async fn another_tenants_file_is_not_found() {
    let app = TestApp::spawn().await;
    let id = upload(&app, form(Some("batch"), Some(&lines(1))))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = app.tenant("other").await;
    for path in [format!("/v1/files/{id}"), format!("/v1/files/{id}/content")] {
        let reply = other.get(&path).await;
        reply.expect_openai_error(404, "invalid_request_error", None);
        assert!(reply.message().contains(&id), "{reply:?}");
    }
    other
        .delete(&format!("/v1/files/{id}"))
        .await
        .expect_openai_error(404, "invalid_request_error", None);
    assert_eq!(
        other.get("/v1/files").await.body["data"],
        serde_json::json!([])
    );
    app.get(&format!("/v1/files/{id}")).await.expect(200);
}

#[tokio::test]
async fn uploads_past_the_limits_or_malformed_are_refused_and_leave_nothing() {
    let app = TestApp::builder()
        .toml("[files]\nmax_lines = 5\nmax_bytes = 4000000\n\n[api]\nmax_body_bytes = 1000000\n")
        .spawn()
        .await;
    let reply = upload(&app, form(Some("batch"), Some(&lines(6)))).await;
    reply.expect_openai_error(413, "invalid_request_error", None);
    assert!(reply.message().contains("5 lines"), "{reply:?}");
    // The file's own limit, not the body limit, bounds an upload.
    let big = vec![b'x'; 3_000_000];
    upload(&app, form(Some("batch"), Some(&big)))
        .await
        .expect(200);
    let over = vec![b'x'; 4_000_001];
    upload(&app, form(Some("batch"), Some(&over)))
        .await
        .expect_openai_error(413, "invalid_request_error", None);

    let reply = upload(&app, form(Some("fine-tune"), Some(b"{}\n"))).await;
    reply.expect_openai_error(400, "invalid_request_error", None);
    assert!(reply.message().contains("batch"), "{reply:?}");
    let reply = upload(&app, form(None, Some(b"{}\n"))).await;
    assert!(reply.message().contains("purpose"), "{reply:?}");
    let reply = upload(&app, form(Some("batch"), None)).await;
    reply.expect_openai_error(400, "invalid_request_error", None);
    app.post("/v1/files", &serde_json::json!({"purpose": "batch"}))
        .await
        .expect_openai_error(400, "invalid_request_error", None);
    for bad in ["limit=0", "limit=-1", "order=sideways"] {
        app.get(&format!("/v1/files?{bad}"))
            .await
            .expect_openai_error(400, "invalid_request_error", None);
    }
    // Only the one good upload is there.
    let list = app.get("/v1/files").await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(list.body["data"][0]["bytes"], 3_000_000);
}
