//! Schemathesis, a schema-driven fuzzer, against a live stack and the API's
//! own `/openapi.json`: no answer may be a 5xx, nor differ from the
//! document (status, content type, headers, body schema), and data the
//! document calls invalid must be refused. `scripts/test.sh` makes its
//! virtualenv (`scripts/pyvenv.sh`) and names it in `SLUICE_SCHEMATHESIS`.
//!
//! One check is left out: `positive_data_acceptance` (a request the schema
//! allows must be accepted). Sluice refuses, with a documented 422, what
//! no schema can say: a model that has no route, a webhook URL the address
//! policy refuses, a job with no `model` in its OpenAI-shaped `body`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sluice_e2e::{python_tool, Stack, StackOptions};

#[tokio::test]
async fn the_api_answers_as_its_openapi_document_says() {
    let stack = Stack::start(StackOptions::default()).await;
    let key = stack.key("fuzz").await;
    let schemathesis = python_tool(
        "SLUICE_SCHEMATHESIS",
        "schemathesis",
        "schemathesis>=4,<5",
        "schemathesis",
    );
    let run = tokio::process::Command::new(schemathesis)
        .current_dir(std::env::temp_dir())
        .args([
            "run",
            &format!("{}/openapi.json", stack.api_url()),
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "25",
            "--seed",
            "1593691902",
            "--no-color",
            "-H",
            &format!("Authorization: Bearer {key}"),
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("schemathesis ends within 5 minutes")
        .expect("schemathesis starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found answers that do not match /openapi.json:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
