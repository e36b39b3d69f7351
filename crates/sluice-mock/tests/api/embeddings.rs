use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Value};
use sluice_mock::{count_tokens, MockOptions};

use crate::helpers::TestMock;

fn vectors(response: &Value) -> Vec<Vec<f64>> {
    response["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn deterministic_unit_vectors_of_configured_dimension() {
    let mock = TestMock::with(MockOptions {
        embedding_dims: std::num::NonZeroUsize::new(24).unwrap(),
        ..MockOptions::default()
    });
    let inputs = ["cat", "dog", "cat"];
    let (status, response) = mock
        .post("/v1/embeddings", &json!({"model": "e", "input": inputs}))
        .await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["object"], "list");
    assert_eq!(response["model"], "e");
    let vs = vectors(&response);
    assert_eq!(vs.len(), 3);
    for (i, v) in vs.iter().enumerate() {
        assert_eq!(response["data"][i]["index"], i);
        assert_eq!(response["data"][i]["object"], "embedding");
        assert_eq!(v.len(), 24);
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    assert_eq!(vs[0], vs[2]);
    assert_ne!(vs[0], vs[1]);

    let (_, single) = mock
        .post("/v1/embeddings", &json!({"model": "e", "input": "cat"}))
        .await;
    assert_eq!(vectors(&single)[0], vs[0]);

    let tokens: u64 = inputs.iter().map(|t| count_tokens(t)).sum();
    assert_eq!(response["usage"]["prompt_tokens"], tokens);
    assert_eq!(response["usage"]["total_tokens"], tokens);
}

#[tokio::test]
async fn dimensions_parameter_overrides_default() {
    let mock = TestMock::new();
    let (_, response) = mock
        .post(
            "/v1/embeddings",
            &json!({"model": "e", "input": "x", "dimensions": 5}),
        )
        .await;
    assert_eq!(vectors(&response)[0].len(), 5);
}

#[tokio::test]
async fn base64_encoding_is_little_endian_f32() {
    let mock = TestMock::new();
    let (_, floats) = mock
        .post("/v1/embeddings", &json!({"model": "e", "input": "x"}))
        .await;
    let (_, b64) = mock
        .post(
            "/v1/embeddings",
            &json!({"model": "e", "input": "x", "encoding_format": "base64"}),
        )
        .await;
    let encoded = b64["data"][0]["embedding"].as_str().unwrap();
    let bytes = BASE64.decode(encoded).unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let expected: Vec<f32> = floats["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(decoded.len(), 16);
    assert_eq!(decoded, expected);
}

#[tokio::test]
async fn token_ids_are_inputs_of_as_many_tokens() {
    let mock = TestMock::new();
    let (status, one) = mock
        .post("/v1/embeddings", &json!({"model": "e", "input": [1, 2, 3]}))
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(vectors(&one).len(), 1);
    assert_eq!(one["usage"]["prompt_tokens"], 3);
    let (status, many) = mock
        .post(
            "/v1/embeddings",
            &json!({"model": "e", "input": [[1, 2, 3], [4]]}),
        )
        .await;
    assert_eq!(status, 200, "{many}");
    let vs = vectors(&many);
    assert_eq!(vs.len(), 2);
    assert_eq!(vs[0], vectors(&one)[0], "the same ids, the same vector");
    assert_ne!(vs[0], vs[1]);
    assert_eq!(many["usage"]["prompt_tokens"], 4);
    let (status, _) = mock
        .post(
            "/v1/completions",
            &json!({"model": "m", "prompt": [[5, 6]], "max_tokens": 2}),
        )
        .await;
    assert_eq!(status, 200);
}
