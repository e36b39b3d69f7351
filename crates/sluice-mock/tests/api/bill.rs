//! The bill is exactly the sum of each request's cost, recomputed here from
//! the reported usage and the price table.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sluice_mock::{
    count_tokens, MockBill, MockOptions, ModelBill, ModelPrice, PrefixCacheOptions, Price,
    PriceTable, Tier,
};

use crate::helpers::{anthropic_cost, openai_cost, Reply, TestMock};

const BIG: Price = Price {
    input: 3_000_000,
    cached_input: 300_000,
    output: 15_000_000,
};

/// Odd prices, so that most requests round.
const ODD_DEFAULT: Price = Price {
    input: 1_234_567,
    cached_input: 123_457,
    output: 4_999_999,
};

fn options() -> MockOptions {
    MockOptions {
        prices: PriceTable {
            default: ModelPrice::standard(ODD_DEFAULT),
            models: BTreeMap::from([("big".to_owned(), ModelPrice::standard(BIG))]),
        },
        prefix_cache: PrefixCacheOptions {
            enabled: true,
            block_tokens: std::num::NonZeroU64::new(8).unwrap(),
            ..PrefixCacheOptions::default()
        },
        ..MockOptions::default()
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

/// Expected charges, kept by the test.
#[derive(Default)]
struct Ledger {
    by_model: BTreeMap<String, ModelBill>,
}

impl Ledger {
    fn add(
        &mut self,
        model: &str,
        prompt: u64,
        cached: u64,
        written: u64,
        completion: u64,
        cost: u64,
    ) {
        let entry = self.by_model.entry(model.to_owned()).or_default();
        // Every request here is on the standard tier.
        let tier = entry.by_tier.entry(Tier::Standard).or_default();
        for charges in [&mut entry.charges, tier] {
            charges.requests += 1;
            charges.prompt_tokens += prompt;
            charges.cached_tokens += cached;
            charges.cache_write_tokens += written;
            charges.completion_tokens += completion;
            charges.cost_micros += cost;
        }
    }

    /// An OpenAI-shaped reply: checks its cost header and records it.
    fn openai(&mut self, model: &str, price: &Price, reply: &Reply) {
        assert_eq!(reply.status, 200, "{}", reply.body);
        let usage = &reply.body["usage"];
        let prompt = u(&usage["prompt_tokens"]);
        let cached = usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0);
        let completion = usage["completion_tokens"].as_u64().unwrap_or(0);
        let cost = openai_cost(price, prompt, cached, completion);
        assert_eq!(reply.cost(), cost, "{}", reply.body);
        self.add(model, prompt, cached, 0, completion, cost);
    }
}

#[tokio::test]
async fn bill_is_the_sum_of_per_request_costs() {
    let mock = TestMock::with(options());
    let mut ledger = Ledger::default();
    let system = "You are a careful assistant. Answer in one line. ".repeat(5);

    for question in [
        "first question",
        "second question",
        "third, longer question",
    ] {
        let body = json!({"model": "big", "max_tokens": 21, "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": question}
        ]});
        let reply = mock.post_full("/v1/chat/completions", &body).await;
        ledger.openai("big", &BIG, &reply);
    }

    let shared = "a shared preamble of about one block ".repeat(3);
    let prompts = [
        format!("{shared} then one"),
        format!("{shared} then two"),
        "short".to_owned(),
    ];
    let body = json!({"model": "small", "prompt": prompts, "max_tokens": 7, "n": 2});
    let reply = mock.post_full("/v1/completions", &body).await;
    assert!(u(&reply.body["usage"]["prompt_tokens_details"]["cached_tokens"]) > 0);
    ledger.openai("small", &ODD_DEFAULT, &reply);

    let body = json!({"model": "emb", "input": ["some text", "more text here"]});
    let reply = mock.post_full("/v1/embeddings", &body).await;
    assert_eq!(reply.status, 200);
    let prompt = count_tokens("some text") + count_tokens("more text here");
    let cost = openai_cost(&ODD_DEFAULT, prompt, 0, 0);
    assert_eq!(reply.cost(), cost);
    ledger.add("emb", prompt, 0, 0, 0, cost);

    for question in ["why?", "why not?"] {
        let body = json!({"model": "big", "max_tokens": 9,
            "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": question}]});
        let reply = mock.messages(&body).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let usage = &reply.body["usage"];
        let (input, read, written, output) = (
            u(&usage["input_tokens"]),
            u(&usage["cache_read_input_tokens"]),
            u(&usage["cache_creation_input_tokens"]),
            u(&usage["output_tokens"]),
        );
        let cost = anthropic_cost(&BIG, input, read, written, output);
        assert_eq!(reply.cost(), cost);
        ledger.add("big", input + read + written, read, written, output, cost);
    }

    let bill = mock.server.bill();
    assert_eq!(bill.by_model, ledger.by_model);
    let total: u64 = ledger
        .by_model
        .values()
        .map(|m| m.charges.cost_micros)
        .sum();
    assert_eq!(bill.total_cost_micros, total);
    assert_eq!(bill.tier(Tier::Standard).cost_micros, total);
    assert_eq!(
        bill.tier(Tier::Flex).requests + bill.tier(Tier::Batch).requests,
        0
    );
    assert!(bill.model("big").charges.cached_tokens > 0);
    assert!(bill.model("big").charges.cache_write_tokens > 0);
    assert_eq!(
        (bill.refusals.rate_limited, bill.refusals.injected_errors),
        (0, 0)
    );

    let (status, over_http) = mock.get("/mock/bill").await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_value::<MockBill>(over_http).unwrap(), bill);

    let (status, _) = mock.post("/mock/reset", &json!({})).await;
    assert!(status.is_success());
    assert_eq!(mock.server.bill(), MockBill::default());
}

#[tokio::test]
async fn default_prices_apply_and_rejected_requests_are_free() {
    let mock = TestMock::new();
    let body = json!({"model": "m", "prompt": "x".repeat(400), "max_tokens": 50});
    let reply = mock.post_full("/v1/completions", &body).await;
    // 100 × $1/M + 50 × $4/M = 100 + 200 µ$.
    assert_eq!(reply.cost(), 300);
    assert_eq!(
        reply.body["usage"]["prompt_tokens_details"]["cached_tokens"],
        0
    );
    mock.post("/v1/completions", &json!({"model": "m"})).await;
    let bill = mock.server.bill();
    assert_eq!(bill.total_cost_micros, 300);
    assert_eq!(bill.model("m").charges.requests, 1);
}

/// `GET /v1/organization/costs` gives the bill per UTC day and model in
/// OpenAI's Costs API shape; amounts in dollars come back to the
/// micro-dollar. Only daily buckets exist.
#[tokio::test]
async fn the_costs_api_gives_todays_bill_per_model() {
    let mock = TestMock::with(options());
    for (model, prompt) in [("big", "one two three"), ("small", "four"), ("big", "five")] {
        let (status, _) = mock
            .post(
                "/v1/completions",
                &json!({"model": model, "prompt": prompt, "max_tokens": 3}),
            )
            .await;
        assert_eq!(status, 200);
    }
    let bill: MockBill = serde_json::from_value(mock.get("/mock/bill").await.1).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let today = now - now % 86_400;
    let (status, page) = mock
        .get(&format!(
            "/v1/organization/costs?start_time={today}&bucket_width=1d&group_by=line_item"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["object"], "page");
    let buckets = page["data"].as_array().unwrap();
    assert_eq!(buckets.len(), 1, "{page}");
    assert_eq!(buckets[0]["start_time"], today);
    let mut billed = BTreeMap::new();
    for r in buckets[0]["results"].as_array().unwrap() {
        assert_eq!(r["amount"]["currency"], "usd");
        let micros = (r["amount"]["value"].as_f64().unwrap() * 1e6).round() as u64;
        billed.insert(r["line_item"].as_str().unwrap().to_owned(), micros);
    }
    assert_eq!(billed["big"], bill.model("big").charges.cost_micros);
    assert_eq!(billed["small"], bill.model("small").charges.cost_micros);

    // Yesterday billed nothing; hourly buckets and a missing start are 400s.
    let (_, page) = mock
        .get(&format!(
            "/v1/organization/costs?start_time={}&end_time={today}",
            today - 86_400
        ))
        .await;
    assert_eq!(page["data"][0]["results"], json!([]));
    let (status, _) = mock
        .get(&format!(
            "/v1/organization/costs?start_time={today}&bucket_width=1h"
        ))
        .await;
    assert_eq!(status, 400);
    let (status, _) = mock.get("/v1/organization/costs").await;
    assert_eq!(status, 400);
}
