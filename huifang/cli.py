"""The ``huifang`` command: serve, work, schedule, migrate, and the office's everyday tasks."""

from __future__ import annotations

import csv
import sys
import uuid
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from huifang.db import get_database
from huifang.errors import HuifangError
from huifang.settings import get_settings

app = typer.Typer(
    help="Huifang (回访): follow-up messaging for home-service companies.",
    no_args_is_help=True,
    add_completion=False,
)
tenant_app = typer.Typer(help="Companies and their API keys.", no_args_is_help=True)
customers_app = typer.Typer(help="Customer lists.", no_args_is_help=True)
user_app = typer.Typer(
    help="People who sign in to the console and the staff page.", no_args_is_help=True
)
app.add_typer(user_app, name="user")
app.add_typer(tenant_app, name="tenant")
app.add_typer(customers_app, name="customers")
db_app = typer.Typer(help="The database: roles for row-level security.", no_args_is_help=True)
app.add_typer(db_app, name="db")

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _migrate() -> None:
    from huifang.migrate import upgrade

    upgrade(get_settings().database_url)


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (Alembic upgrade to head)."""
    _migrate()
    console.print(f"database is up to date: {_safe_url()}")


@db_app.command("create-app-role")
def create_app_role(
    password: Annotated[
        str,
        typer.Option(
            envvar="HUIFANG_DATABASE_APP_PASSWORD",
            prompt=True,
            hide_input=True,
            help="The new role's password (or HUIFANG_DATABASE_APP_PASSWORD).",
        ),
    ],
    role: Annotated[str, typer.Option(help="The role's name.")] = "huifang_app",
) -> None:
    """Create the application's PostgreSQL role, bound by row-level security.

    Run it as the tables' owner (HUIFANG_DATABASE_URL) after `huifang migrate`; then give
    the API and the workers the printed HUIFANG_DATABASE_APP_URL.
    """
    from sqlalchemy.engine import make_url

    from huifang import rls

    settings = get_settings()
    if settings.is_sqlite:
        raise _fail("row-level security needs PostgreSQL; HUIFANG_DATABASE_URL is SQLite")
    if len(password) < 12:
        raise _fail("use a password of at least 12 characters for the app role")
    try:
        url = rls.create_app_role(settings.database_url, role=role, password=password)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    shown = make_url(url).render_as_string(hide_password=True)
    console.print(f"role {role} is ready; give the API and the workers (with its password):")
    console.print(f"HUIFANG_DATABASE_APP_URL={shown}")


def _safe_url() -> str:
    from sqlalchemy.engine import make_url

    return make_url(get_settings().database_url).render_as_string(hide_password=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Run the API; in embedded mode also the worker and the scheduler, in this process."""
    import uvicorn

    settings = get_settings()
    if settings.embedded:
        _migrate()  # one process owns the SQLite file: migrate on start
    mode = "embedded (SQLite, in-process worker)" if settings.embedded else "distributed"
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    console.print(f"Huifang is starting in {mode} mode.")
    console.print(
        f"Open http://{shown}:{port}/office/ for the office console (sign in with "
        f"a link from `huifang user create` or the demo), http://{shown}:{port}/docs "
        f"for the API, http://{shown}:{port}/healthz for health."
    )
    uvicorn.run(
        "huifang.asgi:app",
        host=host,
        port=port,
        log_config=None,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


def _require_cjk_font() -> None:
    """The media worker writes Chinese watermarks: without a CJK font it must not start."""
    from media.fonts import FontMissing, ensure_cjk_font

    try:
        font = ensure_cjk_font()
    except FontMissing as exc:
        raise _fail(str(exc)) from None
    err.print(f"watermark font: {font.path} (from {font.source})")


def _require_redis(what: str) -> None:
    if get_settings().embedded:
        raise _fail(
            f"`huifang {what}` is for distributed mode: set HUIFANG_REDIS_URL "
            "(e.g. redis://localhost:6379/0). In embedded mode `huifang serve` runs it for you."
        )


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option("-Q", "--queues", help="Comma-separated: default, media, messaging.")
    ] = "default,media,messaging",
    concurrency: Annotated[int, typer.Option("-c", "--concurrency")] = 2,
    loglevel: Annotated[str, typer.Option("-l", "--loglevel")] = "INFO",
) -> None:
    """Run a Celery worker on Redis (distributed mode)."""
    from huifang.worker import QUEUES, celery_app, load_tasks

    _require_redis("worker")
    unknown = set(queues.split(",")) - set(QUEUES)
    if unknown:
        raise _fail(f"unknown queue {', '.join(sorted(unknown))}; choose from {', '.join(QUEUES)}")
    if "media" in queues.split(","):
        _require_cjk_font()
    load_tasks()
    celery_app.worker_main(
        [
            "worker",
            "-Q",
            queues,
            "-c",
            str(concurrency),
            "-l",
            loglevel,
            "--without-gossip",
            "--without-mingle",
        ]
    )


@app.command()
def beat(loglevel: Annotated[str, typer.Option("-l", "--loglevel")] = "INFO") -> None:
    """Run the scheduler that sends the periodic ticks (distributed mode; run exactly one)."""
    from huifang.worker import celery_app, load_tasks

    _require_redis("beat")
    load_tasks()
    celery_app.start(["beat", "-l", loglevel, "--scheduler", "celery.beat:Scheduler"])


@tenant_app.command("create")
def tenant_create(
    name: Annotated[str, typer.Option(help="Company name, e.g. 洁家家政.")],
    signature: Annotated[str, typer.Option(help="SMS signature, e.g. 【洁家家政】.")],
    timezone: Annotated[str, typer.Option(help="IANA time zone.")] = "Asia/Shanghai",
    region: Annotated[str, typer.Option(help="Phone region for numbers without +code.")] = "CN",
) -> None:
    """Create a company and print its first API key (shown only once)."""
    from tenancy import service as tenancy

    try:
        with get_database().session() as session:
            tenant = tenancy.create_tenant(
                session=session,
                name=name,
                signature=signature,
                timezone=timezone,
                phone_region=region,
            )
            _, key = tenancy.create_api_key(session=session, tenant=tenant, name="first")
            tenant_id, shown = tenant.id, tenant.sms_signature
    except HuifangError as exc:
        raise _fail(exc.detail) from None
    err.print(f"created company {tenant_id} {name} {shown}; its API key (shown only now):")
    print(key)


@tenant_app.command("list")
def tenant_list() -> None:
    """List the companies."""
    from sqlalchemy import select

    from tenancy.models import Tenant

    table = Table("id", "name", "signature", "time zone", "region")
    with get_database().session() as session:
        for t in session.scalars(select(Tenant).order_by(Tenant.id)):
            table.add_row(str(t.id), t.name, t.sms_signature, t.timezone, t.phone_region)
    console.print(table)


@tenant_app.command("new-key")
def tenant_new_key(
    tenant: Annotated[str | None, typer.Option(help="Company id or name.")] = None,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "cli",
) -> None:
    """Create another API key for a company and print it."""
    from tenancy import service as tenancy

    try:
        with get_database().session() as session:
            row = tenancy.find_tenant(session=session, ref=tenant)
            _, key = tenancy.create_api_key(session=session, tenant=row, name=name)
    except HuifangError as exc:
        raise _fail(exc.detail) from None
    print(key)


@user_app.command("create")
def user_create(
    role: Annotated[str, typer.Option(help="owner, office or staff.")],
    name: Annotated[str, typer.Option(help="The person's name, e.g. 王芳.")],
    phone: Annotated[str, typer.Option(help="Their mobile number: they sign in with it.")],
    tenant: Annotated[str | None, typer.Option(help="Company id or name.")] = None,
    staff_id: Annotated[
        int | None,
        typer.Option(help="For a staff user: their staff card (a new card when omitted)."),
    ] = None,
) -> None:
    """Add a user and print a one-time sign-in link (24 h): office users set a password
    there, staff open it on their phone."""
    from accounts import service as accounts
    from tenancy import service as tenancy

    try:
        with get_database().session() as session:
            row = tenancy.find_tenant(session=session, ref=tenant)
            made = accounts.create_user(
                session=session, tenant=row, role=role, name=name, phone=phone, staff_id=staff_id
            )
            user_id = made.user.id
    except HuifangError as exc:
        raise _fail(exc.detail) from None
    err.print(f"created user {user_id} ({role}) {name}; their sign-in link (valid 24 h, once):")
    print(accounts.sign_in_url(made.link_token))


@user_app.command("list")
def user_list(
    tenant: Annotated[str | None, typer.Option(help="Company id or name.")] = None,
) -> None:
    """List a company's users."""
    from accounts import service as accounts
    from tenancy import service as tenancy

    table = Table("id", "name", "phone", "role", "staff card", "state")
    try:
        with get_database().session() as session:
            row = tenancy.find_tenant(session=session, ref=tenant)
            for u in accounts.list_users(session=session, tenant_id=row.id):
                state = (
                    "disabled"
                    if u.disabled_at
                    else "active"
                    if u.password_hash or u.role == "staff"
                    else "no password yet"
                )
                table.add_row(str(u.id), u.name, u.phone, u.role, str(u.staff_id or ""), state)
    except HuifangError as exc:
        raise _fail(exc.detail) from None
    console.print(table)


@user_app.command("disable")
def user_disable(
    user_id: Annotated[int, typer.Argument(help="The user's id (huifang user list).")],
    tenant: Annotated[str | None, typer.Option(help="Company id or name.")] = None,
) -> None:
    """Disable a user: they are signed out everywhere at once."""
    from accounts import service as accounts
    from tenancy import service as tenancy

    try:
        with get_database().session() as session:
            row = tenancy.find_tenant(session=session, ref=tenant)
            accounts.disable_user(session=session, tenant_id=row.id, user_id=user_id)
    except HuifangError as exc:
        raise _fail(exc.detail) from None
    err.print(f"user {user_id} disabled and signed out")


@user_app.command("link")
def user_link(
    user_id: Annotated[int, typer.Argument(help="The user's id (huifang user list).")],
    tenant: Annotated[str | None, typer.Option(help="Company id or name.")] = None,
) -> None:
    """Print a new one-time sign-in link for a user (a forgotten password, a new phone)."""
    from accounts import service as accounts
    from tenancy import service as tenancy

    try:
        with get_database().session() as session:
            row = tenancy.find_tenant(session=session, ref=tenant)
            token = accounts.new_link(session=session, tenant_id=row.id, user_id=user_id)
    except HuifangError as exc:
        raise _fail(exc.detail) from None
    print(accounts.sign_in_url(token))


@customers_app.command("import")
def customers_import(
    file: Annotated[
        Path,
        typer.Argument(
            help="A .csv or .xlsx list with 姓名/name and 手机号/phone columns.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    tenant: Annotated[str | None, typer.Option(help="Company id or name.")] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write the per-row report to this CSV.")
    ] = None,
) -> None:
    """Import customers, matched on phone; prints a report and shows progress."""
    from customers import service as customers
    from customers.importer import read_customer_file
    from tenancy import service as tenancy

    settings = get_settings()
    if file.stat().st_size > settings.import_max_bytes:
        raise _fail(f"{file} is over {settings.import_max_bytes // (1024 * 1024)} MB; split it.")
    data = file.read_bytes()
    try:
        with get_database().session() as session:
            owner = tenancy.find_tenant(session=session, ref=tenant)
            rows = read_customer_file(data, max_rows=settings.import_max_rows)
            with Progress(
                TextColumn("importing"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
                transient=False,
            ) as bar:
                job = bar.add_task("rows", total=len(rows))
                outcomes = customers.upsert_rows(
                    session=session,
                    tenant=owner,
                    rows=rows,
                    progress=lambda n: bar.advance(job, n),
                )
    except HuifangError as exc:
        raise _fail(exc.detail) from None

    counts = customers.count_outcomes(outcomes)
    console.print(", ".join(f"{n} {status}" for status, n in counts.items()))
    rejected = [o for o in outcomes if o.status == "rejected"]
    if rejected:
        table = Table("line", "reason", title="rejected rows")
        for o in rejected[:20]:
            table.add_row(str(o.line), o.reason or "")
        console.print(table)
        if len(rejected) > 20:
            console.print(f"… and {len(rejected) - 20} more; use --report FILE to see them all.")
    if report:
        with report.open("w", newline="", encoding="utf-8-sig") as fh:
            writer = csv.writer(fh)
            writer.writerow(["line", "status", "customer_id", "phone", "reason"])
            for o in outcomes:
                writer.writerow(
                    [o.line, o.status, o.customer_id or "", o.phone or "", o.reason or ""]
                )
        console.print(f"report written to {report}")
    if rejected and not (counts["imported"] or counts["updated"] or counts["unchanged"]):
        raise typer.Exit(1)


@app.command()
def reply(
    phone: Annotated[str, typer.Argument(help="The customer's number.")],
    text: Annotated[str, typer.Argument(help="What the customer writes, e.g. T or 1.")],
    tenant: Annotated[str | None, typer.Option(help="Company id or name.")] = None,
) -> None:
    """Simulate a customer's reply (embedded mode): routed, recorded and acted on."""
    from bookings import service as booking
    from huifang.db import utcnow
    from messaging import inbound
    from tenancy import service as tenancy

    settings = get_settings()
    if not (settings.embedded or settings.sms_provider == "console"):
        raise _fail(
            "Replies can only be simulated in embedded mode or with the console "
            "provider; real replies come through the provider's webhook."
        )
    _migrate()
    try:
        with get_database().session() as session:
            owner = tenancy.find_tenant(session=session, ref=tenant)
            received = inbound.receive(
                session=session,
                provider="console",
                tenant=owner,
                on_book=booking.book_from_reply,
                phone=phone,
                text=text,
                now=utcnow(),
                provider_message_id=f"cli-{uuid.uuid4().hex}",
            )
            lines = [
                f"routed {r.route} (rule {r.rule or '-'})"
                + (", flagged as a complaint" if r.complaint else "")
                + ("" if r.customer_id else "; no customer has this number")
                for r in inbound.replies(session=session, received=received)
            ]
            answers = len(received.send_now)
    except HuifangError as exc:
        raise _fail(exc.detail) from None
    for line in lines:
        console.print(line)
    if answers:
        console.print("an answer is scheduled; the running service sends it within seconds")


@app.command()
def demo() -> None:
    """Seed a demo company with staff, customers and visits; print its API key and links."""
    from huifang import demo as demo_data

    _migrate()
    with get_database().session() as session:
        result = demo_data.seed(session=session)
        tenant_name = result.tenant.name
    url = get_settings().public_url
    console.print(
        f"demo company: {tenant_name} — {result.customers} customers, "
        f"{result.staff} staff, {result.visits} visits"
    )
    console.print(
        "office console — the owner (张店长, 13900139000) signs in here and sets a "
        f"password (link valid 24 h, once): {result.owner_link}"
    )
    console.print(f"staff phone page — a staff member's sign-in link: {result.staff_link}")
    console.print(f"API key: {result.api_key}")
    if result.photos:
        from media.service import format_code

        console.print(
            "sample photos, watermarked — check one at "
            f"{url}/v/{format_code(result.photos[-1].verification_code)}"
        )
    if result.report_url:
        console.print(
            f"the first visit's report (photos, recap video, booking): {result.report_url}"
        )
    if result.campaign:
        found = result.campaign
        first = f", first on {found.first_date.isoformat()}" if found.first_date else ""
        console.print(
            f"Campaign: {found.name} (id {found.id}): {found.scheduled} occurrences "
            f"scheduled{first}; results at {url}/v1/campaigns/{found.id}/results"
        )
    console.print(f"open {url}/docs and click Authorize, then paste the key;")
    console.print(f"or try: curl -H 'Authorization: Bearer {result.api_key}' {url}/v1/customers")
    if get_settings().public_address is None:
        console.print(
            f"note: HUIFANG_PUBLIC_URL ({url}) is an address of this machine only: the links "
            "above work here, and the recap's end card leaves the booking address out. "
            "Set it to the company's public https address for customers."
        )


def settings_problem(exc: ValidationError) -> str:
    """One sentence per wrong setting, named as it is set (``HUIFANG_…``)."""
    sentences = []
    for error in exc.errors():
        message = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
        names = [str(part) for part in error.get("loc", ())]
        sentences.append(f"HUIFANG_{names[0].upper()}: {message}" if names else message)
    return "the settings are not usable: " + "; ".join(sentences) + "."


def main() -> None:
    from huifang.logs import configure_logging

    try:
        settings = get_settings()
    except ValidationError as exc:
        err.print(f"[red]error:[/red] {settings_problem(exc)}", highlight=False)
        sys.exit(2)
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    try:
        app()
    except HuifangError as exc:
        err.print(f"[red]error:[/red] {exc.detail}")
        sys.exit(1)


if __name__ == "__main__":
    main()
