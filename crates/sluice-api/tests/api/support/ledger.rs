//! Ledger rows a test records directly, as the worker would have: spend
//! for budgets, history for usage reports.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sluice_core::ledger::LedgerRow;
use sluice_core::{Endpoint, JobId, JobStatus, Tier, Usage};
use sluice_store::usage::UsageLedger;

use super::app::TestApp;
use super::eventually::eventually;

/// A finished job's row for the app's tenant and key.
pub struct Row {
    pub model: &'static str,
    pub feature: Option<&'static str>,
    pub cost_micros: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub finished_at: DateTime<Utc>,
    pub tier: Tier,
}

impl Default for Row {
    fn default() -> Self {
        Self {
            model: "mock-small",
            feature: None,
            cost_micros: 0,
            prompt_tokens: 10,
            completion_tokens: 5,
            finished_at: Utc::now(),
            tier: Tier::Realtime,
        }
    }
}

impl TestApp {
    /// `model`'s line of the usage report by model, once `settled` holds
    /// for it (the API writes some rows behind its answers).
    pub async fn usage_of(&self, model: &str, settled: impl Fn(&Value) -> bool) -> Value {
        eventually(&format!("{model}'s ledger rows"), || async {
            let reply = self.get("/v1/usage?group_by=model").await;
            reply.body["data"]
                .as_array()?
                .iter()
                .find(|l| l["group"]["model"] == model && settled(l))
                .cloned()
        })
        .await
    }

    /// Records `row` as a job of this app's tenant, made with its key.
    pub async fn record(&self, row: Row) {
        let metadata = row
            .feature
            .map(|f| [("feature".to_owned(), json!(f))].into_iter().collect())
            .unwrap_or_default();
        let row = LedgerRow {
            job_id: JobId::new(),
            tenant_id: self.tenant_id.clone(),
            key_id: Some(self.key_id.clone()),
            model: row.model.to_owned(),
            provider: Some("mock".to_owned()),
            endpoint: Endpoint::ChatCompletions,
            metadata,
            status: JobStatus::Succeeded,
            usage: Usage::new(row.prompt_tokens, row.completion_tokens, 0),
            cost_micros: row.cost_micros,
            saved_micros: 0,
            cache_hit: false,
            queue_wait_ms: None,
            provider_latency_ms: None,
            finished_at: row.finished_at,
            attempt: 0,
            call_index: 0,
            estimated_micros: 0,
            estimated_by: None,
            tier: Some(row.tier),
        };
        self.ledger.record(&[row]).await.unwrap();
    }

    /// Records `micros` spent now by this app's key.
    pub async fn spend(&self, micros: u64) {
        self.record(Row {
            cost_micros: micros,
            ..Row::default()
        })
        .await;
    }
}
