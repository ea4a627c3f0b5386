"""The server, as its users reach it: the official ``openai`` client and raw HTTP, on loopback."""

import base64
import io
import threading
import time

import httpx
import openai
import pytest
from PIL import Image

from thinkgen.serve import BackgroundServer
from thinkgen.tiny import tiny_pipeline


def Server(pipe, **options) -> BackgroundServer:  # noqa: N802 - reads as the class it returns
    return BackgroundServer(pipe, model_name="tiny", **options)


@pytest.fixture(scope="module")
def served():
    pipe = tiny_pipeline(seed=0)
    server = Server(pipe, capacity=16, window_s=0.05)
    yield server
    server.close()


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0, timeout=60)


EXTRA = {"seed": 3, "num_inference_steps": 2}


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_generate_with_the_openai_client(client):
    result = client.images.generate(model="tiny", prompt="a red circle", n=2, size="32x32", extra_body=EXTRA)
    assert len(result.data) == 2
    for image in result.data:
        assert decode(image.b64_json).size == (32, 32)
        assert isinstance(image.revised_prompt, str) and isinstance(image.reasoning, str)
    assert result.data[0].reasoning == result.data[1].reasoning  # one trace per prompt
    direct = client.images.generate(prompt="a red circle", size="32x32", extra_body={**EXTRA, "think": False})
    assert direct.data[0].reasoning == "" and direct.data[0].revised_prompt == "a red circle"


def test_same_seed_same_picture(client):
    a = client.images.generate(prompt="a star", size="32x32", extra_body=EXTRA).data[0].b64_json
    b = client.images.generate(prompt="a star", size="32x32", extra_body=EXTRA).data[0].b64_json
    c = client.images.generate(prompt="a star", size="32x32", extra_body={**EXTRA, "seed": 4}).data[0].b64_json
    assert a == b and a != c


def test_edit_with_the_openai_client(client, tmp_path):
    source = tmp_path / "source.png"
    Image.new("RGB", (32, 32), "red").save(source)
    with open(source, "rb") as f:
        result = client.images.edit(image=f, prompt="make it blue", size="32x32", extra_body=EXTRA)
    assert decode(result.data[0].b64_json).size == (32, 32) and isinstance(result.data[0].revised_prompt, str)


def test_stream_sends_reasoning_before_the_image(client):
    stream = client.images.generate(prompt="two blue squares", size="32x32", stream=True, partial_images=1,
                                    extra_body={"seed": 1, "num_inference_steps": 4})
    kinds = [event.type for event in stream]
    assert "image_generation.reasoning.delta" in kinds and kinds[-1] == "image_generation.completed"
    assert kinds.index("image_generation.reasoning.delta") < kinds.index("image_generation.completed")
    assert "image_generation.partial_image" in kinds


@pytest.mark.parametrize("kwargs,status", [
    ({"size": "33x32"}, 400), ({"size": "big"}, 400), ({"n": 50}, 400), ({"response_format": "url"}, 400),
    ({"model": "dall-e-9"}, 404), ({"extra_body": {"steps": 3}}, 400), ({"extra_body": {"seed": -1}}, 400),
    ({"extra_body": {"guidance_scale": "high"}}, 400), ({"size": "99999x99999"}, 400),
])
def test_client_errors_are_4xx_in_openai_shape(client, kwargs, status):
    with pytest.raises(openai.APIStatusError) as raised:
        client.images.generate(prompt="a cat", **{"size": "32x32", **kwargs})
    assert raised.value.status_code == status
    assert raised.value.body["message"]  # OpenAI's {"error": {"message": ...}} shape


def malformed_requests(url):
    post = f"{url}/v1/images/generations"
    bodies = [b"", b"{", b"[]", b"null", b"42", b'"a"', b"\xff\xfe", b'{"prompt": 1}', b'{"prompt": ""}',
              b'{"prompt": "a", "n": "2"}', b'{"prompt": "a", "n": 0}', b'{"prompt": "a", "n": 1e9}',
              b'{"prompt": "a", "size": "0x0"}', b'{"prompt": "a", "size": "-32x32"}', b'{"prompt": "a", "size": 32}',
              b'{"prompt": "a", "seed": 1.5}', b'{"prompt": "a", "seed": 99999999999999999999}',
              b'{"prompt": "a", "guidance_scale": NaN}', b'{"prompt": "a", "guidance_scale": 1e999}',
              b'{"prompt": "a", "num_inference_steps": 100000}', b'{"prompt": "a", "stream": "yes"}',
              b'{"prompt": "a", "think": "no"}', b'{"prompt": "../../etc/passwd", "response_format": "url"}',
              b'{"prompt": "a", "output_format": "gif"}', b'{"prompt": "a", "extra": {"deep": [1, 2]}}',
              b'{"prompt": "' + b"x" * 30000 + b'"}', b'{"prompt": "a\\u0000b"}', b'{"prompt": "\\ud800"}',
              b'{"prompt": "a", "partial_images": 9}', b'{"prompt": "a", "negative_prompt": 5}',
              b'{"prompt": "a", "model": ["x"]}', b'{"prompt": "a", "background": "transparent"}',
              b'{"prompt": "a", "quality": "ultra"}', b'{"prompt": "a", "user": ' + b'"u"' * 1 + b', "n": -1}']
    for body in bodies:
        yield "POST", post, {"content": body, "headers": {"content-type": "application/json"}}
    yield "POST", post, {"content": b"x" * 2_000_000, "headers": {"content-type": "application/json"}}
    for field in ["n", "size", "seed", "num_inference_steps", "guidance_scale", "think", "stream", "model", "quality",
                  "style", "output_format", "partial_images", "response_format"]:  # none of these takes free text
        for value in ["-1", "nan", "{}", "huge" * 100, "../../x", "1e999"]:
            yield "POST", post, {"json": {"prompt": "a cat", field: value}}
    yield "POST", post, {"json": {"prompt": "a cat", "user": "u" * 1000}}
    yield "POST", post, {"json": {"prompt": "a cat", "negative_prompt": "n" * 30000}}
    edits = f"{url}/v1/images/edits"
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    yield "POST", edits, {"data": {"prompt": "x"}}  # no image (and not multipart)
    yield "POST", edits, {"files": {"image": ("a.png", b"not an image", "image/png")}, "data": {"prompt": "x"}}
    yield "POST", edits, {"files": {"image": ("a.png", png.getvalue(), "image/png")}, "data": {"prompt": ""}}
    yield "POST", edits, {"files": {"image": ("a.png", png.getvalue(), "image/png")}, "data": {"prompt": "x", "n": "two"}}
    yield "POST", edits, {"files": {"image": ("a.png", png.getvalue(), "image/png")}, "data": {"prompt": "x", "bogus": "1"}}
    yield "POST", edits, {"files": {"image": ("a.png", png.getvalue(), "image/png")},
                          "data": {"prompt": "x", "guidance_scale": "inf"}}
    yield "POST", edits, {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=x"}}
    yield "GET", f"{url}/v1/images/generations", {}
    yield "GET", f"{url}/nowhere", {}
    yield "DELETE", f"{url}/v1/models", {}


def test_a_hundred_malformed_requests_are_4xx_and_the_server_keeps_serving(served, client):
    cases = list(malformed_requests(served.url))
    assert len(cases) >= 100
    with httpx.Client(timeout=30) as http:
        for method, url, options in cases:
            response = http.request(method, url, **options)
            assert 400 <= response.status_code < 500, (url, options.get("content", options.get("json")), response.text)
            assert response.json()["error"]["message"]
    assert client.images.generate(prompt="still here", size="32x32", extra_body=EXTRA).data[0].b64_json


def test_health_models_and_metrics(served, client):
    with httpx.Client() as http:
        assert http.get(served.url + "/health").json()["status"] == "ok"
        assert http.get(served.url + "/v1/models").json()["data"][0]["id"] == "tiny"
        metrics = http.get(served.url + "/metrics").text
    for name in ("thinkgen_queue_depth", "thinkgen_images_total", "thinkgen_rejected_total",
                 "thinkgen_batch_size_bucket", "thinkgen_latency_seconds_bucket"):
        assert name in metrics
    assert client.models.list().data[0].owned_by == "thinkgen"


def test_concurrent_requests_share_batches(served):
    before = len(served.batcher.stats.batch_sizes)
    results = []

    def one(i):
        with httpx.Client(timeout=60) as http:
            results.append(http.post(served.url + "/v1/images/generations",
                                     json={"prompt": f"shape {i}", "size": "32x32", "seed": i,
                                           "num_inference_steps": 2}).status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 8
    sizes = list(served.batcher.stats.batch_sizes)[before:]
    assert sum(sizes) == 8 and max(sizes) > 1  # several requests thought and drawn together


def test_edits_share_a_batch_only_with_sources_of_the_same_size():
    from thinkgen.serve.batcher import Job

    def job(image=None):
        return Job(prompt="p", n=1, height=32, width=32, steps=2, guidance_scale=3.0, seed=0, think=False, image=image)

    small, other_small, large = Image.new("RGB", (32, 32)), Image.new("RGB", (32, 32), "red"), Image.new("RGB", (48, 32))
    assert job(small).key == job(other_small).key  # a conditioning may draw an edit at its source's size
    assert job(small).key != job(large).key and job(small).key != job().key


def test_full_queue_is_429_and_a_disconnect_frees_its_slot():
    pipe = tiny_pipeline(seed=0)
    server = Server(pipe, capacity=1, window_s=0.0)
    slow = {"prompt": "slow", "size": "32x32", "num_inference_steps": 200, "seed": 0}
    try:
        waiting = threading.Thread(target=lambda: _post_and_drop(server.url, slow), daemon=True)
        waiting.start()
        deadline = time.monotonic() + 10
        while server.batcher.depth == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        with httpx.Client(timeout=30) as http:
            refused = http.post(server.url + "/v1/images/generations", json=slow)
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["type"] == "rate_limit_error"
            waiting.join()  # the first client gave up and went away
            deadline = time.monotonic() + 10
            while server.batcher.depth and time.monotonic() < deadline:
                time.sleep(0.02)
            assert server.batcher.depth == 0  # its slot is free again
            ok = http.post(server.url + "/v1/images/generations",
                           json={"prompt": "next", "size": "32x32", "num_inference_steps": 1})
            assert ok.status_code == 200
    finally:
        server.close()


def _post_and_drop(url, body):
    try:
        with httpx.Client(timeout=0.5) as http:
            http.post(url + "/v1/images/generations", json=body)
    except httpx.TimeoutException:
        pass  # the client closes the connection


def test_the_page_is_served(served):
    with httpx.Client() as http:
        page = http.get(served.url + "/")
    assert page.status_code == 200 and "/v1/images/generations" in page.text and "<script>" in page.text
