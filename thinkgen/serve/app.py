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

from ..validate import MAX_SEED, check_prompt
from .batcher import BATCH_BUCKETS, LATENCY_BUCKETS, Batcher, Job, QueueFull

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 1_000_000  # JSON requests
MAX_UPLOAD = 16 * 1024 * 1024  # multipart, all files together
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
    n: Annotated[int, Field(ge=1, le=MAX_N)] = 1
    size: str | None = None
    response_format: Literal["b64_json", "url"] = "b64_json"
    output_format: Literal["png", "jpeg", "webp"] = "png"
    quality: Literal["auto", "standard", "hd", "low", "medium", "high"] | None = None
    style: Literal["vivid", "natural"] | None = None
    background: Literal["auto", "opaque"] | None = None
    moderation: Literal["auto", "low"] | None = None
    output_compression: Annotated[int, Field(ge=0, le=100)] | None = None
    user: Annotated[str, Field(max_length=256)] | None = None
    stream: bool = False
    partial_images: Annotated[int, Field(ge=0, le=3)] = 0
    # thinkgen's extras (flat, as vLLM-Omni accepts them)
    think: bool = True
    seed: Annotated[int, Field(ge=0, le=2**53)] | None = None
    num_inference_steps: Annotated[int, Field(ge=1, le=200)] | None = None
    guidance_scale: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    negative_prompt: Annotated[str, Field(max_length=20_000)] | None = None


def create_app(pipe, batcher: Batcher, model_name: str = "thinkgen", timeout_s: float = 300.0) -> FastAPI:
    app = FastAPI(title="thinkgen", docs_url=None, redoc_url=None)
    app.state.batcher = batcher

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
        match = re.fullmatch(r"(\d{1,5})x(\d{1,5})", size)
        if not match:
            raise ApiError(400, f"size must be 'WIDTHxHEIGHT' (e.g. '32x32') or 'auto', got {size!r}", "size")
        width, height = int(match.group(1)), int(match.group(2))
        try:
            pipe.check_size(height, width)
        except ValueError as error:
            raise ApiError(400, str(error), "size") from None
        if width * height > pipe.limits.max_pixels:
            raise ApiError(400, f"size {size} is above the limit of {pipe.limits.max_pixels:,} pixels", "size")
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
        body = _model(await _json(request))
        return await run(to_job(body), request, body, "image_generation")

    @app.post("/v1/images/edits")
    async def edits(request: Request) -> Response:
        length = int(request.headers.get("content-length") or 0)
        if length > MAX_UPLOAD:
            raise ApiError(413, f"the upload is {length:,} bytes, above the limit of {MAX_UPLOAD:,}")
        if "multipart/form-data" not in request.headers.get("content-type", ""):
            raise ApiError(400, "an edit is a multipart/form-data request with an image and a prompt")
        try:
            form = await request.form(max_files=16, max_fields=64)
        except Exception as error:  # malformed multipart, too many parts
            raise ApiError(400, f"cannot read the form: {error}") from None
        uploads = [v for k, v in form.multi_items() if k in ("image", "image[]") and hasattr(v, "read")]
        if not uploads:
            raise ApiError(400, "an edit needs an image (field 'image' or 'image[]')", "image")
        data = await uploads[0].read(MAX_UPLOAD + 1)
        if len(data) > MAX_UPLOAD:
            raise ApiError(413, "the image is too large", "image")
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
            image = image.convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            raise ApiError(400, "the image is not a readable PNG, JPEG or WebP", "image") from None
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if key in ("image", "image[]") or key == "mask":
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
async def _json(request: Request) -> Any:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ApiError(413, f"the request body is above the limit of {MAX_BODY:,} bytes")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON") from None


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
