//! Result files as streams of JSON lines, and the one place a result line
//! is matched to its job.
//!
//! - [`LineSplitter`] cuts bytes, as they arrive, into lines; only a line
//!   not yet complete is kept, so a 200 MB file is never one string.
//! - [`Collector`] matches each line to a job by its `custom_id`, against
//!   the ids the batch was sent with: a line it cannot read, or whose id
//!   is unknown or already answered, is reported, never guessed onto a job.

use std::collections::HashMap;

use serde_json::Value;

use super::{BatchResults, LineResult};

/// The longest result line read: above any one answer (a job of 2,048
/// embeddings of 3,072 floats is about 75 MB of JSON), and a bound on what
/// is held when a file has no newlines.
pub const MAX_LINE_BYTES: usize = 256 * 1024 * 1024;

/// A line over the limit.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("a result line is longer than {0} bytes")]
pub struct LineTooLong(pub usize);

/// Cuts a byte stream into lines (`\n`, with a `\r` before it dropped).
#[derive(Debug)]
pub struct LineSplitter {
    /// The start of a line whose end has not arrived.
    partial: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    pub fn new(max: usize) -> Self {
        Self {
            partial: Vec::new(),
            max,
        }
    }

    /// Hands `each` every line `chunk` completes, and keeps the rest.
    pub fn push(&mut self, chunk: &[u8], each: &mut impl FnMut(&[u8])) -> Result<(), LineTooLong> {
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let (line, after) = rest.split_at(end);
            if self.partial.len() + line.len() > self.max {
                return Err(LineTooLong(self.max));
            }
            if self.partial.is_empty() {
                each(without_cr(line));
            } else {
                self.partial.extend_from_slice(line);
                each(without_cr(&self.partial));
                self.partial.clear();
            }
            rest = &after[1..];
        }
        if self.partial.len() + rest.len() > self.max {
            return Err(LineTooLong(self.max));
        }
        self.partial.extend_from_slice(rest);
        Ok(())
    }

    /// Hands `each` the last line, if the stream did not end with a newline.
    pub fn finish(self, each: &mut impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            each(without_cr(&self.partial));
        }
    }
}

fn without_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Collects the results of one batch, matched by `custom_id`.
pub struct Collector<'a> {
    /// Every id the batch was sent with, and whether a result named it.
    sent: HashMap<&'a str, bool>,
    results: BatchResults,
    /// The file being read, and its lines so far (to name a bad one).
    source: String,
    read: usize,
}

impl<'a> Collector<'a> {
    /// A collector for a batch sent with `custom_ids`.
    pub fn new(custom_ids: &'a [String]) -> Self {
        Self {
            sent: custom_ids.iter().map(|id| (id.as_str(), false)).collect(),
            results: BatchResults::default(),
            source: String::new(),
            read: 0,
        }
    }

    /// The lines that follow are from `source` (named in reports).
    pub fn begin(&mut self, source: impl Into<String>) {
        self.source = source.into();
        self.read = 0;
    }

    /// Takes one raw line: blank lines are skipped; a line matched to a
    /// job this batch sent and has no result for yet is read by `parse`
    /// (given its `custom_id` and the whole line); any other is reported.
    pub fn line(&mut self, raw: &[u8], parse: impl FnOnce(String, Value) -> LineResult) {
        self.read += 1;
        if raw.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let value = match serde_json::from_slice::<Value>(raw) {
            Ok(value) => value,
            Err(e) => return self.unmatched(format!("not JSON ({e})")),
        };
        let Some(id) = value.get("custom_id").and_then(Value::as_str) else {
            return self.unmatched("no custom_id".into());
        };
        match self.sent.get_mut(id) {
            None => self.unmatched(format!("custom_id {id:?} was not sent in this batch")),
            Some(true) => self.unmatched(format!(
                "a second result for custom_id {id:?} (the first stands)"
            )),
            Some(seen) => {
                *seen = true;
                let id = id.to_owned();
                self.results.lines.push(parse(id, value));
            }
        }
    }

    fn unmatched(&mut self, why: String) {
        let at = format!("{} line {}", self.source, self.read);
        self.results.unmatched.push(format!("{at}: {why}"));
    }

    pub fn finish(self) -> BatchResults {
        self.results
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::NotRunReason;

    fn split(chunks: &[&[u8]], max: usize) -> Result<Vec<String>, LineTooLong> {
        let mut lines = Vec::new();
        let mut each = |line: &[u8]| lines.push(String::from_utf8_lossy(line).into_owned());
        let mut splitter = LineSplitter::new(max);
        for chunk in chunks {
            splitter.push(chunk, &mut each)?;
        }
        splitter.finish(&mut each);
        Ok(lines)
    }

    #[test]
    fn lines_are_whole_whatever_the_chunks() {
        let text = b"{\"a\":1}\r\n{\"b\":2}\n\n{\"c\":3}";
        let whole = split(&[text], 100).unwrap();
        assert_eq!(whole, ["{\"a\":1}", "{\"b\":2}", "", "{\"c\":3}"]);
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(split(&bytes, 100).unwrap(), whole);
        let (a, b) = text.split_at(10);
        assert_eq!(split(&[a, b], 100).unwrap(), whole);
    }

    #[test]
    fn a_line_over_the_limit_is_an_error_not_a_growing_buffer() {
        assert_eq!(split(&[b"12345\n"], 5).unwrap(), ["12345"]);
        assert_eq!(split(&[b"123456\n"], 5), Err(LineTooLong(5)));
        assert_eq!(split(&[b"123", b"456"], 5), Err(LineTooLong(5)));
        assert_eq!(split(&[b"123", b"45\n67"], 5).unwrap(), ["12345", "67"]);
    }

    #[test]
    fn lines_are_matched_by_custom_id_and_strangers_are_reported() {
        let sent = vec!["job-1".to_owned(), "job-2".to_owned()];
        let mut collector = Collector::new(&sent);
        collector.begin("output file");
        let not_run = |custom_id: String, _: Value| LineResult::NotRun {
            custom_id,
            reason: NotRunReason::Expired,
        };
        for raw in [
            &br#"{"custom_id": "job-2"}"#[..],
            b"   ",
            b"{not json",
            br#"{"custom_id": "job-9"}"#,
            br#"{"id": "no custom id"}"#,
            br#"{"custom_id": "job-2"}"#,
            br#"{"custom_id": "job-1"}"#,
        ] {
            collector.line(raw, not_run);
        }
        let results = collector.finish();
        let ids: Vec<&str> = results.lines.iter().map(LineResult::custom_id).collect();
        assert_eq!(ids, ["job-2", "job-1"]);
        assert_eq!(results.unmatched.len(), 4, "{:?}", results.unmatched);
        assert!(results.unmatched[0].starts_with("output file line 3: not JSON"));
        assert!(results.unmatched[1].contains("\"job-9\" was not sent"));
        assert!(results.unmatched[2].ends_with("no custom_id"));
        assert!(results.unmatched[3].contains("second result for custom_id \"job-2\""));
    }
}
