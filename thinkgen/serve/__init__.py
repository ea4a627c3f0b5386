"""``thinkgen serve``: an OpenAI-compatible images API, dynamic batching, and a page to try it.

``app`` has the routes, ``batcher`` the queue; nothing else in thinkgen imports this package.
"""

from __future__ import annotations

from .app import create_app
from .batcher import Batcher, Job, QueueFull
from .guard import Policy

__all__ = ["BackgroundServer", "Batcher", "Job", "Policy", "QueueFull", "create_app", "serve"]


def serve(pipe, host: str = "127.0.0.1", port: int = 8000, model_name: str = "thinkgen", capacity: int = 64,
          window_s: float = 0.02, batching: bool = True, policy: Policy | None = None) -> None:
    """Serve ``pipe`` until interrupted (``policy``: what requests may ask, and who may ask)."""
    import uvicorn

    policy = policy or Policy.for_model(pipe.defaults, host, port)
    batcher = Batcher(pipe, capacity=capacity, window_s=window_s, batching=batching)
    try:
        uvicorn.run(create_app(pipe, batcher, model_name, policy=policy), host=host, port=port, log_level="warning")
    finally:
        batcher.close()


class BackgroundServer:
    """A real server on a free loopback port, in a thread (tests and benchmarks use it); ``policy``
    options (``api_key``, ``allow_origins``, ``max_pixels``) go to :meth:`Policy.for_model`."""

    def __init__(self, pipe, model_name: str = "thinkgen", api_key: str | None = None,
                 allow_origins: tuple[str, ...] = (), max_pixels: int | None = None, **batcher_options) -> None:
        import socket
        import threading
        import time

        import uvicorn

        self.batcher = Batcher(pipe, **batcher_options)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        policy = Policy.for_model(pipe.defaults, "127.0.0.1", self.port, max_pixels, api_key, allow_origins)
        config = uvicorn.Config(create_app(pipe, self.batcher, model_name, policy=policy), host="127.0.0.1",
                                port=self.port, log_level="error")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.batcher.close()
