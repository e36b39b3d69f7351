//! `sluice-bench compat`: what the queue adds to an OpenAI-compatible
//! call. The mock provider answers at once (its default: no latency), and
//! `--connections` clients each send chat completions one after another for
//! `--seconds`: straight to the mock, then through Sluice's
//! `POST /v1/chat/completions` (a job: queue, worker, provider, long-poll),
//! in the same run. Each request is new (no cache hit), as a caller's
//! traffic mostly is. Reports the latency each way, what Sluice adds at
//! the median, and the requests per second.
//!
//! With `--stream`, each request asks for `stream: true` and the phases
//! measure the time to the first token (the first content chunk) as well
//! as to the end; `--token-ms` gives the mock a decode time per token, so
//! that the first token comes well before the last, as with a real model.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use crate::cli::Connections;
use crate::progress::{self, Size};
use crate::stack::{self, BenchStack};
use crate::stats::percentile;

#[derive(Args, Debug)]
pub struct CompatArgs {
    /// Concurrent clients of each phase.
    #[arg(long, value_delimiter = ',', default_value = "2,64")]
    pub connections: Vec<usize>,
    /// How long each phase sends, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Stream the answers and measure the time to the first token.
    #[arg(long)]
    pub stream: bool,
    /// Completion tokens per answer.
    #[arg(long, default_value_t = 8)]
    pub max_tokens: u64,
    /// The mock's decode time per completion token, in ms (0: at once).
    #[arg(long, default_value_t = 0.0)]
    pub token_ms: f64,
    #[command(flatten)]
    pub conn: Connections,
}

/// One phase's figures.
struct Phase {
    latencies: Vec<Duration>,
    /// With `--stream`: the time to each answer's first token.
    first_tokens: Vec<Duration>,
    errors: usize,
    wall: Duration,
}

impl Phase {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    fn ms(&self, q: f64) -> f64 {
        percentile(&self.latencies, q)
    }

    fn first_ms(&self, q: f64) -> f64 {
        percentile(&self.first_tokens, q)
    }
}

/// What each request of a phase asks.
#[derive(Clone, Copy)]
struct Ask {
    stream: bool,
    max_tokens: u64,
}

pub async fn run(args: CompatArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.connections.is_empty() && args.connections.iter().all(|&c| c > 0),
        "--connections must name at least one count above 0"
    );
    let mut options = stack::options(&args.conn, args.workers);
    if args.token_ms > 0.0 {
        let us = (args.token_ms * 1000.0).round() as u64;
        options.mock_args = vec!["--latency-per-completion-token-us".into(), us.to_string()];
    }
    stack::measure_on(options, async |s| measure(s, &args).await).await
}

async fn measure(stack: &BenchStack, args: &CompatArgs) -> anyhow::Result<String> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()?;
    let direct = format!("{}/v1/chat/completions", stack.stack.mock_url());
    let sluice = format!("{}/v1/chat/completions", stack.api_url);
    let ask = Ask {
        stream: args.stream,
        max_tokens: args.max_tokens,
    };
    let mut out = format!(
        "## sluice-bench compat\n\nChat completions of {} tokens to a mock provider that \
         decodes {} ms a token, {} s per phase, {} worker(s){}; each request new (no cache hit).\n\n",
        args.max_tokens,
        args.token_ms,
        args.seconds,
        args.workers,
        if args.stream { ", streamed" } else { "" },
    );
    if args.stream {
        out.push_str(
            "| connections | direct first token P50 | P95 | sluice first token P50 | P95 | \
             added P50 | direct end P50 | sluice end P50 | req/s (direct / sluice) | errors |\n\
             |---|---|---|---|---|---|---|---|---|---|\n",
        );
    } else {
        out.push_str(
            "| connections | direct P50 | direct P95 | direct req/s | sluice P50 | sluice P95 | \
             sluice req/s | added P50 | errors (direct / sluice) |\n|---|---|---|---|---|---|---|---|---|\n",
        );
    }
    for &connections in &args.connections {
        let d = phase(
            &http,
            &direct,
            None,
            connections,
            args.seconds,
            ask,
            "direct",
        )
        .await;
        let s = phase(
            &http,
            &sluice,
            Some(&stack.key),
            connections,
            args.seconds,
            ask,
            "sluice",
        )
        .await;
        let row = if args.stream {
            format!(
                "| {connections} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:+.1} ms | {:.1} ms | {:.1} ms | {:.0} / {:.0} | {} / {} |\n",
                d.first_ms(0.5),
                d.first_ms(0.95),
                s.first_ms(0.5),
                s.first_ms(0.95),
                s.first_ms(0.5) - d.first_ms(0.5),
                d.ms(0.5),
                s.ms(0.5),
                d.per_second(),
                s.per_second(),
                d.errors,
                s.errors,
            )
        } else {
            format!(
                "| {connections} | {:.1} ms | {:.1} ms | {:.0} | {:.1} ms | {:.1} ms | {:.0} | {:+.1} ms | {} / {} |\n",
                d.ms(0.5),
                d.ms(0.95),
                d.per_second(),
                s.ms(0.5),
                s.ms(0.95),
                s.per_second(),
                s.ms(0.5) - d.ms(0.5),
                d.errors,
                s.errors,
            )
        };
        out.push_str(&row);
    }
    Ok(out)
}

/// `connections` clients sending one request after another to `url` for
/// `seconds`.
async fn phase(
    http: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    connections: usize,
    seconds: u64,
    ask: Ask,
    name: &str,
) -> Phase {
    let shown = progress::phase(
        format!("compat: {name}, {connections} connections"),
        Size::Time(Duration::from_secs(seconds)),
    );
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    // Unique across runs and phases: no request is answered from the cache.
    let tag = Arc::new(format!(
        "{name}-{connections}-{}",
        sluice_core::JobId::new()
    ));
    let clients = (0..connections).map(|c| {
        let (http, url, key, tag) = (
            http.clone(),
            url.to_owned(),
            key.map(str::to_owned),
            Arc::clone(&tag),
        );
        async move {
            let (mut latencies, mut firsts, mut errors, mut i) =
                (Vec::new(), Vec::new(), 0usize, 0usize);
            while Instant::now() < until {
                let mut body = json!({"model": "mock-small", "max_tokens": ask.max_tokens,
                    "messages": [{"role": "user", "content": format!("{tag} {c} {i}")}]});
                if ask.stream {
                    body["stream"] = json!(true);
                }
                let mut request = http.post(&url).json(&body);
                if let Some(key) = &key {
                    request = request.bearer_auth(key);
                }
                let sent = Instant::now();
                let answered = match request.send().await {
                    Ok(r) if r.status().is_success() => read_answer(r, sent).await,
                    _ => None,
                };
                match answered {
                    Some(first) => {
                        latencies.push(sent.elapsed());
                        firsts.extend(first);
                    }
                    None => errors += 1,
                }
                i += 1;
            }
            (latencies, firsts, errors)
        }
    });
    let results = shown.follow(|| 0, futures::future::join_all(clients)).await;
    let wall = started.elapsed();
    shown.done();
    let (mut latencies, mut first_tokens, mut errors) = (Vec::new(), Vec::new(), 0);
    for (l, f, e) in results {
        latencies.extend(l);
        first_tokens.extend(f);
        errors += e;
    }
    latencies.sort();
    first_tokens.sort();
    Phase {
        latencies,
        first_tokens,
        errors,
        wall,
    }
}

/// Reads an answer to its end: `None` if it broke off; else, for a stream
/// (Server-Sent Events), the time from `sent` to its first token.
async fn read_answer(mut response: reqwest::Response, sent: Instant) -> Option<Option<Duration>> {
    let streamed = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let (mut first, mut seen) = (None, Vec::new());
    while let Some(bytes) = response.chunk().await.ok()? {
        if streamed && first.is_none() {
            seen.extend_from_slice(&bytes);
            if has_token(&seen) {
                first = Some(sent.elapsed());
            }
        }
    }
    Some(first)
}

/// Whether an event stream so far carries a token: a non-empty
/// `"content"` (chat) or `"text"` (completions).
fn has_token(stream: &[u8]) -> bool {
    [&b"\"content\":\""[..], &b"\"text\":\""[..]]
        .iter()
        .any(|key| {
            stream
                .windows(key.len())
                .enumerate()
                .any(|(at, w)| w == *key && stream.get(at + key.len()).is_some_and(|&b| b != b'"'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_a_non_empty_content_or_text() {
        assert!(!has_token(
            br#"data: {"delta":{"content":"","role":"assistant"}}"#
        ));
        assert!(has_token(br#"data: {"delta":{"content":"mock"}}"#));
        assert!(has_token(br#"data: {"choices":[{"text":"a"}]}"#));
        assert!(!has_token(br#"data: {"choices":[{"text":""}]}"#));
    }
}
