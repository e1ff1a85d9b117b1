"""Security headers on every answer, decided in one place.

Every HTML page gets a Content-Security-Policy, ``X-Content-Type-Options: nosniff``, a
referrer policy and frame protection (``X-Frame-Options`` for old browsers, CSP
``frame-ancestors`` for the rest); every other answer gets ``nosniff``. A route that sets a
header itself keeps its own (the report page's CSP is tighter than the default, the API
docs need their scripts); everything it leaves out comes from here.

The referrer policy is ``no-referrer``: the links customers open carry their secret in the
path (``/r/{token}``, ``/b/{token}``), and nothing of ours needs the Referer to work.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def csp(directives: Mapping[str, str]) -> str:
    """A Content-Security-Policy header value from its directives, in order."""
    return "; ".join(f"{name} {value}".strip() for name, value in directives.items())


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, as CSP source lists name it."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def page_directives(public_url: str) -> dict[str, str]:
    """The default for our pages: no script, nothing from elsewhere, not framed.

    Pictures and video also come from ``public_url``, which pages use for absolute links to
    our own files (the verification page's photo) and which may not be the host the page
    was opened at (``127.0.0.1`` against ``localhost``).
    """
    ours = f"'self' {origin(public_url)}"
    return {
        "default-src": "'none'",
        "img-src": f"{ours} data:",
        "media-src": ours,
        "style-src": "'unsafe-inline'",
        "form-action": "'self'",
        "base-uri": "'none'",
        "frame-ancestors": "'none'",
    }


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, page_csp: str) -> None:
        self.app = app
        self.html_headers = (
            (b"content-security-policy", page_csp.encode()),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                if b"x-content-type-options" not in present:
                    headers.append((b"x-content-type-options", b"nosniff"))
                html = any(
                    name.lower() == b"content-type" and value.startswith(b"text/html")
                    for name, value in headers
                )
                if html:
                    headers.extend(h for h in self.html_headers if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
