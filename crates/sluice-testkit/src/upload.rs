//! A batch input file as an OpenAI SDK uploads it: `POST /v1/files`,
//! multipart, `purpose=batch` before `file`.

const BOUNDARY: &str = "sluice-testkit-boundary-7Qx2";

/// The `Content-Type` and body of an upload of `content` (JSONL) as a
/// batch input file.
pub fn batch_input_form(content: &[u8]) -> (String, Vec<u8>) {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"input.jsonl\"\r\n\
         Content-Type: application/jsonl\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend(format!("\r\n--{BOUNDARY}--\r\n").bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

/// Uploads `content` as a batch input file to the API at `api` with
/// `key`; the file's id, or why not.
pub async fn upload_batch_input(
    http: &reqwest::Client,
    api: &str,
    key: &str,
    content: &[u8],
) -> Result<String, String> {
    let (content_type, body) = batch_input_form(content);
    let response = http
        .post(format!("{}/v1/files", api.trim_end_matches('/')))
        .bearer_auth(key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("the upload did not reach the API: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("the upload was refused ({status}): {text}"));
    }
    let file: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    file["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("the upload's answer has no id: {text}"))
}
