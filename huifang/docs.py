"""The API documentation pages, Swagger UI at ``/docs`` and ReDoc at ``/redoc``, with their
scripts and styles served by this process from the ``fastapi-offline`` wheel, never a CDN.

They work on a machine without internet access, and their CSP allows nothing from
elsewhere: scripts from here, plus the one inline script that starts Swagger UI, by hash.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from huifang.headers import csp

ASSETS = "/docs/assets"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _docs_csp(html: str) -> str:
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in _INLINE_SCRIPT.findall(html)
    )
    return csp(
        {
            "default-src": "'none'",
            "script-src": f"'self' {hashes}".strip(),
            # Both UIs set styles from their scripts; ReDoc also runs its search in a worker.
            "style-src": "'self' 'unsafe-inline'",
            "img-src": "'self' data:",
            "font-src": "'self' data:",
            "connect-src": "'self'",
            "worker-src": "blob:",
            "form-action": "'self'",
            "base-uri": "'none'",
            "frame-ancestors": "'none'",
        }
    )


def _page(made: HTMLResponse) -> HTMLResponse:
    html = bytes(made.body).decode()
    return HTMLResponse(html, headers={"Content-Security-Policy": _docs_csp(html)})


def add_docs(app: FastAPI) -> None:
    """Serve the docs pages and their assets (create the app with ``docs_url=None``,
    ``redoc_url=None``)."""
    static = Path(fastapi_offline.__file__).parent / "static"
    app.mount(ASSETS, StaticFiles(directory=static), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _page(
            get_swagger_ui_html(
                openapi_url=openapi_url,
                title=f"{app.title} – API",
                swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSETS}/swagger-ui.css",
                swagger_favicon_url=f"{ASSETS}/favicon.png",
                oauth2_redirect_url=None,
                # The validator badge is an image from swagger.io: nothing leaves for elsewhere.
                swagger_ui_parameters={"validatorUrl": None},
            )
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return _page(
            get_redoc_html(
                openapi_url=openapi_url,
                title=f"{app.title} – API",
                redoc_js_url=f"{ASSETS}/redoc.standalone.js",
                redoc_favicon_url=f"{ASSETS}/favicon.png",
                with_google_fonts=False,
            )
        )
