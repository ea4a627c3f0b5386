"""An OpenAI-compatible images API over a pipeline, with the thinking in every answer.

    POST /v1/images/generations   JSON, as OpenAI's (``images.generate``), plus flat extras:
                                  think, seed, num_inference_steps, guidance_scale, negative_prompt
    POST /v1/images/edits         multipart, ``image`` or ``image[]`` (``images.edit``)
    GET  /health, /v1/models, /metrics (Prometheus text), /  (a page to try it)

Each ``data[]`` item carries ``b64_json``, ``revised_prompt`` (the rewrite) and ``reasoning``
(the thinking trace). ``stream: true`` answers with server-sent events in OpenAI's shape
(``image_generation.partial_image``, ``image_generation.completed``; ``image_edit.*`` for edits)
plus ``image_generation.reasoning.delta`` events while the thinker writes. Every mistake is a
4xx answer in OpenAI's error shape; a full queue is 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import queue
import re
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import Headers

from ..validate import MAX_SEED, check_prompt
from .batcher import BATCH_BUCKETS, LATENCY_BUCKETS, Batcher, Job, QueueFull
from .guard import Policy

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 1_000_000  # JSON requests
MAX_UPLOAD = 16 * 1024 * 1024  # multipart, all files together
MAX_UPLOAD_PIXELS = 40_000_000  # a source image, read from its header before it is decoded
MAX_N = 8


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.kind, self.headers = status, message, param, kind, headers


def error_response(error: ApiError) -> JSONResponse:
    body = {"error": {"message": error.message, "type": error.kind, "param": error.param, "code": None}}
    return JSONResponse(body, status_code=error.status, headers=error.headers)


class ImageRequest(BaseModel):
    """OpenAI's image request fields, and thinkgen's flat extras; anything else is an error."""

    model_config = ConfigDict(extra="forbid", strict=True)
    prompt: Annotated[str, Field(min_length=1)]
    model: str | None = None
    n: Annotated[int, Field(ge=1, le=MAX_N)] | None = 1  # null: the default, as OpenAI takes it
    size: str | None = None
    response_format: Literal["b64_json", "url"] | None = "b64_json"
    output_format: Literal["png", "jpeg", "webp"] | None = "png"
    quality: Literal["auto", "standard", "hd", "low", "medium", "high"] | None = None
    style: Literal["vivid", "natural"] | None = None
    background: Literal["auto", "opaque"] | None = None
    moderation: Literal["auto", "low"] | None = None
    output_compression: Annotated[int, Field(ge=0, le=100)] | None = None
    user: Annotated[str, Field(max_length=256)] | None = None
    stream: bool | None = False
    partial_images: Annotated[int, Field(ge=0, le=3)] | None = 0
    # thinkgen's extras (flat, as vLLM-Omni accepts them)
    think: bool = True
    seed: Annotated[int, Field(ge=0, le=2**53)] | None = None
    num_inference_steps: Annotated[int, Field(ge=1, le=200)] | None = None
    guidance_scale: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    negative_prompt: Annotated[str, Field(max_length=20_000)] | None = None


    def model_post_init(self, context: Any) -> None:  # OpenAI's null means "the default"
        for name in ("n", "response_format", "output_format", "stream", "partial_images"):
            if getattr(self, name) is None:
                setattr(self, name, type(self).model_fields[name].default)


class Callers:
    """ASGI middleware: Host, Origin and API key (:class:`~thinkgen.serve.guard.Policy`), checked
    before a route reads anything. Plain ASGI, so routes still see their client leave."""

    def __init__(self, app, policy: Policy) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            refusal = self.policy.refusal(scope["path"], headers.get("host"), headers.get("origin"),
                                          headers.get("authorization"))
            if refusal is not None:
                status, message, kind = refusal
                extra = {"WWW-Authenticate": "Bearer"} if status == 401 else None
                await error_response(ApiError(status, message, kind=kind, headers=extra))(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(pipe, batcher: Batcher, model_name: str = "thinkgen", timeout_s: float = 300.0,
               policy: Policy | None = None) -> FastAPI:
    app = FastAPI(title="thinkgen", docs_url=None, redoc_url=None)
    app.state.batcher = batcher
    policy = policy or Policy.for_model(pipe.defaults)
    app.state.policy = policy

    app.add_middleware(Callers, policy=policy)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(404)
    async def not_found(request: Request, error: Exception) -> JSONResponse:
        return error_response(ApiError(404, f"no route {request.method} {request.url.path}"))

    @app.exception_handler(405)
    async def wrong_method(request: Request, error: Exception) -> JSONResponse:
        return error_response(ApiError(405, f"{request.method} is not allowed on {request.url.path}"))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        return error_response(ApiError(500, f"internal error: {type(error).__name__}", kind="server_error"))

    # ------------------------------------------------------------------ requests into jobs
    def parse_size(size: str | None) -> tuple[int, int]:
        if size in (None, "auto"):
            return pipe.defaults["height"], pipe.defaults["width"]
        match = re.fullmatch(r"([0-9]{1,5})x([0-9]{1,5})", size)
        if not match:
            raise ApiError(400, f"size must be 'WIDTHxHEIGHT' (e.g. '32x32') or 'auto', got {size!r}", "size")
        width, height = int(match.group(1)), int(match.group(2))
        try:
            pipe.check_size(height, width)
        except ValueError as error:
            raise ApiError(400, str(error), "size") from None
        if width * height > min(pipe.limits.max_pixels, policy.max_pixels):
            raise ApiError(400, policy.check_work(height, width, 1, 1)
                           or f"size {size} is above the limit of {pipe.limits.max_pixels:,} pixels", "size")
        return height, width

    def to_job(body: ImageRequest, image: Image.Image | None = None) -> Job:
        if body.model not in (None, model_name):
            raise ApiError(404, f"model {body.model!r} is not served here; it serves {model_name!r}", "model",
                           kind="not_found_error")
        if body.response_format == "url":
            raise ApiError(400, "response_format 'url' is not supported: images are returned inline (b64_json)",
                           "response_format")
        for name in ("prompt", "negative_prompt"):
            try:
                if getattr(body, name) is not None:
                    check_prompt(getattr(body, name), pipe.limits.max_prompt_chars)
            except ValueError as error:
                raise ApiError(400, str(error), name) from None
        if not body.prompt.strip():
            raise ApiError(400, "the prompt is empty", "prompt")
        height, width = parse_size(body.size)
        steps = body.num_inference_steps or pipe.defaults["num_inference_steps"]
        cfg = pipe.defaults["guidance_scale"] if body.guidance_scale is None else body.guidance_scale
        seed = body.seed if body.seed is not None else int(time.time_ns() % 2**31)
        if seed + body.n > MAX_SEED:
            raise ApiError(400, "seed is too large", "seed")
        too_much = policy.check_work(height, width, steps, body.n)
        if too_much:  # refused before it is queued: no request holds the worker for long
            raise ApiError(400, too_much, "num_inference_steps" if steps > pipe.defaults["num_inference_steps"] else "n")
        return Job(body.prompt, body.n, height, width, steps, cfg, seed, body.think, body.negative_prompt, image,
                   partial_images=body.partial_images)

    async def run(job: Job, request: Request, body: ImageRequest, kind: str) -> Response:
        if body.stream:
            return stream(job, request, body, kind)
        try:
            batcher.submit(job)
        except QueueFull as error:
            raise ApiError(429, f"{error}; try again shortly", kind="rate_limit_error",
                           headers={"Retry-After": "1"}) from None
        deadline = time.monotonic() + timeout_s
        while not job.done.is_set():
            if await request.is_disconnected():
                batcher.cancel(job)
                return Response(status_code=499)
            if time.monotonic() > deadline:
                batcher.cancel(job)
                raise ApiError(504, f"the request took longer than {timeout_s:.0f} s", kind="timeout_error")
            await asyncio.sleep(0.01)
        if job.error is not None:
            if isinstance(job.error, ValueError):
                raise ApiError(400, str(job.error))
            raise ApiError(500, f"generation failed: {type(job.error).__name__}", kind="server_error")
        return JSONResponse({"created": int(time.time()), "data": [item(job, image, body) for image in job.images]})

    def stream(job: Job, request: Request, body: ImageRequest, kind: str) -> Response:
        events: queue.Queue[dict[str, Any]] = queue.Queue()
        job.events = events.put
        try:
            batcher.submit(job)
        except QueueFull as error:
            raise ApiError(429, f"{error}; try again shortly", kind="rate_limit_error",
                           headers={"Retry-After": "1"}) from None

        async def sse():
            created = int(time.time())
            try:
                deadline = time.monotonic() + timeout_s
                while True:
                    try:
                        event = events.get_nowait()
                    except queue.Empty:
                        if job.done.is_set() and events.empty():
                            break
                        if time.monotonic() > deadline:
                            batcher.cancel(job)
                            yield _sse("error", {"type": "error", "error": {"message": "timed out"}})
                            return
                        await asyncio.sleep(0.01)
                        continue
                    if event["type"] == "reasoning.delta":
                        yield _sse(f"{kind}.reasoning.delta", {"type": f"{kind}.reasoning.delta",
                                                               "delta": event["delta"]})
                    else:
                        for index, image in enumerate(event["images"][:1]):
                            yield _sse(f"{kind}.partial_image", {
                                "type": f"{kind}.partial_image", "b64_json": _encode(image, body.output_format),
                                "created_at": created, "size": f"{job.width}x{job.height}",
                                "output_format": body.output_format, "partial_image_index": event["index"] + index})
                if job.error is not None:
                    yield _sse("error", {"type": "error", "error": {"message": str(job.error)}})
                    return
                for image in job.images:
                    yield _sse(f"{kind}.completed", {
                        "type": f"{kind}.completed", "created_at": created, "size": f"{job.width}x{job.height}",
                        "output_format": body.output_format, **item(job, image, body),
                        "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}})
            finally:
                if not job.done.is_set():  # the client went away mid-stream
                    batcher.cancel(job)

        return StreamingResponse(sse(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # ------------------------------------------------------------------ routes
    @app.post("/v1/images/generations")
    async def generations(request: Request) -> Response:
        if _media_type(request) != "application/json":
            raise ApiError(415, "the body must be JSON, sent as Content-Type: application/json")
        body = _model(_parse_json(await _read_body(request, MAX_BODY)))
        return await run(to_job(body), request, body, "image_generation")

    @app.post("/v1/images/edits")
    async def edits(request: Request) -> Response:
        if _media_type(request) != "multipart/form-data":
            raise ApiError(415, "an edit is a multipart/form-data request with an image and a prompt")
        await _read_body(request, MAX_UPLOAD)  # the whole upload, bounded while it arrives
        try:
            form = await request.form(max_files=16, max_fields=64)
        except Exception as error:  # malformed multipart, too many parts
            raise ApiError(400, f"cannot read the form: {' '.join(str(error).split())[:200]}") from None
        uploads = [v for k, v in form.multi_items() if k in ("image", "image[]") and hasattr(v, "read")]
        if not uploads:
            raise ApiError(400, "an edit needs an image (field 'image' or 'image[]')", "image")
        if len(uploads) > 1:
            raise ApiError(400, f"this server edits from one image; got {len(uploads)}", "image")
        if "mask" in form:
            raise ApiError(400, "mask is not supported: the instruction says what to change", "mask")
        image = await asyncio.to_thread(_decode_upload, await uploads[0].read())  # off the event loop
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if key in ("image", "image[]"):
                continue
            if not isinstance(value, str):
                raise ApiError(400, f"field {key!r} must be text", key)
            fields[key] = _coerce(key, value)
        body = _model(fields)
        height, width = parse_size(body.size) if body.size else (pipe.defaults["height"], pipe.defaults["width"])
        job = to_job(body, image.resize((width, height)))
        return await run(job, request, body, "image_edit")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "queue": batcher.depth}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "thinkgen"}]}

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(_prometheus(batcher), media_type="text/plain; version=0.0.4")

    @app.get("/")
    async def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text())

    return app


# ----------------------------------------------------------------------------- helpers
def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it passes ``limit`` bytes, whatever Content-Length says;
    kept on the request, so the form parser reads it from memory."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, f"the request body is {int(length):,} bytes, above the limit of {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request body is above the limit of {limit:,} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # starlette's Request.stream() and form() read a body already read from here
    return body


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON") from None
    except RecursionError:
        raise ApiError(400, "the request body is nested too deeply") from None


def _decode_upload(data: bytes) -> Image.Image:
    """An uploaded image, its size read from the header and checked before any pixel is decoded."""
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_UPLOAD_PIXELS:
            raise ApiError(400, f"the image is {image.width}x{image.height} pixels, above the limit of "
                                f"{MAX_UPLOAD_PIXELS:,}", "image")
        image.load()
        return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise ApiError(400, "the image is not a readable PNG, JPEG or WebP", "image") from None


def _model(data: Any) -> ImageRequest:
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    try:
        return ImageRequest.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise ApiError(400, f"{param}: {first['msg']}" if param else first["msg"], param) from None


BOOLEAN = {"true": True, "false": False, "1": True, "0": False}
INTEGERS = {"n", "seed", "num_inference_steps", "partial_images", "output_compression"}


def _coerce(key: str, value: str) -> Any:
    """Multipart fields are text: turn the numeric and boolean ones into their types."""
    try:
        if key in ("stream", "think"):
            return BOOLEAN[value.lower()]
        if key in INTEGERS:
            return int(value)
        if key == "guidance_scale":
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
    except (KeyError, ValueError):
        raise ApiError(400, f"field {key!r} has a bad value: {value[:40]!r}", key) from None
    return value


def _encode(image: Image.Image, output_format: str) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format={"jpeg": "JPEG", "webp": "WEBP"}.get(output_format, "PNG"))
    return base64.b64encode(buffer.getvalue()).decode()


def item(job: Job, image: Image.Image, body: ImageRequest) -> dict[str, Any]:
    return {"b64_json": _encode(image, body.output_format), "revised_prompt": job.rewritten,
            "reasoning": job.reasoning}


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def _prometheus(batcher: Batcher) -> str:
    stats = batcher.stats
    lines = ["# HELP thinkgen_queue_depth Requests waiting or running.", "# TYPE thinkgen_queue_depth gauge",
             f"thinkgen_queue_depth {batcher.depth}",
             "# HELP thinkgen_images_total Images served.", "# TYPE thinkgen_images_total counter",
             f"thinkgen_images_total {stats.images}",
             "# HELP thinkgen_rejected_total Requests refused because the queue was full.",
             "# TYPE thinkgen_rejected_total counter", f"thinkgen_rejected_total {stats.rejected}",
             "# HELP thinkgen_cancelled_total Requests whose client went away.",
             "# TYPE thinkgen_cancelled_total counter", f"thinkgen_cancelled_total {stats.cancelled}",
             "# HELP thinkgen_retried_total Requests drawn again alone after their batch failed.",
             "# TYPE thinkgen_retried_total counter", f"thinkgen_retried_total {stats.retried}",
             "# HELP thinkgen_batch_size Requests per batch.", "# TYPE thinkgen_batch_size histogram"]
    lines += [f'thinkgen_batch_size_bucket{{le="{b}"}} {c}' for b, c in zip(BATCH_BUCKETS, stats.batch_buckets, strict=True)]
    lines += [f'thinkgen_batch_size_bucket{{le="+Inf"}} {stats.batches}',
              f"thinkgen_batch_size_sum {stats.batched_requests}", f"thinkgen_batch_size_count {stats.batches}",
              "# HELP thinkgen_latency_seconds Request latency.", "# TYPE thinkgen_latency_seconds histogram"]
    lines += [f'thinkgen_latency_seconds_bucket{{le="{b}"}} {c}'
              for b, c in zip(LATENCY_BUCKETS, stats.latency_buckets, strict=True)]
    lines += [f'thinkgen_latency_seconds_bucket{{le="+Inf"}} {stats.latency_count}',
              f"thinkgen_latency_seconds_sum {stats.latency_sum:.6f}",
              f"thinkgen_latency_seconds_count {stats.latency_count}"]
    return "\n".join(lines) + "\n"
