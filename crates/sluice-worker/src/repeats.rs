//! The ledger rows of a job's repeated provider calls: the attempts the
//! provider billed beyond the one whose answer the job kept (see
//! `sluice_core::repeat` for what is recorded and how it is estimated).
//!
//! When a job ends, every attempt *sent* before the one that ended it was
//! orphaned: its worker died during the call (an attempt is marked sent
//! just before its call leaves, see [`SentLog`]). A redelivery that starts
//! a job again records nothing at first; the attempt that ends the job
//! writes the rows of the earlier ones, with the batch's other rows.
//!
//! A call the worker's own router gave up on after its request reached the
//! provider (a client-side timeout, a connection or stream broken midway:
//! `sluice_providers::router::Abandoned`) and made again is billed too, and
//! charged the same way, by [`Repeats::abandoned`]: a row per call, keyed by
//! the attempt and the call's number within it. The router hands these back
//! with the jobs' ends, so recording them costs no store call of its own;
//! they go with the attempt's other rows. An attempt whose worker dies takes
//! its abandoned calls' count with it: its orphan row stands for one call.
//!
//! Waiting for an orphaned call is pointless: its connection closed with
//! the worker, so nobody can receive its answer, and the chat and
//! completions APIs offer no way to cancel it. The job is called again at
//! once, and the orphan is charged.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sluice_core::batching::{completion_allowance, prompt_text};
use sluice_core::config::Config;
use sluice_core::job::Outcome;
use sluice_core::ledger::{LedgerRow, Repeat};
use sluice_core::metrics::Metrics;
use sluice_core::pricing::Prices;
use sluice_core::repeat::{orphan_usage, orphaned, Orphan};
use sluice_core::{JobMessage, JobRecord, JobStatus, Tier, Usage};
use sluice_providers::router::Abandoned;

/// Where a model's calls go first, and what they cost there.
#[derive(Clone, Debug, Default)]
pub struct Repeats {
    /// Model → (its route's first provider, the model name billed).
    routes: HashMap<String, (String, String)>,
    /// (provider, billed model) → its prices by tier.
    prices: HashMap<(String, String), Prices>,
}

/// The attempt whose provider answer ended a job.
#[derive(Clone, Copy, Debug)]
pub struct Answered<'a> {
    pub attempt: u32,
    /// Its usage, when it succeeded (a failed call is not billed).
    pub usage: Option<&'a Usage>,
    /// The provider that answered.
    pub provider: Option<&'a str>,
}

impl Repeats {
    pub fn new(config: &Config) -> Self {
        let routes = config
            .models
            .iter()
            .filter_map(|m| {
                let first = m.providers.first()?.clone();
                let billed = m.upstream_model.clone().unwrap_or_else(|| m.name.clone());
                Some((m.name.clone(), (first, billed)))
            })
            .collect();
        let prices = config
            .prices
            .iter()
            .map(|p| ((p.provider.clone(), p.model.clone()), p.prices()))
            .collect();
        Self { routes, prices }
    }

    /// The rows of the orphaned attempts of `message`'s job, which ended
    /// with `status`: every attempt `sent` but the one that `answered` and
    /// those in `known` (attempts whose own worker recorded them, such as
    /// this worker's own).
    pub fn orphans(
        &self,
        message: &JobMessage,
        status: JobStatus,
        sent: &[u32],
        answered: Option<Answered<'_>>,
        known: &[u32],
        finished_at: DateTime<Utc>,
    ) -> Vec<LedgerRow> {
        let attempts = orphaned(sent, answered.map(|a| a.attempt), known);
        if attempts.is_empty() {
            return Vec::new();
        }
        let first = self.routes.get(&message.model).map(|(p, _)| p.as_str());
        let provider = answered.and_then(|a| a.provider).or(first);
        let orphan = self.charge(
            message,
            provider,
            Tier::Realtime,
            answered.and_then(|a| a.usage),
        );
        attempts
            .into_iter()
            .map(|attempt| {
                LedgerRow::for_repeat(
                    message,
                    status,
                    Repeat::Orphaned {
                        attempt,
                        provider: provider.map(str::to_owned),
                        orphan,
                    },
                    finished_at,
                )
            })
            .collect()
    }

    /// What one unanswered call of `message`'s job to `provider` on `tier`
    /// is charged ([`orphan_usage`], the one rule): estimated from `answer`,
    /// the usage of the call that answered the job, if one did.
    fn charge(
        &self,
        message: &JobMessage,
        provider: Option<&str>,
        tier: Tier,
        answer: Option<&Usage>,
    ) -> Orphan {
        let billed = match self.routes.get(&message.model) {
            Some((_, billed)) => billed.as_str(),
            None => message.model.as_str(),
        };
        let price = provider
            .and_then(|p| self.prices.get(&(p.to_owned(), billed.to_owned())))
            .map(|prices| prices.at(tier));
        let prompt_tokens =
            sluice_providers::tokens::count(billed, &prompt_text(message.endpoint, &message.body));
        let max_tokens = completion_allowance(message.endpoint, &message.body);
        orphan_usage(answer, prompt_tokens, max_tokens, price)
    }

    /// The rows of the calls of `attempt` its router gave up on after they
    /// reached the provider (`abandoned`, in the order made), for a job
    /// that ended with `outcome` (by this attempt or, if another delivery
    /// ended it first, by that one: then `outcome` is this attempt's own).
    pub fn abandoned(
        &self,
        metrics: &Metrics,
        message: &JobMessage,
        attempt: u32,
        abandoned: &[Abandoned],
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Vec<LedgerRow> {
        let answer = match outcome {
            Outcome::Succeeded { usage, .. } => Some(usage),
            _ => None,
        };
        (1..)
            .zip(abandoned)
            .map(|(call_index, call)| {
                let orphan = self.charge(message, Some(&call.provider), call.tier, answer);
                let row = LedgerRow::for_repeat(
                    message,
                    outcome.status(),
                    Repeat::Abandoned {
                        attempt,
                        call_index,
                        provider: call.provider.clone(),
                        orphan,
                        tier: call.tier,
                    },
                    now,
                );
                count(metrics, &row, "abandoned");
                row
            })
            .collect()
    }

    /// The rows of the attempts `sent_before` `attempt`, which just ended
    /// the job with `outcome`: each was orphaned (its worker died during the
    /// call).
    pub fn orphans_before(
        &self,
        metrics: &Metrics,
        message: &JobMessage,
        attempt: u32,
        sent_before: &[u32],
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Vec<LedgerRow> {
        let answered = match outcome {
            Outcome::Succeeded {
                usage, provider, ..
            } => Answered {
                attempt,
                usage: Some(usage),
                provider: Some(provider),
            },
            _ => Answered {
                attempt,
                usage: None,
                provider: None,
            },
        };
        let rows = self.orphans(
            message,
            outcome.status(),
            sent_before,
            Some(answered),
            &[],
            now,
        );
        for row in &rows {
            count(metrics, row, "orphaned");
        }
        rows
    }

    /// The row of this delivery's call when another delivery had ended the
    /// job first: billed all the same, at what the provider reported.
    pub fn superseded(
        &self,
        metrics: &Metrics,
        message: &JobMessage,
        attempt: u32,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Vec<LedgerRow> {
        let Outcome::Succeeded {
            usage,
            provider,
            cost_micros,
            tier,
            ..
        } = outcome
        else {
            return Vec::new();
        };
        let row = LedgerRow::for_repeat(
            message,
            outcome.status(),
            Repeat::Superseded {
                attempt,
                provider: provider.clone(),
                usage: *usage,
                cost_micros: cost_micros.unwrap_or(0),
                tier: *tier,
            },
            now,
        );
        count(metrics, &row, "superseded");
        vec![row]
    }
}

/// Counts a repeated call in `sluice_provider_calls_repeated_total`.
pub fn count(metrics: &Metrics, row: &LedgerRow, reason: &str) {
    metrics
        .provider_calls_repeated
        .with_label_values(&[row.provider.as_deref().unwrap_or("unknown"), reason])
        .inc();
}

/// The attempt whose provider answer ended the job `record`, if one did:
/// the last one sent, for a job that succeeded from a call of its own or
/// failed at its provider; none for a job canceled, expired, dead-lettered
/// or answered from the cache.
pub fn answered_by(record: &JobRecord) -> Option<Answered<'_>> {
    let by_provider = match record.status {
        JobStatus::Succeeded => !record.cached,
        JobStatus::Failed => record
            .error
            .as_ref()
            .is_some_and(|e| e.kind.starts_with("provider_")),
        _ => false,
    };
    by_provider.then_some(Answered {
        attempt: record.sent.last().copied().unwrap_or(record.attempts),
        usage: record
            .usage
            .as_ref()
            .filter(|_| record.status == JobStatus::Succeeded),
        provider: record.provider.as_deref(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_core::pricing::Price;
    use sluice_core::repeat::Estimate;
    use sluice_core::{Endpoint, JobId};

    fn config() -> Config {
        let mut c = Config::dev("http://127.0.0.1:1".parse().unwrap());
        c.prices.push(sluice_core::config::PriceEntry {
            provider: "dev-mock".into(),
            model: "mock-small".into(),
            price: Price {
                input: 1_000_000,
                cached_input: 500_000,
                output: 2_000_000,
                cache_write: None,
            },
            flex: None,
            batch: None,
        });
        c
    }

    fn chat() -> JobMessage {
        JobMessage::new(
            JobId::new(),
            "t",
            Endpoint::ChatCompletions,
            "mock-small",
            json!({"model": "mock-small", "max_tokens": 8,
                   "messages": [{"role": "user", "content": "hello world"}]}),
            Utc::now(),
        )
    }

    #[test]
    fn a_job_answered_on_its_third_attempt_pays_for_two_orphans_like_the_answer() {
        let repeats = Repeats::new(&config());
        let usage = Usage::new(12, 8, 4);
        let answered = Answered {
            attempt: 3,
            usage: Some(&usage),
            provider: Some("dev-mock"),
        };
        let rows = repeats.orphans(
            &chat(),
            JobStatus::Succeeded,
            &[1, 2, 3],
            Some(answered),
            &[],
            Utc::now(),
        );
        assert_eq!(rows.iter().map(|r| r.attempt).collect::<Vec<_>>(), [1, 2]);
        for row in &rows {
            // 12 prompt tokens at $1/M (uncached) exact, 8 completion at $2/M estimated.
            assert_eq!((row.cost_micros, row.estimated_micros), (12, 16));
            assert_eq!(row.usage, Usage::new(12, 8, 0));
            assert_eq!(row.estimated_by, Some(Estimate::AnsweredAttempt));
            assert_eq!(row.provider.as_deref(), Some("dev-mock"));
        }
    }

    #[test]
    fn an_unanswered_job_pays_its_orphans_prompt_and_max_tokens_on_its_routes_first_provider() {
        let repeats = Repeats::new(&config());
        let rows = repeats.orphans(
            &chat(),
            JobStatus::Canceled,
            &[1, 2],
            None,
            &[2],
            Utc::now(),
        );
        assert_eq!(rows.len(), 1, "attempt 2 was recorded by its own worker");
        let row = &rows[0];
        assert_eq!(row.attempt, 1);
        assert_eq!(row.usage, Usage::new(2, 8, 0));
        assert_eq!((row.cost_micros, row.estimated_micros), (2, 16));
        assert_eq!(row.estimated_by, Some(Estimate::MaxTokens));
        assert_eq!(row.provider.as_deref(), Some("dev-mock"));
        assert!(repeats
            .orphans(&chat(), JobStatus::Succeeded, &[1], None, &[1], Utc::now())
            .is_empty());
    }

    #[test]
    fn calls_given_up_on_are_rows_of_their_attempt_priced_at_their_tier() {
        let repeats = Repeats::new(&config());
        let metrics = Metrics::new();
        let calls = [
            Abandoned {
                provider: "dev-mock".into(),
                tier: Tier::Flex,
            },
            Abandoned {
                provider: "dev-mock".into(),
                tier: Tier::Realtime,
            },
        ];
        let answered = Outcome::Succeeded {
            result: json!({}),
            usage: Usage::new(12, 8, 4),
            provider: "dev-mock".into(),
            cost_micros: Some(1),
            tier: Tier::Realtime,
        };
        let rows = repeats.abandoned(&metrics, &chat(), 2, &calls, &answered, Utc::now());
        let keys: Vec<(u32, u32)> = rows.iter().map(|r| (r.attempt, r.call_index)).collect();
        assert_eq!(keys, [(2, 1), (2, 2)]);
        // Estimated as the answer, uncached; flex at half the price.
        assert_eq!((rows[1].cost_micros, rows[1].estimated_micros), (12, 16));
        assert_eq!((rows[0].cost_micros, rows[0].estimated_micros), (6, 8));
        assert_eq!(rows[0].tier, Some(Tier::Flex));
        assert!(rows
            .iter()
            .all(|r| r.estimated_by == Some(Estimate::AnsweredAttempt)));
        // No answer: the prompt and max_tokens, as for an orphan.
        let failed = Outcome::Failed(sluice_core::JobError::new(
            "provider_unavailable",
            "timeout",
        ));
        let rows = repeats.abandoned(&metrics, &chat(), 1, &calls[1..], &failed, Utc::now());
        assert_eq!(rows[0].usage, Usage::new(2, 8, 0));
        assert_eq!(rows[0].estimated_by, Some(Estimate::MaxTokens));
        assert_eq!(rows[0].status, JobStatus::Failed);
        let counted = metrics
            .provider_calls_repeated
            .with_label_values(&["dev-mock", "abandoned"])
            .get();
        assert_eq!(counted, 3);
    }
}
