//! Just enough of `multipart/form-data` (RFC 7578) to read a file upload:
//! the parts of a body, each with its field name, its file name if any,
//! and its bytes. Written here rather than pulling a crate in for the one
//! route that needs it (`POST /v1/files`); the SDKs send simple bodies.

use axum::body::Bytes;

/// One part of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    /// The `name` of its `Content-Disposition`.
    pub(crate) name: String,
    /// The `filename`, for a file.
    pub(crate) filename: Option<String>,
    pub(crate) data: Bytes,
}

/// The boundary a `Content-Type: multipart/form-data; boundary=…` names.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_owned())
            .filter(|b| !b.is_empty())
    })
}

/// The parts of `body`, or `None` when it is not a well-formed form with
/// this `boundary`.
pub(crate) fn parts(body: &Bytes, boundary: &str) -> Option<Vec<Part>> {
    let delimiter = format!("--{boundary}");
    let mut rest = find(body, delimiter.as_bytes(), 0)? + delimiter.len();
    let mut parts = Vec::new();
    loop {
        // After a delimiter: `--` ends the form, a line break opens a part.
        if body.get(rest..rest + 2) == Some(b"--".as_slice()) {
            return Some(parts);
        }
        rest = skip_line_break(body, rest)?;
        let headers_end = find(body, b"\r\n\r\n", rest)?;
        let headers = std::str::from_utf8(body.get(rest..headers_end)?).ok()?;
        let data_start = headers_end + 4;
        let next = find(body, format!("\r\n{delimiter}").as_bytes(), data_start)?;
        let (name, filename) = disposition(headers)?;
        parts.push(Part {
            name,
            filename,
            data: body.slice(data_start..next),
        });
        rest = next + 2 + delimiter.len();
    }
}

fn skip_line_break(body: &[u8], at: usize) -> Option<usize> {
    match body.get(at..at + 2) {
        Some(b"\r\n") => Some(at + 2),
        _ => None,
    }
}

/// The first position of `needle` in `haystack` from `from`.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut at = from;
    while let Some(offset) = haystack.get(at..)?.iter().position(|&b| b == first) {
        let start = at + offset;
        if haystack.get(start..start + needle.len())? == needle {
            return Some(start);
        }
        at = start + 1;
    }
    None
}

/// The `name` and `filename` of a part's `Content-Disposition: form-data`.
fn disposition(headers: &str) -> Option<(String, Option<String>)> {
    let line = headers.split("\r\n").find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case("content-disposition")
            .then_some(value)
    })?;
    let mut name = None;
    let mut filename = None;
    for param in line.split(';').skip(1) {
        let Some((key, value)) = param.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"').to_owned();
        match key.trim() {
            "name" => name = Some(value),
            "filename" => filename = Some(value),
            _ => {}
        }
    }
    Some((name?, filename))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(boundary: &str, parts: &[(&str, Option<&str>, &str)]) -> Bytes {
        let mut body = String::from("preamble\r\n");
        for (name, filename, data) in parts {
            body.push_str(&format!("--{boundary}\r\n"));
            match filename {
                Some(f) => body.push_str(&format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )),
                None => body.push_str(&format!(
                    "Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                )),
            }
            body.push_str(data);
            body.push_str("\r\n");
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        Bytes::from(body)
    }

    #[test]
    fn reads_fields_and_files() {
        let data = "{\"a\": 1}\n{\"b\": \"--x\"}\n";
        let body = form(
            "xyz",
            &[("purpose", None, "batch"), ("file", Some("in.jsonl"), data)],
        );
        let parts = parts(&body, "xyz").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "purpose");
        assert_eq!(parts[0].data, "batch");
        assert_eq!(parts[1].filename.as_deref(), Some("in.jsonl"));
        assert_eq!(parts[1].data, data);
    }

    #[test]
    fn finds_the_boundary() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            boundary("Multipart/Form-Data; charset=utf-8; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(boundary("application/json"), None);
        assert_eq!(boundary("multipart/form-data"), None);
    }

    #[test]
    fn refuses_a_broken_form() {
        assert_eq!(parts(&Bytes::from("no delimiter"), "x"), None);
        let cut = Bytes::from("--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue");
        assert_eq!(parts(&cut, "x"), None);
        let empty = Bytes::from("--x--\r\n");
        assert_eq!(parts(&empty, "x"), Some(vec![]));
    }
}
