//! What the cache may do for one submitted job, decided once at submit.

use std::time::Duration;

use serde_json::Value;
use sluice_core::cache::canonical::{is_deterministic, normalise, request_key, semantic_parts};
use sluice_core::cache::{CacheDirective, CacheMode, CacheOptions};
use sluice_core::config::Config;
use sluice_core::Endpoint;
use sluice_store::cache::{EntryKey, SemanticScope};
use sluice_store::tenants::Principal;

use crate::problem::ApiError;

/// The cache's part in one job.
pub struct CachePlan {
    pub entry: EntryKey,
    /// Answer from the cache, or join an identical job in flight.
    pub read: bool,
    /// Store the answer (the worker does, once it has one).
    pub write: bool,
    pub ttl: Duration,
    /// The prompt's text and scope, when the semantic cache takes part.
    pub semantic: Option<(String, SemanticScope)>,
    /// The share of semantic hits the job accepts being wrong.
    pub max_error: f64,
    /// The prompt's vector, once embedded (to file after a miss).
    pub embedded: Option<super::semantic::Embedded>,
}

impl CachePlan {
    /// The directive the job's message carries to the worker.
    pub fn directive(&self) -> CacheDirective {
        CacheDirective {
            key: self.entry.key.clone(),
            read: self.read,
            write: self.write,
            ttl_s: self.ttl.as_secs(),
            leads: false,
            semantic_scope: None,
        }
    }
}

/// The plan for a job of `caller`, or `None` when the cache stays out of
/// it: caching is off, the request says `off`, or the request is not
/// deterministic and does not ask to be cached.
pub fn plan(
    config: &Config,
    caller: &Principal,
    endpoint: Endpoint,
    model: &str,
    body: &Value,
    options: Option<&CacheOptions>,
) -> Result<Option<CachePlan>, ApiError> {
    let cfg = &config.cache;
    let options = options.cloned().unwrap_or_default();
    if let Some(ttl) = options.ttl_s {
        if ttl == 0 || ttl > cfg.max_ttl_s {
            return Err(ApiError::InvalidRequest(format!(
                "`cache.ttl_s` must be between 1 and {} (got {ttl})",
                cfg.max_ttl_s
            )));
        }
    }
    if let Some(max_error) = options.max_error {
        if !(max_error > 0.0 && max_error <= 1.0) {
            return Err(ApiError::InvalidRequest(format!(
                "`cache.max_error` must be in (0, 1] (got {max_error})"
            )));
        }
    }
    if options.semantic == Some(true) && cfg.semantic.model.is_none() {
        return Err(ApiError::InvalidRequest(
            "`cache.semantic` is not available: no `[cache.semantic] model` is configured".into(),
        ));
    }
    if !cfg.enabled {
        return Ok(None);
    }
    let normalised = normalise(endpoint, body);
    let asked = options.mode.is_some() || options.semantic == Some(true);
    let mode = match options.mode {
        Some(mode) => mode,
        None if asked || is_deterministic(endpoint, &normalised) => CacheMode::On,
        None => CacheMode::Off,
    };
    if mode == CacheMode::Off {
        return Ok(None);
    }
    let semantic_wanted = cfg.semantic.model.is_some()
        && options
            .semantic
            .unwrap_or_else(|| cfg.semantic.tenants.contains(&caller.tenant_name));
    let semantic = if semantic_wanted {
        semantic_parts(&caller.tenant_id, endpoint, &normalised).map(|(text, scope)| {
            let scope = SemanticScope {
                tenant: caller.tenant_id.clone(),
                model: model.to_owned(),
                scope,
            };
            (text, scope)
        })
    } else {
        None
    };
    Ok(Some(CachePlan {
        entry: EntryKey {
            tenant: caller.tenant_id.clone(),
            model: model.to_owned(),
            key: request_key(&caller.tenant_id, endpoint, &normalised),
        },
        read: mode.reads(),
        write: mode.writes(),
        ttl: Duration::from_secs(options.ttl_s.unwrap_or(cfg.default_ttl_s)),
        semantic,
        max_error: options.max_error.unwrap_or(cfg.semantic.max_error),
        embedded: None,
    }))
}
