//! What a provider says it billed: OpenAI's Costs API
//! (`GET {base_url}/organization/costs`, daily buckets grouped by line
//! item), which the mock provider also serves from its own bill. `sluice
//! admin reconcile` compares it with the ledger.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDate;
use serde::Deserialize;

#[derive(Deserialize)]
struct Page {
    data: Vec<Bucket>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    next_page: Option<String>,
}

#[derive(Deserialize)]
struct Bucket {
    results: Vec<CostResult>,
}

#[derive(Deserialize)]
struct CostResult {
    amount: Amount,
    #[serde(default)]
    line_item: Option<String>,
}

#[derive(Deserialize)]
struct Amount {
    value: f64,
    currency: String,
}

/// Why the provider's figures could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CostsError {
    #[error("cannot reach {url}: {source}")]
    Request { url: String, source: reqwest::Error },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} answered something other than a costs page: {detail}")]
    Shape { url: String, detail: String },
}

/// What the provider at `base_url` (its `/v1` URL) billed on `day` (UTC),
/// by line item, in µ$; `key` is sent as a bearer token (OpenAI wants an
/// admin key here). Pages are followed to the end.
pub async fn billed_on(
    base_url: &str,
    key: Option<&str>,
    day: NaiveDate,
) -> Result<BTreeMap<String, u64>, CostsError> {
    let start = day
        .and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp());
    let end = start + 86_400;
    let url = format!("{}/organization/costs", base_url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|source| CostsError::Request {
            url: url.clone(),
            source,
        })?;
    let mut billed = BTreeMap::new();
    let mut page: Option<String> = None;
    loop {
        let mut query = vec![
            ("start_time", start.to_string()),
            ("end_time", end.to_string()),
            ("bucket_width", "1d".to_owned()),
            ("group_by", "line_item".to_owned()),
        ];
        query.extend(page.take().map(|p| ("page", p)));
        let mut request = client.get(&url).query(&query);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|source| CostsError::Request {
            url: url.clone(),
            source,
        })?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|source| CostsError::Request {
                url: url.clone(),
                source,
            })?;
        if !status.is_success() {
            return Err(CostsError::Status {
                url,
                status: status.as_u16(),
                body: body.chars().take(500).collect(),
            });
        }
        let parsed: Page = serde_json::from_str(&body).map_err(|e| CostsError::Shape {
            url: url.clone(),
            detail: e.to_string(),
        })?;
        for result in parsed.data.into_iter().flat_map(|b| b.results) {
            if !result.amount.currency.eq_ignore_ascii_case("usd") {
                return Err(CostsError::Shape {
                    url,
                    detail: format!("an amount in {}, not usd", result.amount.currency),
                });
            }
            let micros = (result.amount.value * 1e6).round().max(0.0) as u64;
            let item = result.line_item.unwrap_or_else(|| "(no line item)".into());
            *billed.entry(item).or_default() += micros;
        }
        match parsed.next_page.filter(|_| parsed.has_more) {
            Some(next) => page = Some(next),
            None => return Ok(billed),
        }
    }
}
