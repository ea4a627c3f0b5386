"""The server against hostile and careless callers: work refused before it is queued, one bad
request failing nobody else, uploads checked from their header, bodies bounded while they arrive,
API keys, Host and Origin checks, and OpenAI's conventions where they differ from ours."""

import io
import threading
import time

import httpx
import openai
import pytest
from PIL import Image

from thinkgen.serve import BackgroundServer
from thinkgen.serve.batcher import partial_steps
from thinkgen.serve.guard import Policy, split_host
from thinkgen.tiny import tiny_pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(seed=0)


@pytest.fixture(scope="module")
def served(pipe):
    server = BackgroundServer(pipe, model_name="tiny", capacity=16, window_s=0.3)
    yield server
    server.close()


def post(server, body, **options):
    with httpx.Client(timeout=60) as http:
        return http.post(server.url + "/v1/images/generations", json=body, **options)


def test_a_large_size_is_refused_at_once_before_any_work(served, pipe):
    assert pipe.defaults["height"] * pipe.defaults["width"] * 4 == served_policy(served).max_pixels
    with httpx.Client(timeout=60) as http:
        http.get(served.url + "/health")  # connected: what is timed is the answer
        start = time.perf_counter()
        response = http.post(served.url + "/v1/images/generations", json={"prompt": "a cat", "size": "1024x1024"})
        elapsed = time.perf_counter() - start
    assert response.status_code == 400 and response.json()["error"]["param"] == "size"
    assert "above this server's limit" in response.json()["error"]["message"]
    assert elapsed < 0.1, elapsed  # the goal: refused in under 100 ms
    # pixels x steps x images: 8 images of the largest size at 200 steps is too much work
    response = post(served, {"prompt": "a cat", "size": "64x64", "n": 8, "num_inference_steps": 200})
    assert response.status_code == 400 and "pixel-steps" in response.json()["error"]["message"]
    assert served.batcher.depth == 0


def served_policy(server) -> Policy:
    return server.server.config.app.state.policy


def test_one_bad_request_fails_nobody_else_in_its_batch(served):
    """A prompt of 9,999 tokens passes the character check and fails inside the pipeline; the
    three valid requests batched with it are drawn one by one and answered 200."""
    statuses = {}

    def one(name, prompt):
        statuses[name] = post(served, {"prompt": prompt, "size": "32x32", "num_inference_steps": 2, "seed": 1,
                                       "think": False}).status_code

    retried = served.batcher.stats.retried
    threads = [threading.Thread(target=one, args=("bad", "a " * 9999))]
    threads += [threading.Thread(target=one, args=(f"ok{i}", f"shape {i}")) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == {"bad": 400, "ok0": 200, "ok1": 200, "ok2": 200}
    assert served.batcher.stats.retried - retried == 4  # they were batched together, then drawn alone


def test_an_image_of_144_megapixels_is_refused_from_its_header(served):
    huge = io.BytesIO()
    Image.new("1", (12000, 12000)).save(huge, format="PNG")  # about 140 KiB on disk, 432 MB decoded
    assert len(huge.getvalue()) < 1_000_000
    seen = []

    def health():
        start = time.perf_counter()
        httpx.get(served.url + "/health", timeout=10)
        seen.append(time.perf_counter() - start)

    with httpx.Client(timeout=30) as http:
        checker = threading.Thread(target=health)
        checker.start()
        response = http.post(served.url + "/v1/images/edits", files={"image": ("a.png", huge.getvalue(), "image/png")},
                             data={"prompt": "make it blue"})
        checker.join()
    assert response.status_code == 400 and "12000x12000" in response.json()["error"]["message"]
    assert seen[0] < 1.0


def test_bodies_are_bounded_while_they_arrive_and_json_is_required(served):
    def chunks():
        for _ in range(40):  # 2 MB in 50 KB chunks, with no Content-Length
            yield b" " * 50_000

    with httpx.Client(timeout=30) as http:
        url = served.url + "/v1/images/generations"
        chunked = http.post(url, content=chunks(), headers={"content-type": "application/json"})
        assert chunked.status_code == 413
        plain = http.post(url, content=b'{"prompt": "a cat"}', headers={"content-type": "text/plain"})
        assert plain.status_code == 415  # a web page's "simple request" cannot post here
        deep = http.post(url, content=b"[" * 50_000 + b"]" * 50_000, headers={"content-type": "application/json"})
        assert deep.status_code == 400 and "nested" in deep.json()["error"]["message"]
        edit_as_json = http.post(served.url + "/v1/images/edits", json={"prompt": "x"})
        assert edit_as_json.status_code == 415


def test_host_and_origin_must_be_the_servers_own(served):
    url = served.url + "/v1/images/generations"
    body = {"prompt": "a cat", "size": "32x32", "num_inference_steps": 1}
    with httpx.Client(timeout=60) as http:
        rebound = http.post(url, json=body, headers={"host": f"attacker.example:{served.port}"})
        assert rebound.status_code == 403 and rebound.json()["error"]["type"] == "permission_error"
        other_port = http.get(served.url + "/health", headers={"host": "127.0.0.1:1"})
        assert other_port.status_code == 403
        foreign = http.post(url, json=body, headers={"origin": "https://attacker.example"})
        assert foreign.status_code == 403
        own = http.post(url, json=body, headers={"origin": f"http://localhost:{served.port}"})
        assert own.status_code == 200
        assert http.get(served.url + "/health", headers={"host": f"localhost:{served.port}"}).status_code == 200


def test_allowed_origins_and_the_api_key(pipe):
    server = BackgroundServer(pipe, model_name="tiny", api_key="s3cret", allow_origins=("https://app.example",))
    try:
        body = {"prompt": "a cat", "size": "32x32", "num_inference_steps": 1}
        with httpx.Client(timeout=60) as http:
            url = server.url + "/v1/images/generations"
            assert http.post(url, json=body).status_code == 401
            wrong = http.post(url, json=body, headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
            assert http.get(server.url + "/metrics").status_code == 401
            assert http.get(server.url + "/health").status_code == 200  # for load balancers
            app = http.post(url, json=body, headers={"authorization": "Bearer s3cret", "origin": "https://app.example"})
            assert app.status_code == 200
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="s3cret", max_retries=0, timeout=60)
        assert client.images.generate(prompt="a cat", size="32x32", extra_body={"num_inference_steps": 1}).data
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.url + "/v1", api_key="other", max_retries=0).images.generate(prompt="a")
    finally:
        server.close()


def test_openai_conventions(served):
    nulls = post(served, {"prompt": "a cat", "size": "32x32", "n": None, "response_format": None,
                          "num_inference_steps": 1})
    assert nulls.status_code == 200 and len(nulls.json()["data"]) == 1
    wide = post(served, {"prompt": "a cat", "size": "\uff13\uff12x\uff13\uff12"})  # full-width digits
    assert wide.status_code == 400 and wide.json()["error"]["param"] == "size"
    png = io.BytesIO()
    Image.new("RGB", (32, 32)).save(png, format="PNG")
    with httpx.Client(timeout=30) as http:
        masked = http.post(served.url + "/v1/images/edits", data={"prompt": "x"},
                           files={"image": ("a.png", png.getvalue(), "image/png"),
                                  "mask": ("m.png", png.getvalue(), "image/png")})
        assert masked.status_code == 400 and masked.json()["error"]["param"] == "mask"
        two = http.post(served.url + "/v1/images/edits", data={"prompt": "x"},
                        files=[("image[]", ("a.png", png.getvalue(), "image/png")),
                               ("image[]", ("b.png", png.getvalue(), "image/png"))])
        assert two.status_code == 400 and "one image" in two.json()["error"]["message"]


@pytest.mark.parametrize("steps, partial, expected", [(4, 2, [1, 3]), (4, 3, [1, 2, 3]), (20, 1, [10]),
                                                      (2, 3, [1]), (1, 2, []), (8, 0, [])])
def test_partial_images_are_as_many_as_asked(steps, partial, expected):
    assert partial_steps(steps, partial) == expected


def test_a_stream_gets_the_partial_images_it_asked_for(served):
    client = openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0, timeout=60)
    stream = client.images.generate(prompt="a cat", size="32x32", stream=True, partial_images=2,
                                    extra_body={"num_inference_steps": 4, "seed": 0})
    kinds = [event.type for event in stream]
    assert kinds.count("image_generation.partial_image") == 2 and kinds[-1] == "image_generation.completed"


def test_a_queued_request_whose_client_leaves_is_counted_as_cancelled(pipe):
    server = BackgroundServer(pipe, model_name="tiny", capacity=4, window_s=0.0)
    slow = {"prompt": "slow", "size": "32x32", "num_inference_steps": 200, "seed": 0}
    try:
        def drop():
            try:
                with httpx.Client(timeout=0.4) as http:
                    http.post(server.url + "/v1/images/generations", json=slow)
            except httpx.TimeoutException:
                pass

        first = threading.Thread(target=drop)
        first.start()
        time.sleep(0.1)
        second = threading.Thread(target=drop)  # queued behind the first, then gone
        second.start()
        first.join()
        second.join()
        deadline = time.monotonic() + 20
        while server.batcher.stats.cancelled < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.batcher.stats.cancelled == 2
        with httpx.Client(timeout=10) as http:
            assert "thinkgen_cancelled_total 2" in http.get(server.url + "/metrics").text
    finally:
        server.close()


def test_host_names_are_read_as_a_browser_sends_them():
    assert split_host("127.0.0.1:8000") == ("127.0.0.1", 8000)
    assert split_host("[::1]:8000") == ("::1", 8000)
    assert split_host("Example.COM") == ("example.com", None)
    assert split_host("a:\uff18") == ("a", -1)
    wildcard = Policy.for_model({"height": 32, "width": 32, "num_inference_steps": 4}, "0.0.0.0", 80)
    assert wildcard.host_allowed("anything.example")
    assert wildcard.origin_allowed("http://box.lan", "box.lan") and not wildcard.origin_allowed("http://evil", "box.lan")


# ----------------------------------------------------------------------------- the fuzz
def hostile_requests(url, port):
    """Requests a careless or hostile caller sends: each must be answered 4xx in OpenAI's error
    shape (or 200 where it is valid after all), never 5xx."""
    from tests.test_serve import malformed_requests

    yield from malformed_requests(url)
    post = f"{url}/v1/images/generations"
    small = {"prompt": "a cat", "size": "32x32", "num_inference_steps": 1}
    for host in ["evil.example", f"evil.example:{port}", "127.0.0.2:1", "", "localhost:0", "[::1]:1",
                 f"127.0.0.1:{port} y", "a" * 300, "127.0.0.1:abc", f"LOCALHOST:{port}"]:
        yield "POST", post, {"json": small, "headers": {"host": host}}
    for origin in ["https://evil.example", "null", "http://127.0.0.1:1", f"http://evil:{port}", "file://",
                   "chrome-extension://abc", f"https://127.0.0.1:{port}.evil.example", "javascript:alert(1)"]:
        yield "POST", post, {"json": small, "headers": {"origin": origin}}
    for kind in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "", "application/jsonx",
                 "text/json", "application/xml", "image/png"]:
        yield "POST", post, {"content": b'{"prompt": "a cat"}', "headers": {"content-type": kind}}
    for size in ["1024x1024", "4096x4096", "65536x65536", "\uff13\uff12x\uff13\uff12", "32X32", "32x32 ", " 32x32",
                 "32*32", "0x32", "32x0", "00032x00032", "1e3x1e3", "32x32x32", "\u0663\u0662x\u0663\u0662", "auto",
                 "99999x1", "1x99999", "64x64"]:
        yield "POST", post, {"json": {**small, "size": size}}
    for n, steps in [(8, 200), (8, 100), (4, 200), (1, 200), (8, 1)]:
        yield "POST", post, {"json": {**small, "size": "64x64", "n": n, "num_inference_steps": steps}}
    for depth in (100, 1000, 10_000, 100_000):
        yield "POST", post, {"content": b"[" * depth + b"]" * depth, "headers": {"content-type": "application/json"}}
        yield "POST", post, {"content": b'{"a":' * depth + b"1" + b"}" * depth,
                             "headers": {"content-type": "application/json"}}

    def chunked(total):
        def chunks():
            for _ in range(total // 65536):
                yield b" " * 65536
        return chunks()

    for total in (2_000_000, 20_000_000):
        yield "POST", post, {"content": chunked(total), "headers": {"content-type": "application/json"}}
    for field in ["n", "response_format", "output_format", "stream", "partial_images", "size", "seed"]:
        yield "POST", post, {"json": {**small, field: None}}
    edits = f"{url}/v1/images/edits"
    huge = io.BytesIO()
    Image.new("1", (12000, 12000)).save(huge, format="PNG")
    png = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(png, format="PNG")
    uploads = [("a.png", huge.getvalue()), ("a.png", png.getvalue()[:40]), ("a.png", b""), ("a.gif", b"GIF89a"),
               ("a.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 100), ("a.svg", b"<svg/>")]
    for name, data in uploads:
        yield "POST", edits, {"files": {"image": (name, data, "image/png")}, "data": {"prompt": "x"}}
    yield "POST", edits, {"files": {"image": ("a.png", png.getvalue(), "image/png"),
                                    "mask": ("m.png", png.getvalue(), "image/png")}, "data": {"prompt": "x"}}
    yield "POST", edits, {"files": [("image[]", ("a.png", png.getvalue(), "image/png"))] * 3, "data": {"prompt": "x"}}
    yield "POST", edits, {"files": {"image": ("a.png", png.getvalue(), "image/png")},
                          "data": {"prompt": "x", "size": "1024x1024"}}
    yield "POST", edits, {"content": chunked(20_000_000), "headers": {"content-type": "multipart/form-data; boundary=x"}}
    for auth in ["Bearer", "Bearer x", "Basic abc", "x" * 5000]:
        yield "GET", f"{url}/v1/models", {"headers": {"authorization": auth}}
    for path in ["/v1/images/variations", "/v1/images/generations/x", "/../etc/passwd", "/metrics/x", "/%00",
                 "/v1//images/generations", "/docs", "/openapi.json", "/redoc"]:
        yield "POST", url + path, {"json": small}
        yield "GET", url + path, {}
    for method in ["PUT", "PATCH", "DELETE", "OPTIONS"]:
        yield method, post, {"json": small}
    fields = ["prompt", "model", "n", "size", "response_format", "output_format", "quality", "style", "background",
              "moderation", "output_compression", "user", "stream", "partial_images", "think", "seed",
              "num_inference_steps", "guidance_scale", "negative_prompt"]
    for field in fields:  # every field with values of the wrong kind, or out of range
        for value in [[1], {"a": 1}, True, -1.5, 10**30, "\u0000", "x" * 30_000]:
            yield "POST", post, {"json": {**small, field: value}}


def test_the_http_fuzz(served, pipe):
    """At least 300 hostile or careless requests: 4xx in OpenAI's shape or 200, never 5xx; /health
    answers within 1 s throughout; the process's peak memory grows by under 500 MB."""
    import resource

    cases = list(hostile_requests(served.url, served.port))
    assert len(cases) >= 300, len(cases)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    slowest_health = 0.0
    with httpx.Client(timeout=60) as http:
        for i, (method, url, options) in enumerate(cases):
            response = http.request(method, url, **options)
            assert response.status_code < 500, (method, url, response.status_code, response.text[:200])
            if response.status_code >= 400:
                error = response.json()["error"]
                assert error["message"] and error["type"], response.text
            if i % 25 == 0:
                start = time.perf_counter()
                assert http.get(served.url + "/health").status_code == 200
                slowest_health = max(slowest_health, time.perf_counter() - start)
    assert slowest_health < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 500 * 1024
    assert post(served, {"prompt": "still here", "size": "32x32", "num_inference_steps": 1}).status_code == 200
