//! `sluice-bench batch`: the Batch API at OpenAI's input limits. It writes
//! a file of `--lines` chat requests of which a `--repeats` share repeat an
//! earlier line (as retried or duplicated work does), uploads it, creates a
//! batch and follows it to `completed`, on a stack whose mock bills at a
//! mid-size model's prices. Reports:
//!
//! - the upload's time and the batch's acceptance (the create call), its
//!   validation (to `in_progress`), and the lines per second to
//!   `completed`;
//! - the API process's peak resident memory while it streams the file in,
//!   checks it, makes its lines into jobs and writes the output (the
//!   kernel's high-water mark, `VmHWM`);
//! - what the batch cost against sending every line to the provider
//!   directly: the provider's calls are each line once, repeats answered
//!   from the cache or joined to their first, so direct is the bill per
//!   call the mock made times the lines.

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};

use crate::cli::Connections;
use crate::progress::{self, Size};
use crate::stack::{self, BenchStack};

#[derive(Args, Debug)]
pub struct BatchArgs {
    /// Lines in the input file (OpenAI's limit: 50,000).
    #[arg(long, default_value_t = 50_000)]
    pub lines: usize,
    /// Share of the lines that repeat an earlier line.
    #[arg(long, default_value_t = 0.3)]
    pub repeats: f64,
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    #[command(flatten)]
    pub conn: Connections,
}

/// A mid-size model's prices, µ$ per million tokens (input, cached, output).
const PRICE: (u64, u64, u64) = (1_500_000, 750_000, 8_000_000);

pub async fn run(args: BatchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..1.0).contains(&args.repeats) && args.lines > 0,
        "--repeats must be at least 0 and below 1, --lines above 0"
    );
    let (input, cached, output) = PRICE;
    let mut options = stack::options(&args.conn, args.workers);
    options.mock_args = vec![
        "--price".into(),
        format!("mock-small={input}:{cached}:{output}"),
    ];
    options.extra_toml = format!(
        "[[prices]]\nprovider = \"mock\"\nmodel = \"mock-small\"\ninput = {input}\n\
         cached_input = {cached}\noutput = {output}\n\n[batches]\npoll_ms = 200\n"
    );
    stack::measure_on(options, async |stack| measure(stack, &args).await).await
}

/// The file: line `i` repeats an earlier line when `i`'s hash says so
/// (deterministic, spread over the file).
fn input_file(lines: usize, repeats: f64) -> (Vec<u8>, usize) {
    let mut content = Vec::with_capacity(lines * 220);
    let mut distinct = 0usize;
    for i in 0..lines {
        let spread = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
        let repeat = i > 0 && (spread as f64 / (1u64 << 53) as f64) < repeats;
        let question = if repeat {
            // One of the questions asked before, picked by the same hash.
            spread as usize % distinct.max(1)
        } else {
            distinct += 1;
            distinct - 1
        };
        let line = json!({"custom_id": format!("line-{i}"), "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "mock-small", "temperature": 0, "max_tokens": 16,
                     "messages": [{"role": "system", "content": "You answer support questions briefly."},
                                  {"role": "user", "content": format!("Support question number {question}: where is my order?")}]}});
        serde_json::to_writer(&mut content, &line).unwrap_or_default();
        content.push(b'\n');
    }
    (content, distinct)
}

/// The API's (resident, peak) memory, KiB.
fn api_memory(stack: &BenchStack) -> anyhow::Result<(u64, u64)> {
    let pid = stack
        .stack
        .api
        .as_ref()
        .and_then(|api| api.id())
        .ok_or_else(|| anyhow::anyhow!("the stack has no API process"))?;
    crate::cpu::memory_kib(pid).ok_or_else(|| anyhow::anyhow!("cannot read the API's memory"))
}

async fn batch(http: &reqwest::Client, stack: &BenchStack, id: &str) -> anyhow::Result<Value> {
    let r = http
        .get(format!("{}/v1/batches/{id}", stack.api_url))
        .bearer_auth(&stack.key)
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "GET batch: HTTP {}", r.status());
    Ok(r.json().await?)
}

async fn measure(stack: &BenchStack, args: &BatchArgs) -> anyhow::Result<String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let (content, distinct) = input_file(args.lines, args.repeats);
    let (rss_before, _) = api_memory(stack)?;

    let uploading = progress::phase("uploading the file", Size::Unknown);
    let started = Instant::now();
    let file = sluice_testkit::upload_batch_input(&http, &stack.api_url, &stack.key, &content)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let uploaded = started.elapsed();
    uploading.done();

    let created_at = Instant::now();
    let r = http
        .post(format!("{}/v1/batches", stack.api_url))
        .bearer_auth(&stack.key)
        .json(&json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "create: HTTP {}", r.status());
    let created: Value = r.json().await?;
    let accepted = created_at.elapsed();
    let id = created["id"].as_str().unwrap_or_default().to_owned();

    let running = progress::phase("running the batch", Size::Items(args.lines as u64));
    let mut validated = None;
    let done = loop {
        let b = batch(&http, stack, &id).await?;
        let status = b["status"].as_str().unwrap_or_default();
        if validated.is_none() && status != "validating" {
            validated = Some(created_at.elapsed());
        }
        let counts = &b["request_counts"];
        running.set(
            counts["completed"].as_u64().unwrap_or(0) + counts["failed"].as_u64().unwrap_or(0),
        );
        if ["completed", "failed", "expired", "cancelled"].contains(&status) {
            break b;
        }
        anyhow::ensure!(
            created_at.elapsed() < Duration::from_secs(1800),
            "the batch took over 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let finished = created_at.elapsed();
    running.done();
    anyhow::ensure!(
        done["status"] == "completed",
        "the batch ended {}: {done}",
        done["status"]
    );
    let (_, peak) = api_memory(stack)?;

    let stats = stack.stack.mock_stats().await;
    let bill = stack.stack.mock_bill().await;
    let calls = stats["by_endpoint"]["/v1/chat/completions"]["requests"]
        .as_u64()
        .unwrap_or(0);
    let billed = bill["total_cost_micros"].as_u64().unwrap_or(0);
    let cost = done["cost_micros"].as_u64().unwrap_or(0);
    let direct = billed as f64 / calls.max(1) as f64 * args.lines as f64;
    let validated = validated.unwrap_or(finished);
    let run = finished.saturating_sub(validated).as_secs_f64();
    Ok(format!(
        "batch: {lines} lines ({distinct} distinct, {repeats:.0}% repeats), {mb:.1} MB, {workers} workers\n\
         upload {up:.2} s, create {acc:.0} ms (upload and acceptance {total:.2} s; target < 10 s)\n\
         validated (in_progress) after {val:.2} s; completed after {fin:.1} s: {rate:.0} lines/s once validated\n\
         API memory: {before:.1} MiB before the upload, peak {peak:.1} MiB (VmHWM; target < 200 MiB)\n\
         provider calls {calls} for {lines} lines; cost {cost} µ$ (the mock billed {billed} µ$), \
         direct ≈ {direct:.0} µ$: {saved:.1}% less",
        lines = args.lines,
        repeats = args.repeats * 100.0,
        mb = content.len() as f64 / 1e6,
        workers = args.workers,
        up = uploaded.as_secs_f64(),
        acc = accepted.as_secs_f64() * 1000.0,
        total = (uploaded + accepted).as_secs_f64(),
        val = validated.as_secs_f64(),
        fin = finished.as_secs_f64(),
        rate = args.lines as f64 / run.max(f64::MIN_POSITIVE),
        before = rss_before as f64 / 1024.0,
        peak = peak as f64 / 1024.0,
        saved = 100.0 * (1.0 - cost as f64 / direct.max(1.0)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_has_its_lines_and_about_its_share_of_repeats() {
        let (content, distinct) = input_file(10_000, 0.3);
        let lines: Vec<&[u8]> = content
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 10_000);
        let share = 1.0 - distinct as f64 / 10_000.0;
        assert!((0.27..0.33).contains(&share), "{share}");
    }
}
