//! What a new user meets first: `sluice dev` works as printed, and a role
//! refuses a bad config or an unmigrated database with a clear reason.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::process::Stdio;
use std::time::Duration;

use sluice_e2e::{acme_stack, Stack, StackOptions};

#[tokio::test]
async fn sluice_dev_prints_a_curl_line_that_works() {
    let dir = std::env::temp_dir().join(format!("dev-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut dev = tokio::process::Command::new(sluice_e2e::binary())
        .args(["dev", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(dev.stdout.take().unwrap()).lines();
    let mut curl = None;
    let mut key = None;
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
    {
        if line.starts_with("api key: ") {
            key = Some(line.trim_start_matches("api key: ").to_owned());
        }
        if line.starts_with("curl ") {
            curl = Some(line);
            break;
        }
    }
    let (curl, key) = (curl.expect("a curl line"), key.expect("an api key"));
    assert!(curl.contains(&key));
    let out = tokio::process::Command::new("bash")
        .args(["-c", &curl])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job["result"]["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("mock:"));
    let _ = dev.kill().await;
    let _ = std::fs::remove_dir_all(dir);
}

async fn refused(stack: &Stack, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = tokio::process::Command::new(sluice_e2e::binary())
        .args(args)
        .env_remove("SLUICE_CONFIG")
        .envs(stack.env.iter().cloned())
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .output()
        .await
        .unwrap();
    assert!(
        !out.status.success(),
        "sluice {args:?} started but should have refused"
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let last = stderr.lines().last().unwrap_or_default().to_owned();
    assert!(last.starts_with("error: "), "{stderr}");
    last
}

#[tokio::test]
async fn roles_refuse_a_bad_config_or_an_unmigrated_database() {
    let stack = Stack::start(StackOptions {
        api: false,
        workers: 0,
        ..StackOptions::default()
    })
    .await;
    let bad = stack.dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://x/v1\"\n\n[[models]]\nname = \"m\"\nproviders = [\"q\"]\n",
    )
    .unwrap();
    let bad = bad.display().to_string();
    let why = refused(
        &stack,
        &["api", "--listen", "127.0.0.1:0", "--config", &bad],
        &[],
    )
    .await;
    assert!(
        why.contains(r#"models[0] ("m"): unknown provider "q""#),
        "{why}"
    );
    let why = refused(&stack, &["worker", "--config", &bad], &[]).await;
    assert!(why.contains("unknown provider"), "{why}");
    let why = refused(&stack, &["api", "--listen", "127.0.0.1:0"], &[]).await;
    assert!(why.contains("--config"), "{why}");

    // A database nobody migrated.
    let config = stack.config_arg();
    let empty = stack
        .database_url()
        .replace(&stack.database.name, "postgres");
    let why = refused(
        &stack,
        &["api", "--listen", "127.0.0.1:0", "--config", &config],
        &[("SLUICE_DATABASE_URL", empty.as_str())],
    )
    .await;
    assert!(why.contains("sluice migrate"), "{why}");
    let why = refused(
        &stack,
        &["worker", "--config", &config],
        &[("SLUICE_DATABASE_URL", empty.as_str())],
    )
    .await;
    assert!(why.contains("sluice migrate"), "{why}");
}

#[tokio::test]
async fn a_worker_stopped_with_sigterm_drains_what_it_holds() {
    let (mut stack, client) = acme_stack(StackOptions {
        mock_args: vec!["--latency-fixed-ms".into(), "200".into()],
        ..StackOptions::default()
    })
    .await;
    let jobs: Vec<serde_json::Value> = (0..300)
        .map(|i| serde_json::json!({"body": {"model": "mock-small", "messages": [{"role": "user", "content": format!("drain {i}")}]}}))
        .collect();
    let ids = client.submit_batch(jobs).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let worker = stack.workers.remove(0);
    let status: std::process::ExitStatus = worker.terminate(Duration::from_secs(60)).await;
    assert!(
        status.success(),
        "the worker exits cleanly on SIGTERM: {status:?}"
    );
    stack.start_worker().await;
    for job in client.wait_all(&ids, 120).await {
        assert_eq!(job["status"], "succeeded", "{job}");
        // Nothing the first worker took was handed back unfinished.
        assert_eq!(
            job["attempts"], 1,
            "a job was redelivered after a graceful stop: {job}"
        );
    }
}
