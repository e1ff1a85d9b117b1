"""The HTTP application: composes each domain's router, errors, logging and metrics, the
body caps and the security headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import huifang
from alerts.api import router as alerts_router
from bookings.api import router as bookings_router
from bookings.desk_api import router as booking_desk_router
from bookings.pages import public_router as bookings_public_router
from campaigns.api import router as campaigns_router
from campaigns.office_api import router as campaigns_office_router
from compliance.api import router as compliance_router
from compliance.console_api import router as compliance_console_router
from customers.api import router as customers_router
from customers.console_api import router as customers_console_router
from huifang import deps, ops, throttle
from huifang import openapi as api_document
from huifang.bodies import STREAMED, BodyLimit, BodyLimitMiddleware, KeyRequired
from huifang.db import Database
from huifang.deps import MISSING_KEY
from huifang.docs import add_docs
from huifang.errors import HuifangError
from huifang.headers import SecurityHeadersMiddleware, csp, page_directives
from huifang.logs import RequestIdMiddleware
from huifang.metrics import MetricsMiddleware
from huifang.settings import get_settings
from media.api import public_router as media_public_router
from media.api import router as media_router
from media.api import staff_router as media_staff_router
from media.office_api import router as media_office_router
from media.resumable_api import router as resumable_router
from messaging import webhooks
from messaging.api import public_router as messaging_public_router
from messaging.api import router as messaging_router
from messaging.office_api import router as messaging_office_router
from messaging.thread_api import router as threads_router
from messaging.webhooks import router as messaging_webhooks_router
from office import alerts as office_alerts
from office import auth as office_auth
from office import campaigns as office_campaigns
from office import compliance as office_compliance
from office import customers as office_customers
from office import inbox as office_inbox
from office import privacy as office_privacy
from office import ratings as office_ratings
from office import settings as office_settings
from office import staff as staff_pages
from office import today as office_today
from office import users as office_users
from office import visits as office_visits
from office import web as office
from privacy.api import router as privacy_router
from reports.api import public_router as reports_public_router
from reports.api import router as reports_router
from reports.api import send_router as reports_send_router
from staff.api import router as staff_day_router
from tenancy import service as tenancy
from tenancy.api import router as tenancy_router
from today.api import router as today_router
from visits.api import staff_router, visit_router

# A JSON request of the API is a few KB; a megabyte leaves room and bounds what a stranger
# can make us read before the key is checked.
JSON_MAX_BYTES = 1024 * 1024
MULTIPART_SLACK = 64 * 1024  # a multipart form's boundaries and small fields around the file


def _printable(part: Any) -> str | int:
    """A location part that JSON can carry: a key may hold a lone surrogate."""
    if isinstance(part, int):
        return part
    return str(part).encode("utf-8", "backslashreplace").decode("utf-8")


def _loc(error: Any) -> list[str | int]:
    return [_printable(part) for part in error.get("loc", ())]


def _field(loc: list[str | int]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "request"


def _validation_sentence(exc: RequestValidationError) -> str:
    sentences = []
    for error in exc.errors()[:5]:
        message = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
        sentences.append(f"{_field(_loc(error))}: {_printable(message)}")
    return "; ".join(sentences) + "."


class HuifangAPI(FastAPI):
    """FastAPI, with the OpenAPI document corrected to match the answers (huifang.openapi)."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = api_document.document(self)
        return self.openapi_schema


def create_app(*, database: Database | None = None, lifespan: Any = None) -> FastAPI:
    """The FastAPI app. ``database`` overrides the one from settings (tests)."""

    @asynccontextmanager
    async def default_lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield

    app = HuifangAPI(
        title="Huifang",
        version=huifang.__version__,
        description="Follow-up messaging for home-service companies.",
        lifespan=lifespan or default_lifespan,
        # Before any other check: text no column can hold is refused where it is read.
        dependencies=[Depends(deps.refuse_unstorable_text)],
        docs_url=None,
        redoc_url=None,  # add_docs serves them without a CDN
    )
    app.state.database = database

    @app.exception_handler(HuifangError)
    async def huifang_error(_: Request, exc: HuifangError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    app.add_exception_handler(throttle.TooManyRequests, throttle.too_many_page)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # A sentence for people, and the structured list for programs.
        return JSONResponse(
            {
                "detail": _validation_sentence(exc),
                "errors": [
                    {"loc": _loc(e), "msg": _printable(e.get("msg")), "type": e.get("type")}
                    for e in exc.errors()
                ],
            },
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 404 and detail == "Not Found":
            detail = "There is nothing at this address; see /docs for the API."
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            detail = (
                "The request body cannot be read; send JSON in UTF-8 (or the form this "
                "address takes), with a Content-Type that says which."
            )
        if exc.status_code == 405 and detail == "Method Not Allowed":
            detail = "This address does not take that method; see /docs for the API."
        return JSONResponse(
            {"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    # Webhooks first: routes are matched in order, and providers post in bursts (the opt-out
    # webhook must answer within milliseconds; the /v1 routes are walked after it).
    app.include_router(messaging_webhooks_router)
    # Each router straight into the app under /v1: FastAPI rebuilds every route it
    # includes, so a /v1 router between them would double the cost of making an app.
    for router in (
        tenancy_router,
        customers_router,
        customers_console_router,
        staff_router,
        media_staff_router,
        visit_router,
        media_router,
        resumable_router,
        staff_day_router,
        reports_router,
        compliance_router,
        compliance_console_router,
        messaging_router,
        bookings_router,
        reports_send_router,
        campaigns_router,
        threads_router,
        booking_desk_router,
        today_router,
        alerts_router,
        campaigns_office_router,
        media_office_router,
        messaging_office_router,
        privacy_router,
    ):
        app.include_router(router, prefix="/v1")
    app.include_router(media_public_router)
    app.include_router(reports_public_router)
    app.include_router(messaging_public_router)
    app.include_router(bookings_public_router)
    app.include_router(ops.router)
    office.install(
        app,
        office_auth.router,
        office_today.router,
        office_inbox.router,
        office_ratings.router,
        office_settings.router,
        office_users.router,
        office_alerts.router,
        office_campaigns.router,
        office_visits.router,
        office_customers.router,
        office_compliance.router,
        office_privacy.router,
    )
    staff_pages.install(app)  # the staff phone: /staff/ and its uploads
    add_docs(app)

    settings = get_settings()
    app.add_middleware(
        BodyLimitMiddleware,
        limits=[
            BodyLimit("/hooks/", webhooks.MAX_BODY_BYTES, "A webhook"),
            # These stream their upload and count it against their own caps as it arrives.
            BodyLimit("/v1/visits/{visit_id}/media", STREAMED),
            BodyLimit("/v1/uploads/{upload_id}", STREAMED),  # tus pieces, held to their file
            BodyLimit("/staff/uploads/{upload_id}", STREAMED),  # the same, from the phone
            BodyLimit("/staff/visits/{visit_id}/upload", STREAMED),  # the phone's form, one file
            BodyLimit("/v1/watermark/logo", STREAMED),
            BodyLimit("/v1/staff/{staff_id}/photo", STREAMED),
            BodyLimit(
                "/v1/customers/import",
                settings.import_max_bytes,
                "A customer list",
                slack=MULTIPART_SLACK,
            ),
            BodyLimit(
                "/v1/import-jobs",
                settings.import_max_bytes,
                "A customer list",
                slack=MULTIPART_SLACK,
            ),
        ],
        default=BodyLimit("/", JSON_MAX_BYTES, "A request"),
        key=KeyRequired("/v1/", tenancy.KEY_PREFIX, MISSING_KEY),
    )
    app.add_middleware(
        SecurityHeadersMiddleware, page_csp=csp(page_directives(settings.public_url))
    )
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestIdMiddleware)
    # Outside the others: the opt-out webhook's usual request is answered without them.
    app.add_middleware(webhooks.TwilioInboundFastPath)
    return app
