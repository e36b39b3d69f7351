//! Through a real listener, as `sluice dev` and the benchmarks use it.

use serde_json::{json, Value};
use sluice_mock::{answer_text, MockOptions, MockServer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[tokio::test]
async fn serves_over_tcp_and_shuts_down_gracefully() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = MockServer::new(MockOptions {
        api_key: "sk-test".parse().ok(),
        ..MockOptions::default()
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = server.clone().serve(listener, async {
        let _ = stopped.await;
    });

    let client = async {
        let http = reqwest::Client::new();
        let response: Value = http
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth("sk-test")
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "over tcp"}]}))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        let content = response["choices"][0]["message"]["content"]
            .as_str()
            .unwrap();
        assert!(content.starts_with(&answer_text("over tcp")));

        let unauthorized = http
            .post(format!("{base}/v1/completions"))
            .json(&json!({"model": "m", "prompt": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(unauthorized.status(), 401);
        stop.send(()).unwrap();
    };

    let (served, ()) = tokio::join!(serving, client);
    served.unwrap();
    assert_eq!(server.stats().total.requests, 1);
}
