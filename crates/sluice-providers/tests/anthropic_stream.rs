//! The Anthropic adapter against the mock's Messages route: a job that
//! streams is called with `"stream": true`, its events relayed as OpenAI
//! chunks while they arrive, and its answer is the one the same job gets
//! unstreamed, usage exact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{json, Value};
use sluice_core::config::Config;
use sluice_core::metrics::Metrics;
use sluice_core::stream::{Assembler, StreamEntry};
use sluice_core::{Endpoint, JobId};
use sluice_mock::{MockOptions, MockServer};
use sluice_providers::adapter::AdapterBase;
use sluice_providers::anthropic::AnthropicProvider;
use sluice_providers::{Answer, Batch, BatchJob, CallHooks, ChunkRelay, Provider};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Keeps every entry relayed, in order.
#[derive(Default)]
struct Recorder(Mutex<Vec<(JobId, Vec<StreamEntry>)>>);

#[async_trait]
impl ChunkRelay for Recorder {
    async fn relay(&self, job: JobId, entries: Vec<StreamEntry>) {
        self.0.lock().unwrap().push((job, entries));
    }
}

/// A mock on a real listener, and an Anthropic provider pointed at it
/// that relays to `recorder`.
struct Setup {
    mock: MockServer,
    provider: AnthropicProvider,
    _serving: JoinSet<()>,
    stop: CancellationToken,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn setup(recorder: &Arc<Recorder>) -> Setup {
    let mock = MockServer::new(MockOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let mut serving = JoinSet::new();
    {
        let (mock, stop) = (mock.clone(), stop.clone());
        serving.spawn(async move {
            mock.serve(listener, stop.cancelled_owned()).await.unwrap();
        });
    }
    let toml = format!(
        r#"
[[providers]]
name = "claude"
kind = "anthropic"
base_url = "{url}"
timeout_s = 10

[[models]]
name = "claude-mock"
providers = ["claude"]

[[prices]]
provider = "claude"
model = "claude-mock"
input = 3000000
cached_input = 300000
output = 15000000
"#
    );
    let config = Config::parse(&toml, "test").unwrap();
    let hooks = CallHooks {
        sent: None,
        relay: Some(Arc::clone(recorder) as Arc<dyn ChunkRelay>),
    };
    let metrics = Arc::new(Metrics::new());
    let base = AdapterBase::new(&config, &config.providers[0], metrics, None, hooks).unwrap();
    Setup {
        mock,
        provider: AnthropicProvider::new(base),
        _serving: serving,
        stop,
    }
}

fn batch(stream: bool) -> (JobId, Batch) {
    let id = JobId::new();
    let body = json!({"model": "claude-mock", "max_tokens": 12,
        "messages": [{"role": "system", "content": "Answer briefly."},
                     {"role": "user", "content": "stream me an answer"}]});
    let batch = Batch {
        endpoint: Endpoint::ChatCompletions,
        prefix_hash: String::new(),
        upstream_model: "claude-mock".into(),
        jobs: vec![BatchJob {
            id,
            body,
            traceparent: None,
            deadline: None,
            stream,
        }],
        flex: None,
    };
    (id, batch)
}

async fn answer(setup: &Setup, batch: &Batch) -> Answer {
    let mut answers = setup.provider.call(batch).await;
    assert_eq!(answers.len(), 1);
    answers.remove(0).unwrap()
}

#[tokio::test]
async fn a_streamed_job_relays_chunks_and_ends_with_the_unstreamed_answer() {
    let recorder = Arc::new(Recorder::default());
    let streaming = setup(&recorder).await;
    let (id, job) = batch(true);
    let streamed = answer(&streaming, &job).await;

    // The mock was asked to stream, and streamed.
    let received = streaming.mock.received();
    assert_eq!(received[0].path, "/v1/messages");
    assert_eq!(received[0].body["stream"], true);
    let relayed = recorder.0.lock().unwrap().clone();
    assert!(relayed.iter().all(|(job, _)| *job == id));
    let entries: Vec<StreamEntry> = relayed.into_iter().flat_map(|(_, e)| e).collect();
    assert_eq!(entries[0], StreamEntry::Begin);
    assert_eq!(
        entries.iter().filter(|e| **e == StreamEntry::Begin).count(),
        1
    );
    let chunks: Vec<Value> = entries[1..]
        .iter()
        .map(|e| match e {
            StreamEntry::Chunk(text) => serde_json::from_str(text).unwrap(),
            StreamEntry::Begin => unreachable!(),
        })
        .collect();
    // The role, a chunk a token, the finish reason, the usage.
    assert_eq!(chunks.len(), 1 + 12 + 2, "{chunks:?}");
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let mut assembler = Assembler::new(Endpoint::ChatCompletions);
    chunks.iter().for_each(|c| assembler.push(c));
    let assembled = assembler.finish();
    assert_eq!(assembled["choices"], streamed.body["choices"]);
    assert_eq!(assembled["usage"], streamed.body["usage"]);

    // The same job unstreamed, at a mock of its own (the prompt cache is
    // per mock): the same answer, usage and cost.
    let quiet = Arc::new(Recorder::default());
    let plain = setup(&quiet).await;
    let unstreamed = answer(&plain, &batch(false).1).await;
    assert!(quiet.0.lock().unwrap().is_empty());
    assert_eq!(plain.mock.received()[0].body.get("stream"), None);
    assert_eq!(streamed, unstreamed);
    assert!(streamed.cost_micros.unwrap() > 0);

    // Usage exact: what the mock billed.
    let stats = streaming.mock.stats().endpoint("/v1/messages");
    assert_eq!(streamed.usage.prompt_tokens, stats.prompt_tokens);
    assert_eq!(streamed.usage.completion_tokens, stats.completion_tokens);
    assert_eq!(streaming.mock.bill(), plain.mock.bill());
}
