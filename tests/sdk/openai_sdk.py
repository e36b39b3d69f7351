"""Drives Sluice with the official `openai` Python SDK, unchanged: only its
base URL and key point at Sluice. Run by tests/tests/openai_sdk.rs, which
starts the stack and passes, in the environment:

  SLUICE_BASE_URL   the API's /v1 URL
  SLUICE_KEY        a key of a tenant without limits
  SLUICE_LIMITED    a key of a tenant allowed 1 job a minute
  SLUICE_BROKE      a key of a tenant whose monthly budget is 0

The first argument picks the checks: `surface` (everything but the retry
and batches), `retry` (the SDK's retry after a client timeout, against a
slow provider) or `batches` (the Batch API, against a provider slow enough
to cancel a batch partway). Each check raises on failure; the script prints one line per
check passed, and exits non-zero at the first that fails.
"""

import os
import sys

import openai
from openai import OpenAI

BASE = os.environ["SLUICE_BASE_URL"]


def client(key, **kw):
    # No retries unless a check asks for them: each call is one request.
    return OpenAI(base_url=BASE, api_key=key, max_retries=kw.pop("max_retries", 0), **kw)


sluice = client(os.environ["SLUICE_KEY"])


CHECKS = {"surface": [], "retry": [], "batches": []}


def check(name, group="surface"):
    def register(f):
        CHECKS[group].append((name, f))
        return f
    return register


def expect(error_type, status, call):
    try:
        call()
    except error_type as e:
        assert e.status_code == status, (e.status_code, e)
        return e
    raise AssertionError(f"expected {error_type.__name__}")


@check("chat completion")
def _():
    r = sluice.chat.completions.create(
        model="mock-small",
        max_tokens=5,
        messages=[{"role": "user", "content": "hello from the SDK"}],
    )
    assert r.object == "chat.completion", r
    assert r.choices[0].message.role == "assistant", r
    assert r.choices[0].message.content, r
    assert r.usage.completion_tokens == 5, r.usage


@check("completion, one prompt and a list with n choices")
def _():
    r = sluice.completions.create(model="mock-small", prompt="one", max_tokens=3)
    assert len(r.choices) == 1 and r.choices[0].text, r
    r = sluice.completions.create(model="mock-small", prompt=["a", "b"], n=2, max_tokens=3)
    assert [c.index for c in r.choices] == [0, 1, 2, 3], r.choices
    assert r.usage.completion_tokens == 12, r.usage


@check("embeddings in every input shape, float and the SDK's default base64")
def _():
    def embed(value, **kw):
        return sluice.embeddings.create(model="mock-embed", input=value, **kw).data

    # The SDK asks for base64 by default and decodes it; float on request.
    one = embed("one")
    assert len(one) == 1 and len(one[0].embedding) == 16, one
    floats = embed("one", encoding_format="float")
    # The same vector: float32 in base64, the same float32 printed in JSON.
    assert all(abs(a - b) < 1e-6 for a, b in zip(floats[0].embedding, one[0].embedding))
    both = embed(["one", "two"])
    assert [d.index for d in both] == [0, 1]
    assert both[0].embedding == one[0].embedding
    assert both[1].embedding != one[0].embedding
    ids = embed([1, 2, 3])
    assert len(ids) == 1
    lists = embed([[1, 2, 3], [4, 5]])
    assert len(lists) == 2 and lists[0].embedding == ids[0].embedding
    short = embed(["one", "two"], dimensions=4)
    assert all(len(d.embedding) == 4 for d in short), short


@check("chat and completions stream, usage on request, as the plain answers")
def _():
    messages = [{"role": "user", "content": "stream to the SDK"}]
    plain = sluice.chat.completions.create(model="mock-small", max_tokens=8, messages=messages)
    pieces, finish, usage = [], None, None
    stream = sluice.chat.completions.create(
        model="mock-small",
        max_tokens=8,
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk", chunk
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert len(pieces) > 1, pieces
    assert "".join(pieces) == plain.choices[0].message.content, (pieces, plain)
    assert finish == "length" and usage.completion_tokens == 8, (finish, usage)
    # Without include_usage, no chunk carries usage.
    quiet = list(sluice.chat.completions.create(model="mock-small", max_tokens=3, messages=messages, stream=True))
    assert quiet and all(c.usage is None for c in quiet), quiet

    plain = sluice.completions.create(model="mock-small", prompt=["a", "b"], max_tokens=3)
    texts = {0: "", 1: ""}
    for chunk in sluice.completions.create(model="mock-small", prompt=["a", "b"], max_tokens=3, stream=True):
        for choice in chunk.choices:
            texts[choice.index] += choice.text
    assert [texts[0], texts[1]] == [c.text for c in plain.choices], (texts, plain)


@check("files: upload, list, retrieve, content, delete; another tenant's is a NotFoundError")
def _():
    import io

    content = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n' * 3
    f = sluice.files.create(file=("in.jsonl", io.BytesIO(content)), purpose="batch")
    assert f.object == "file" and f.purpose == "batch" and f.bytes == len(content), f
    assert f.id in [x.id for x in sluice.files.list()]
    assert sluice.files.retrieve(f.id).filename == "in.jsonl"
    assert sluice.files.content(f.id).content == content
    other = client(os.environ["SLUICE_LIMITED"])
    expect(openai.NotFoundError, 404, lambda: other.files.retrieve(f.id))
    assert sluice.files.delete(f.id).deleted
    expect(openai.NotFoundError, 404, lambda: sluice.files.retrieve(f.id))


@check("models")
def _():
    ids = [m.id for m in sluice.models.list()]
    assert "mock-small" in ids and "mock-embed" in ids, ids
    assert sluice.models.retrieve("mock-small").id == "mock-small"
    e = expect(openai.NotFoundError, 404, lambda: sluice.models.retrieve("gpt-nope"))
    assert e.code == "model_not_found", e.body


@check("a provider's 400 is a BadRequestError with the provider's message")
def _():
    e = expect(
        openai.BadRequestError,
        400,
        lambda: sluice.chat.completions.create(
            model="mock-small",
            max_tokens=1_000_000_000,
            messages=[{"role": "user", "content": "too long"}],
        ),
    )
    assert "max_tokens" in e.message and e.param == "max_tokens", e.body


@check("an unknown model is a NotFoundError, a bad body a BadRequestError")
def _():
    e = expect(
        openai.NotFoundError,
        404,
        lambda: sluice.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "x"}]),
    )
    assert e.code == "model_not_found", e.body
    expect(
        openai.BadRequestError,
        400,
        lambda: sluice.chat.completions.create(model="mock-small", messages=[]),
    )


@check("a bad key is an AuthenticationError")
def _():
    e = expect(
        openai.AuthenticationError,
        401,
        lambda: client("sk-not-a-sluice-key").models.list(),
    )
    assert e.code == "invalid_api_key", e.body


@check("over the tenant's limit is a RateLimitError, with Retry-After")
def _():
    limited = client(os.environ["SLUICE_LIMITED"])
    # Different inputs: a repeat would be answered from the cache, which
    # does not count against the limit.
    limited.embeddings.create(model="mock-embed", input="first")
    e = expect(
        openai.RateLimitError,
        429,
        lambda: limited.embeddings.create(model="mock-embed", input="second"),
    )
    assert e.code == "rate_limit_exceeded", e.body
    assert int(e.response.headers["retry-after"]) >= 1


@check("a spent budget is a RateLimitError with code insufficient_quota")
def _():
    broke = client(os.environ["SLUICE_BROKE"])
    e = expect(
        openai.RateLimitError,
        429,
        lambda: broke.embeddings.create(model="mock-embed", input="no money"),
    )
    assert e.code == "insufficient_quota", e.body


@check("a retry after a client timeout joins the first call", group="retry")
def _():
    # The mock answers this one slowly (see the test's latency flags): the
    # SDK times out, retries the same request, and the retry joins the job
    # still in flight, so the tenant pays for one call.
    patient = client(os.environ["SLUICE_KEY"], max_retries=2, timeout=0.6)
    r = patient.chat.completions.create(
        model="mock-small",
        temperature=0,
        max_tokens=5,
        messages=[{"role": "user", "content": "worth the wait"}],
    )
    assert r.choices[0].message.content, r


# --- the Batch API --------------------------------------------------------

import io
import json
import time

import httpx


def batch_line(custom_id, text, model="mock-small"):
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "temperature": 0, "max_tokens": 5,
                     "messages": [{"role": "user", "content": text}]}}


def upload(lines, who=None):
    content = "".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines)
    return (who or sluice).files.create(file=("in.jsonl", io.BytesIO(content.encode())), purpose="batch")


def run_batch(lines):
    f = upload(lines)
    b = sluice.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                              completion_window="24h", metadata={"run": "sdk"})
    assert b.status == "validating" and b.metadata == {"run": "sdk"}, b
    return b


def until(batch_id, statuses, timeout=90):
    end = time.time() + timeout
    while time.time() < end:
        b = sluice.batches.retrieve(batch_id)
        if b.status in statuses:
            return b
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} is still {b.status}")


def file_lines(file_id):
    text = sluice.files.content(file_id).text
    return {l["custom_id"]: l for l in map(json.loads, text.splitlines())}


def job(job_id):
    r = httpx.get(f"{BASE}/jobs/{job_id}", headers={"Authorization": f"Bearer {os.environ['SLUICE_KEY']}"})
    r.raise_for_status()
    return r.json()


@check("batch: upload, create, poll to completed, each line its own answer by custom_id, repeats from the cache at no cost", group="batches")
def _():
    lines = [batch_line(f"q{i}", f"batch question {i}") for i in range(8)]
    lines += [batch_line(f"again{i}", f"batch question {i}") for i in range(4)]
    b = until(run_batch(lines).id, ["completed", "failed", "expired", "cancelled"])
    assert b.status == "completed", b
    assert (b.request_counts.total, b.request_counts.completed, b.request_counts.failed) == (12, 12, 0), b
    assert b.error_file_id is None, b
    out = file_lines(b.output_file_id)
    assert sorted(out) == sorted(l["custom_id"] for l in lines), out.keys()
    answers = {}
    for custom_id, line in out.items():
        assert line["error"] is None and line["response"]["status_code"] == 200, line
        assert line["id"].startswith("batch_req_"), line
        answers[custom_id] = line["response"]["body"]["choices"][0]["message"]["content"]
    # The mock answers as a function of the prompt: distinct questions
    # got distinct answers, and a repeat the first one's.
    assert len({answers[f"q{i}"] for i in range(8)}) == 8, answers
    for i in range(4):
        assert answers[f"again{i}"] == answers[f"q{i}"], answers
    paid = [job(out[f"q{i}"]["response"]["request_id"]) for i in range(8)]
    free = [job(out[f"again{i}"]["response"]["request_id"]) for i in range(4)]
    assert all(j["cost_micros"] > 0 for j in paid), paid
    assert all(j["cost_micros"] == 0 and j["cached"] for j in free), free
    # The batch's cost is its lines' (Sluice's extension to the object).
    b = sluice.batches.retrieve(b.id)
    assert b.model_extra["cost_micros"] == sum(j["cost_micros"] for j in paid), b
    assert b.id in [x.id for x in sluice.batches.list(limit=100)]


@check("batch: a cancel partway keeps the finished lines in the output", group="batches")
def _():
    lines = [batch_line(f"slow{i}", f"a slow question {i}") for i in range(30)]
    b = run_batch(lines)
    end = time.time() + 60
    while sluice.batches.retrieve(b.id).request_counts.completed < 2:
        assert time.time() < end, "no line finished"
        time.sleep(0.05)
    c = sluice.batches.cancel(b.id)
    assert c.status in ("cancelling", "cancelled"), c
    b = until(b.id, ["cancelled"])
    done = file_lines(b.output_file_id)
    stopped = file_lines(b.error_file_id)
    assert 2 <= len(done) < 30, len(done)
    assert len(done) + len(stopped) == 30 and not set(done) & set(stopped), (done.keys(), stopped.keys())
    assert b.request_counts.completed == len(done), b
    for line in stopped.values():
        assert line["response"] is None and line["error"]["code"] == "batch_cancelled", line


@check("batch: a malformed file fails with its lines' numbers, and nothing runs", group="batches")
def _():
    lines = [batch_line("fine", "fine"), "{not json", batch_line("nope", "x", model="gpt-nope")]
    b = until(run_batch(lines).id, ["failed", "in_progress", "completed"])
    assert b.status == "failed", b
    got = [(e.code, e.line) for e in b.errors.data]
    assert got == [("invalid_json_line", 2), ("model_not_found", 3)], got


@check("batch: another tenant cannot see a batch or read its files", group="batches")
def _():
    other = client(os.environ["SLUICE_OTHER"])
    b = until(run_batch([batch_line("mine", "my own question")]).id, ["completed"])
    expect(openai.NotFoundError, 404, lambda: other.batches.retrieve(b.id))
    expect(openai.NotFoundError, 404, lambda: other.files.content(b.output_file_id))
    expect(openai.NotFoundError, 404, lambda: other.batches.cancel(b.id))
    assert b.id not in [x.id for x in other.batches.list()]


for name, run in CHECKS[sys.argv[1]]:
    run()
    print(f"ok {name}", flush=True)
print("all passed", flush=True)
