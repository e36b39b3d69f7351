//! A batch's input file, line by line: read as it streams from the file
//! store (never whole), and each line parsed into its `custom_id` and the
//! job envelope it stands for. One parser for validation and expansion, so
//! the two passes agree on every line.

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_store::batches::{Batch, LineError};
use sluice_store::files::Content;
use tokio_util::codec::{AnyDelimiterCodec, FramedRead};
use tokio_util::io::StreamReader;

/// The longest line read (a request with a long prompt); a longer one
/// fails the batch.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// The lines of `content`, in order (without their `\n`); an `Err` ends
/// the stream (the content could not be read, or a line is too long).
pub fn read(content: Content) -> impl Stream<Item = Result<Bytes, String>> {
    let reader = StreamReader::new(content.map_err(std::io::Error::other));
    let codec = AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), Vec::new(), MAX_LINE_BYTES);
    FramedRead::new(reader, codec).map(|line| {
        line.map_err(|e| match e {
            tokio_util::codec::AnyDelimiterCodecError::MaxChunkLengthExceeded => {
                format!("a line is longer than {MAX_LINE_BYTES} bytes")
            }
            e => format!("the file could not be read: {e}"),
        })
    })
}

/// Whether a line holds nothing (blank lines are skipped, not errors).
pub fn is_blank(raw: &[u8]) -> bool {
    raw.iter().all(u8::is_ascii_whitespace)
}

#[derive(Deserialize)]
struct Line {
    custom_id: Option<Value>,
    method: Option<Value>,
    url: Option<Value>,
    body: Option<Value>,
}

/// One line as a job: its caller's `custom_id` and its job envelope
/// (priority `batch`, metadata naming the batch and the line), or why it
/// is not one. `number` is the line's, 1-based. The body itself is
/// checked by the submission pipeline's own validation.
pub fn parse(raw: &[u8], number: u64, batch: &Batch) -> Result<(String, Value), LineError> {
    let error = |code: &str, message: String, param: Option<&str>| LineError {
        code: code.to_owned(),
        message,
        line: Some(number),
        param: param.map(str::to_owned),
    };
    let line: Line = serde_json::from_slice(raw).map_err(|e| {
        error(
            "invalid_json_line",
            format!("This line is not parseable as a JSON request object: {e}"),
            None,
        )
    })?;
    let custom_id = match line.custom_id {
        Some(Value::String(id)) if !id.is_empty() => id,
        _ => {
            return Err(error(
                "missing_custom_id",
                "`custom_id` must be a non-empty string".into(),
                Some("custom_id"),
            ))
        }
    };
    if line.method != Some(json!("POST")) {
        return Err(error(
            "invalid_method",
            "`method` must be \"POST\"".into(),
            Some("method"),
        ));
    }
    if line.url.as_ref().and_then(Value::as_str) != Some(batch.endpoint.as_str()) {
        return Err(error(
            "invalid_url",
            format!("`url` must be the batch's endpoint, {:?}", batch.endpoint),
            Some("url"),
        ));
    }
    let Some(body) = line.body else {
        return Err(error(
            "missing_body",
            "`body` is required".into(),
            Some("body"),
        ));
    };
    let envelope = json!({
        "endpoint": batch.endpoint,
        "body": body,
        "priority": "batch",
        "metadata": {"batch_id": batch.id, "custom_id": custom_id},
    });
    Ok((custom_id, envelope))
}

/// A refusal of the pipeline's validation, as the line's error.
pub fn refused(e: &crate::problem::ApiError, number: u64) -> LineError {
    let problem = e.problem();
    let (code, param) = match e.slug() {
        "unknown-model" => ("model_not_found", Some("body.model")),
        "missing-model" => ("invalid_request", Some("body.model")),
        _ => ("invalid_request", Some("body")),
    };
    LineError {
        code: code.to_owned(),
        message: problem.detail,
        line: Some(number),
        param: param.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use futures::TryStreamExt;
    use sluice_store::batches::NewBatch;

    use super::*;

    fn batch() -> Batch {
        Batch::new(NewBatch {
            tenant_id: "t".into(),
            tenant_name: "t".into(),
            key_id: "k".into(),
            input_file_id: "file-1".into(),
            endpoint: "/v1/chat/completions".into(),
            completion_window: "24h".into(),
            metadata: None,
            created_at: Utc::now(),
            expires_at: Utc::now(),
        })
    }

    #[tokio::test]
    async fn lines_are_cut_across_parts_and_a_last_line_needs_no_newline() {
        let parts: Vec<Result<Bytes, sluice_store::StoreError>> = vec![
            Ok(Bytes::from_static(b"one\ntw")),
            Ok(Bytes::from_static(b"o\n\nthr")),
            Ok(Bytes::from_static(b"ee")),
        ];
        let lines: Vec<Bytes> = read(futures::stream::iter(parts).boxed())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(
            lines,
            ["one", "two", "", "three"].map(|s| Bytes::from_static(s.as_bytes()))
        );
    }

    #[test]
    fn a_line_becomes_a_batch_job_envelope_naming_its_batch_and_custom_id() {
        let b = batch();
        let raw = br#"{"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}"#;
        let (custom_id, envelope) = parse(raw, 1, &b).unwrap();
        assert_eq!(custom_id, "r1");
        assert_eq!(envelope["priority"], "batch");
        assert_eq!(
            envelope["metadata"],
            json!({"batch_id": b.id, "custom_id": "r1"})
        );
        assert_eq!(envelope["body"], json!({"model": "m"}));
    }

    #[test]
    fn a_bad_line_says_what_is_wrong_and_where() {
        let b = batch();
        let cases: [(&[u8], &str); 5] = [
            (b"{not json", "invalid_json_line"),
            (br#"{"method": "POST", "url": "/v1/chat/completions", "body": {}}"#, "missing_custom_id"),
            (br#"{"custom_id": "a", "method": "GET", "url": "/v1/chat/completions", "body": {}}"#, "invalid_method"),
            (br#"{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {}}"#, "invalid_url"),
            (br#"{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions"}"#, "missing_body"),
        ];
        for (raw, code) in cases {
            let e = parse(raw, 7, &b).unwrap_err();
            assert_eq!((e.code.as_str(), e.line), (code, Some(7)), "{e:?}");
        }
    }
}
