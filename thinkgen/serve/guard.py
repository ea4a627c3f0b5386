"""Who may ask the server for what: the checks every request passes before any work is queued.

* **Work**: an image may have at most ``max_pixels`` pixels (by default 4 x the model's own
  size, so a 1024² request to a 32² model is refused at once; ``--max-pixels`` raises it), and a
  request at most ``max_work`` pixel-steps (pixels x steps x images: by default 8 images of the
  largest size at twice the model's steps), so no single request can hold the worker for long.
* **Callers**: with an API key (``--api-key`` or ``THINKGEN_API_KEY``) the ``/v1`` routes and
  ``/metrics`` want OpenAI's ``Authorization: Bearer KEY``. The ``Host`` header must name the
  address the server is bound to (a page on another site that rebinds its DNS name to 127.0.0.1
  cannot read answers), and a browser's ``Origin`` must be the server's own unless
  ``--allow-origin`` lists it (another site's page cannot post to it).
* **Bodies**: read with a limit that holds while reading (a chunked body without a length is
  stopped at the limit, not after it); JSON routes take ``application/json`` only.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass, field

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD = frozenset({"0.0.0.0", "::", ""})


@dataclass(frozen=True)
class Policy:
    max_pixels: int  # per image
    max_work: int  # pixels x steps x images, per request
    host: str = "127.0.0.1"  # the bind address
    port: int = 8000
    api_key: str | None = None
    allowed_origins: frozenset[str] = field(default_factory=frozenset)  # "*" allows every origin

    @classmethod
    def for_model(cls, defaults: dict, host: str = "127.0.0.1", port: int = 8000, max_pixels: int | None = None,
                  api_key: str | None = None, allow_origins: tuple[str, ...] = ()) -> Policy:
        """The default ceilings from a pipeline's ``defaults`` (its size and steps)."""
        pixels = max_pixels or 4 * defaults["height"] * defaults["width"]
        work = pixels * 2 * defaults["num_inference_steps"] * 8
        origins = frozenset(origin.rstrip("/").lower() for origin in allow_origins)
        return cls(pixels, work, host, port, api_key or None, origins)

    # ------------------------------------------------------------------ work
    def check_work(self, height: int, width: int, steps: int, images: int) -> str | None:
        """Why a request is too much work, or None."""
        if height * width > self.max_pixels:
            return (f"{width}x{height} is {height * width:,} pixels, above this server's limit of "
                    f"{self.max_pixels:,} per image (the operator raises it with --max-pixels)")
        work = height * width * steps * images
        if work > self.max_work:
            return (f"{images} image(s) of {width}x{height} at {steps} steps is {work:,} pixel-steps, above "
                    f"this server's limit of {self.max_work:,} per request: ask for fewer images or steps")
        return None

    # ------------------------------------------------------------------ callers
    def refusal(self, path: str, host: str | None, origin: str | None, authorization: str | None
                ) -> tuple[int, str, str] | None:
        """(status, message, OpenAI error type) for a caller this server does not answer, or None."""
        if not self.host_allowed(host):
            return 403, f"this server does not answer for host {host!r}", "permission_error"
        if not self.origin_allowed(origin, host):
            return (403, f"requests from {origin!r} are not allowed (the operator allows an origin with "
                         "--allow-origin)", "permission_error")
        if (path.startswith("/v1/") or path == "/metrics") and not self.authorized(authorization):
            return 401, "a valid API key is needed: Authorization: Bearer KEY", "invalid_request_error"
        return None

    def authorized(self, authorization: str | None) -> bool:
        if self.api_key is None:
            return True
        scheme, _, token = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode())

    def host_allowed(self, host_header: str | None) -> bool:
        """The Host header names the bound address (any loopback name for a loopback bind), on its
        port. A server bound to every interface takes any name (it is meant to be reached by many)."""
        if self.host in WILDCARD or "*" in self.allowed_origins:
            return True
        if not host_header:
            return False
        name, port = split_host(host_header)
        if port is not None and port != self.port:
            return False
        return name in self._names()

    def origin_allowed(self, origin: str | None, host_header: str | None) -> bool:
        """No Origin (not a browser, or a same-origin GET), the server's own, or one listed."""
        if origin is None:
            return True
        origin = origin.rstrip("/").lower()
        if "*" in self.allowed_origins or origin in self.allowed_origins:
            return True
        scheme, _, rest = origin.partition("://")
        if scheme not in ("http", "https") or not rest:
            return False
        name, port = split_host(rest)
        port = port if port is not None else (443 if scheme == "https" else 80)
        if self.host in WILDCARD:  # the page this server sent, under whatever name it was reached by
            own, own_port = split_host(host_header or "")
            return name == own and port == (own_port if own_port is not None else port)
        return port == self.port and name in self._names()

    def _names(self) -> set[str]:
        bound = self.host.strip("[]").lower()
        return set(LOOPBACK_NAMES) | {bound} if _is_loopback(bound) else {bound}


def split_host(value: str) -> tuple[str, int | None]:
    """``"name:port"`` / ``"[::1]:port"`` / ``"name"`` -> (lower-case name, port or None); a bad port is -1."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, _, port_text = value.partition(":")
    else:
        name, port_text = value, ""
    if not port_text:
        return name, None
    return name, int(port_text) if port_text.isascii() and port_text.isdigit() else -1


def _is_loopback(name: str) -> bool:
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
