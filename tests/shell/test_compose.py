"""The distributed-mode deployment files (docker-compose.yml, Dockerfile) agree with the code.

There is no Docker engine where the tests run, so the files are parsed and checked against
what the program really offers: the CLI's commands and options, the worker queues and the
settings fields.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from huifang.cli import app
from huifang.settings import Settings
from huifang.worker import QUEUES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

APP_SERVICES = {"api", "worker-media", "worker-messaging", "beat", "migrate", "app-role"}
INFRA_SERVICES = {"postgres", "redis", "minio"}
ONE_SHOT = {"migrate", "app-role", "minio-init"}
WAITING_SERVICES = APP_SERVICES - {"migrate", "app-role"}  # start after the schema is migrated
LONG_RUNNING = (APP_SERVICES | INFRA_SERVICES) - ONE_SHOT
HOST_SECRETS = {
    "POSTGRES_PASSWORD": "pw",
    "MINIO_ROOT_PASSWORD": "mp" * 8,
    "HUIFANG_DATABASE_APP_PASSWORD": "ap" * 8,
}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
SINGLE_DOLLAR = re.compile(r"(?<!\$)\$(?!\$)")


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def command(service: str) -> list[str]:
    value = services()[service].get("command")
    assert value, f"{service} has no command"
    return shlex.split(value) if isinstance(value, str) else [str(word) for word in value]


def environment(service: str) -> dict[str, str]:
    value = services()[service].get("environment") or {}
    if isinstance(value, list):
        value = dict(item.split("=", 1) if "=" in item else (item, "") for item in value)
    return {str(key): "" if val is None else str(val) for key, val in value.items()}


def depends_on(service: str) -> dict[str, str]:
    value = services()[service].get("depends_on") or {}
    if isinstance(value, list):  # the short form means "started", no condition
        return dict.fromkeys(value, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in value.items()}


def healthcheck_test(service: str) -> str:
    test = (services()[service].get("healthcheck") or {}).get("test")
    assert test, f"{service} has no healthcheck test"
    return " ".join(test) if isinstance(test, list) else test


def cli_commands() -> dict[str, Any]:
    """The registered `huifang` commands (click commands; recent Typer vendors its own click)."""
    group = typer.main.get_command(app)
    commands = getattr(group, "commands", None)
    assert commands, "the huifang CLI has no subcommands"
    return dict(commands)


def parse_cli(service: str) -> tuple[str, dict[str, Any]]:
    """The service's command parsed by the real CLI: its name and its options."""
    name, *args = command(service)
    commands = cli_commands()
    assert name in commands, f"{service}: `huifang {name}` is not a command ({sorted(commands)})"
    try:
        context = commands[name].make_context(name, list(args))
    except Exception as exc:  # click's UsageError (Typer's vendored one in recent versions)
        raise AssertionError(f"{service}: `huifang {' '.join(command(service))}`: {exc}") from exc
    return name, context.params


def resolve(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation, enough for these files: a missing `:?` variable is an error."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if name in env and (env[name] or not (op or "").startswith(":")):
            return env[name]
        if op and op.endswith("?"):
            raise LookupError(f"{name}: {arg}")
        return arg if op else ""

    return INTERPOLATION.sub(substitute, value).replace("$$", "$")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, rest = pending.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "Dockerfile ends with a continuation line"
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def test_compose_has_exactly_the_distributed_mode_services() -> None:
    assert set(services()) == APP_SERVICES | INFRA_SERVICES | {"minio-init"}
    assert "version" not in compose()  # obsolete in the Compose specification


def test_long_running_services_have_healthchecks_and_restart() -> None:
    for name in LONG_RUNNING:
        service = services()[name]
        check = service.get("healthcheck") or {}
        assert not check.get("disable"), f"{name}: healthcheck disabled"
        assert check.get("test"), f"{name}: healthcheck has no test"
        assert re.fullmatch(r"(\d+(ms|s|m|h))+", str(check.get("interval", ""))), (
            f"{name}: healthcheck needs an interval such as 30s"
        )
        assert service.get("restart") == "unless-stopped", f"{name}: restart policy"
    for name in ONE_SHOT:
        assert str(services()[name].get("restart")) == "no", f"{name} runs once"


def test_api_healthcheck_hits_healthz() -> None:
    test = healthcheck_test("api")
    assert re.search(r"https?://(127\.0\.0\.1|localhost):8000/healthz\b", test), test
    assert "urllib" in test  # slim images have no curl or wget


def test_healthchecks_escape_dollars() -> None:
    # Compose interpolates `$X` from the host's environment; the container's own variables
    # (celery@$$HOSTNAME) must be written `$$`.
    for name in LONG_RUNNING:
        test = healthcheck_test(name)
        assert not SINGLE_DOLLAR.search(test), f"{name}: unescaped $ in healthcheck: {test}"


def test_worker_healthcheck_pings_its_own_node() -> None:
    for name in ("worker-media", "worker-messaging"):
        test = healthcheck_test(name)
        assert "huifang.worker:celery_app" in test, test
        assert re.search(r"inspect ping .*-d celery@\$\$HOSTNAME", test), test


def test_app_service_commands_are_huifang_cli_commands() -> None:
    for name in APP_SERVICES:
        parse_cli(name)  # raises on an unknown command or option
    assert parse_cli("migrate")[0] == "migrate"
    name, params = parse_cli("api")
    assert name == "serve"
    assert params["host"] == "0.0.0.0"  # reachable from outside the container
    assert f"{params['port']}:{params['port']}" in services()["api"]["ports"]


def test_workers_serve_every_queue_and_only_known_ones() -> None:
    served: set[str] = set()
    for name in ("worker-media", "worker-messaging"):
        command_name, params = parse_cli(name)
        assert command_name == "worker", name
        queues = set(params["queues"].split(","))
        assert queues <= set(QUEUES), f"{name}: unknown queues {queues - set(QUEUES)}"
        served |= queues
    assert served == set(QUEUES), f"nobody consumes {set(QUEUES) - served}"
    assert parse_cli("worker-media")[1]["queues"] == "media"


def test_exactly_one_beat() -> None:
    beats = [name for name in APP_SERVICES if parse_cli(name)[0] == "beat"]
    assert beats == ["beat"]
    assert services()["beat"].get("deploy", {}).get("replicas", 1) == 1


def test_app_services_wait_for_their_dependencies() -> None:
    for name in WAITING_SERVICES:
        assert depends_on(name) == {
            "postgres": "service_healthy",
            "redis": "service_healthy",
            "minio": "service_healthy",
            "minio-init": "service_completed_successfully",
            "migrate": "service_completed_successfully",
            "app-role": "service_completed_successfully",
        }, name
    assert depends_on("migrate").get("postgres") == "service_healthy"
    assert depends_on("app-role") == {"migrate": "service_completed_successfully"}


def test_the_app_connects_as_the_role_row_level_security_binds() -> None:
    # Migrations and the role's creation run as the owner; everything else as huifang_app.
    assert command("app-role") == ["db", "create-app-role"]
    for name in APP_SERVICES:
        env = environment(name)
        assert env["HUIFANG_DATABASE_APP_URL"].startswith("postgresql+psycopg://huifang_app:")
        assert "${HUIFANG_DATABASE_APP_PASSWORD:?" in env["HUIFANG_DATABASE_APP_URL"], name
        assert "${HUIFANG_DATABASE_APP_PASSWORD:?" in env["HUIFANG_DATABASE_APP_PASSWORD"], name


def test_app_environment_points_at_postgres_and_redis() -> None:
    for name in APP_SERVICES:
        env = environment(name)
        assert env.get("HUIFANG_ENVIRONMENT") == "production", name
        assert env.get("HUIFANG_DATABASE_URL", "").startswith("postgresql+psycopg://"), name
        assert "@postgres:5432/" in env["HUIFANG_DATABASE_URL"], name
        assert env.get("HUIFANG_REDIS_URL", "").startswith("redis://redis:6379/"), name


def test_every_huifang_variable_is_a_setting() -> None:
    names: set[str] = set()
    for name in APP_SERVICES:
        names |= {key for key in environment(name) if key.startswith("HUIFANG_")}
    text = COMPOSE.read_text(encoding="utf-8")
    names |= {m["name"] for m in INTERPOLATION.finditer(text) if m["name"].startswith("HUIFANG_")}
    for keyword, args in dockerfile_instructions():
        if keyword == "ENV":
            names |= set(re.findall(r"\b(HUIFANG_\w+)=", args))
    assert {"HUIFANG_DATABASE_URL", "HUIFANG_MEDIA_ROOT"} <= names  # the scan found them
    # Besides the settings, the CLI reads the app role's password for `db create-app-role`.
    cli_options = {
        param.envvar
        for command in cli_commands().values()
        for sub in getattr(command, "commands", {}).values()
        for param in sub.params
        if isinstance(param.envvar, str)
    }
    assert "HUIFANG_DATABASE_APP_PASSWORD" in cli_options
    unknown = {
        n
        for n in names - cli_options
        if n.removeprefix("HUIFANG_").lower() not in Settings.model_fields
    }
    assert not unknown, f"not fields of huifang.settings.Settings: {sorted(unknown)}"


def test_compose_environment_is_accepted_by_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # With the secrets supplied, each service's environment is read by Settings as in the
    # container: production validates (no placeholder refused, every value in its Literal).
    host = {**HOST_SECRETS, "HUIFANG_SECRET_KEY": "k" * 40}
    for name in APP_SERVICES:
        with monkeypatch.context() as patch:
            for key in [k for k in os.environ if k.startswith("HUIFANG_")]:
                patch.delenv(key)
            for key, value in environment(name).items():
                patch.setenv(key, resolve(value, host))
            settings = Settings(_env_file=None)
        assert settings.environment == "production", name
        assert not settings.embedded, f"{name} would run in embedded mode"
        assert not settings.is_sqlite, name
        assert settings.storage == "s3" and settings.s3_bucket == "huifang", name
        assert settings.s3_endpoint_url == "http://minio:9000", name


def test_secrets_are_required_references() -> None:
    # `${NAME:?message}`: compose stops when the secret is missing instead of using "".
    required = r"\$\{%s:\?[^}]+\}"
    for name in APP_SERVICES:
        env = environment(name)
        assert re.fullmatch(required % "HUIFANG_SECRET_KEY", env["HUIFANG_SECRET_KEY"]), name
        url = env["HUIFANG_DATABASE_URL"]
        password = re.match(r"postgresql\+psycopg://[^:]+:(.*)@postgres:", url)
        assert password, url
        assert re.fullmatch(required % "POSTGRES_PASSWORD", password[1]), name
        with pytest.raises(LookupError):  # a missing secret stops compose
            resolve(env["HUIFANG_SECRET_KEY"], {})
    postgres_password = environment("postgres")["POSTGRES_PASSWORD"]
    assert re.fullmatch(required % "POSTGRES_PASSWORD", postgres_password)


def test_app_containers_share_nothing_but_database_broker_and_bucket() -> None:
    # No volume is mounted into two app containers: each has its own scratch (the image's
    # /data/media), and stored files go through the bucket.
    for name in APP_SERVICES:
        assert not services()[name].get("volumes"), f"{name} mounts a shared volume"
    env = " ".join(args for keyword, args in final_stage() if keyword == "ENV")
    assert "HUIFANG_MEDIA_ROOT=/data/media" in env
    assert "media" not in (compose().get("volumes") or {})


def test_minio_has_its_bucket_and_a_healthcheck() -> None:
    assert "minio:/data" in services()["minio"]["volumes"]
    assert "mc ready local" in healthcheck_test("minio")
    init = " ".join(services()["minio-init"]["entrypoint"])
    assert "mc mb --ignore-existing store/huifang" in init
    assert "$$MINIO_ROOT_PASSWORD" in init  # the container's variable, not the host's
    assert depends_on("minio-init") == {"minio": "service_healthy"}
    password = environment("minio")["MINIO_ROOT_PASSWORD"]
    assert re.fullmatch(r"\$\{MINIO_ROOT_PASSWORD:\?[^}]+\}", password)
    for name in APP_SERVICES:
        assert environment(name)["HUIFANG_S3_SECRET_ACCESS_KEY"] == password, name
        assert (
            environment(name)["HUIFANG_S3_ACCESS_KEY_ID"] == environment("minio")["MINIO_ROOT_USER"]
        )


def test_dockerfile_installs_cjk_fonts() -> None:
    assert final_stage()[0][1].split()[0] == "python:3.11-slim-bookworm"
    runs = [args for keyword, args in final_stage() if keyword == "RUN"]
    installs = [args for args in runs if "apt-get install" in args]
    assert any(re.search(r"\bfonts-noto-cjk\b", args) for args in installs), installs
    assert all("--no-install-recommends" in args for args in installs)
    assert any("rm -rf /var/lib/apt/lists" in args for args in installs)


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [args.split(":")[0] for keyword, args in final_stage() if keyword == "USER"]
    assert users, "the final stage sets no USER, so it runs as root"
    assert users[-1] not in ("root", "0")


def test_dockerfile_has_a_healthcheck_on_healthz() -> None:
    checks = [args for keyword, args in final_stage() if keyword == "HEALTHCHECK"]
    assert len(checks) == 1 and "CMD" in checks[0], checks
    assert "/healthz" in checks[0]


def test_dockerfile_entrypoint_runs_huifang() -> None:
    entrypoints = [args for keyword, args in final_stage() if keyword == "ENTRYPOINT"]
    assert entrypoints, "no ENTRYPOINT"
    words = json.loads(entrypoints[-1])  # exec form, so signals reach the process
    assert words[-1] == "huifang", words
    cmd = [args for keyword, args in final_stage() if keyword == "CMD"]
    assert json.loads(cmd[-1])[0] in cli_commands()


def provider_fields(prefix: str) -> set[str]:
    """The settings a provider reads, as compose names them (HUIFANG_ALIYUN_…)."""
    return {f"HUIFANG_{name.upper()}" for name in Settings.model_fields if name.startswith(prefix)}


@pytest.mark.parametrize("provider", ["aliyun", "twilio"])
def test_compose_passes_every_setting_a_provider_reads(provider: str) -> None:
    wanted = provider_fields(provider + "_")
    assert len(wanted) >= 5, wanted  # the scan found the provider's settings
    for name in APP_SERVICES:
        missing = wanted - set(environment(name))
        assert not missing, f"{name} does not pass {sorted(missing)}"
        for key in wanted:  # taken from the host, never a literal value
            assert INTERPOLATION.search(environment(name)[key]), (name, key)


def _container_settings(monkeypatch: pytest.MonkeyPatch, host: dict[str, str]) -> Settings:
    with monkeypatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("HUIFANG_")]:
            patch.delenv(key)
        for key, value in environment("worker-messaging").items():
            patch.setenv(key, resolve(value, host))
        return Settings(_env_file=None)


def test_aliyun_from_the_host_reaches_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # `HUIFANG_SMS_PROVIDER=aliyun docker compose up` with the key in the host's environment.
    host = {
        **HOST_SECRETS,
        "HUIFANG_SECRET_KEY": "k" * 40,
        "HUIFANG_SMS_PROVIDER": "aliyun",
        "HUIFANG_ALIYUN_ACCESS_KEY_ID": "LTAI5tExample",
        "HUIFANG_ALIYUN_ACCESS_KEY_SECRET": "s" * 30,
        "HUIFANG_ALIYUN_REGION_ID": "cn-shanghai",
    }
    settings = _container_settings(monkeypatch, host)
    assert settings.sms_provider == "aliyun"
    assert settings.aliyun_access_key_id == "LTAI5tExample"
    assert settings.aliyun_access_key_secret == "s" * 30
    assert settings.aliyun_region_id == "cn-shanghai"
    assert settings.aliyun_api_base == "https://dysmsapi.aliyuncs.com"


def test_a_missing_aliyun_setting_stops_the_start_with_one_sentence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from huifang import cli
    from huifang.settings import get_settings

    host = {
        **HOST_SECRETS,
        "HUIFANG_SECRET_KEY": "k" * 40,
        "HUIFANG_SMS_PROVIDER": "aliyun",
        "HUIFANG_ALIYUN_ACCESS_KEY_ID": "LTAI5tExample",
    }
    for key in [k for k in os.environ if k.startswith("HUIFANG_")]:
        monkeypatch.delenv(key)
    for key, value in environment("worker-messaging").items():
        monkeypatch.setenv(key, resolve(value, host))
    monkeypatch.chdir(ROOT / "tests")  # no .env file here
    monkeypatch.setattr(sys, "argv", ["huifang", "worker"])
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as stopped:
            cli.main()
    finally:
        get_settings.cache_clear()
    assert stopped.value.code == 2
    said = capsys.readouterr()
    lines = [line for line in (said.err + said.out).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "HUIFANG_ALIYUN_ACCESS_KEY_SECRET" in lines[0]
    assert "Traceback" not in said.err
