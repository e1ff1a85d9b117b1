"""One settings class, read from the environment with the prefix ``HUIFANG_``."""

from __future__ import annotations

import functools
import ipaddress
import zoneinfo
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that ship in examples and must never protect a real deployment.
PLACEHOLDER_SECRETS = frozenset({"", "changethis", "change-me", "secret", "development-only"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUIFANG_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    # Signs report, booking and verification tokens; refused as a placeholder outside development.
    secret_key: str = "development-only"  # noqa: S105  (refused outside development)

    database_url: str = "sqlite:///./var/huifang.db"
    # PostgreSQL: the application's own role (``huifang db create-app-role``), bound by
    # row-level security; database_url stays the tables' owner, for migrations. Unset: the
    # application connects as the owner, which RLS does not bind.
    database_app_url: str | None = None
    # No Redis URL means embedded mode: tasks and the scheduler run inside `huifang serve`.
    redis_url: str | None = None
    # Local disk: every stored file with HUIFANG_STORAGE=local, scratch only with s3.
    media_root: Path = Path("./var/media")
    # Where stored files live: "local" (under media_root; embedded default) or "s3", an
    # S3-compatible bucket (MinIO, Aliyun OSS, Tencent COS), the only storage the API and
    # the workers of the distributed mode share.
    storage: Literal["local", "s3"] = "local"
    s3_endpoint_url: str | None = None  # unset: AWS itself
    s3_bucket: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_region: str = "us-east-1"
    s3_prefix: str = ""  # keys under this prefix, to share a bucket
    # "path" for MinIO on its own host; Aliyun OSS and Tencent COS want "virtual".
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # Answer the private original download with a redirect to a short-lived presigned URL
    # instead of streaming it through the API. Public report links are always served by us
    # (their pages' CSP allows only our own origin).
    s3_presign: bool = False
    # A CJK font file for watermarks; otherwise fontconfig, then the font wheel (media.fonts).
    font_path: Path | None = None
    # Upload caps, counted while the body streams in.
    photo_max_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    clip_max_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    # The MMS rendition of a photo is fitted under this many bytes (provider profiles may lower it).
    mms_photo_budget: int = Field(default=300_000, ge=20_000)
    public_url: str = "http://localhost:8000"
    # Proxies whose X-Forwarded-For/-Proto are believed (comma-separated, or * behind a
    # trusted network); webhook signatures are checked against the scheme they report.
    forwarded_allow_ips: str = "127.0.0.1"

    sms_provider: Literal["console", "twilio", "aliyun"] = "console"
    # Sends per second through the provider, shared by all workers; unset: the provider's
    # own default (Twilio long code 1/s, Aliyun 50/s, console unlimited).
    sms_rate_per_second: int | None = Field(default=None, gt=0)
    # Provider calls one worker process makes at once (a batch's messages, in parallel).
    send_concurrency: int = Field(default=4, ge=1, le=32)
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_api_base: str = "https://api.twilio.com"
    # Exactly one of these is the sender: a number in E.164 or a Messaging Service.
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    # Aliyun SMS (Dysmsapi SendSms): sends only approved templates.
    aliyun_access_key_id: str | None = None
    aliyun_access_key_secret: str | None = None
    # Messages go out as the company's approved template of their purpose (recorded in the
    # console, messaging.sms_templates); this one only serves a send that names none.
    aliyun_template_code: str | None = None
    aliyun_api_base: str = "https://dysmsapi.aliyuncs.com"
    aliyun_region_id: str = "cn-hangzhou"

    default_timezone: str = "Asia/Shanghai"
    default_phone_region: str = "CN"

    log_format: Literal["console", "json"] = "console"
    log_level: str = "INFO"

    # Largest customer list accepted in one import, in bytes and in rows.
    import_max_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    import_max_rows: int = Field(default=100_000, gt=0)

    @property
    def embedded(self) -> bool:
        """True when there is no Redis: one process runs API, worker and scheduler."""
        return not self.redis_url

    @property
    def public_address(self) -> str | None:
        """``public_url`` when people outside this machine can reach it; None for loopback.

        What goes in front of a customer (the recap's end card) uses this: an address only
        this machine answers is worse than none. The default (``http://localhost:8000``) is one.
        """
        host = (urlsplit(self.public_url).hostname or "").lower()
        if host == "localhost" or host.endswith((".localhost", ".local")):
            return None
        try:
            if ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).is_unspecified:
                return None
        except ValueError:
            pass  # a name, not a literal address
        return self.public_url

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @field_validator("default_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        if value not in zoneinfo.available_timezones():
            raise ValueError(f"{value[:40]!r} is not an IANA time zone such as Asia/Shanghai")
        return value

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_twilio_sender(self) -> Settings:
        # In every environment: with both set, every send would fail instead of the start.
        if self.twilio_from_number and self.twilio_messaging_service_sid:
            raise ValueError(
                "set only one Twilio sender: HUIFANG_TWILIO_FROM_NUMBER or "
                "HUIFANG_TWILIO_MESSAGING_SERVICE_SID, not both"
            )
        return self

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        if self.environment == "development" or self.environment == "test":
            return self
        problems = []
        if self.secret_key in PLACEHOLDER_SECRETS or len(self.secret_key) < 32:
            problems.append("HUIFANG_SECRET_KEY must be a random value of at least 32 characters")
        if self.sms_provider == "twilio":
            if not self.twilio_account_sid:
                problems.append("HUIFANG_TWILIO_ACCOUNT_SID is required with the twilio provider")
            if (self.twilio_auth_token or "") in PLACEHOLDER_SECRETS:
                problems.append("HUIFANG_TWILIO_AUTH_TOKEN is missing or a placeholder")
            if bool(self.twilio_from_number) == bool(self.twilio_messaging_service_sid):
                problems.append(
                    "set exactly one of HUIFANG_TWILIO_FROM_NUMBER and "
                    "HUIFANG_TWILIO_MESSAGING_SERVICE_SID"
                )
        if self.sms_provider == "aliyun":
            if not self.aliyun_access_key_id:
                problems.append("HUIFANG_ALIYUN_ACCESS_KEY_ID is required with the aliyun provider")
            if (self.aliyun_access_key_secret or "") in PLACEHOLDER_SECRETS:
                problems.append("HUIFANG_ALIYUN_ACCESS_KEY_SECRET is missing or a placeholder")
        if self.storage == "s3":
            if not self.s3_bucket:
                problems.append("HUIFANG_S3_BUCKET is required with HUIFANG_STORAGE=s3")
            if (self.s3_secret_access_key or "") in PLACEHOLDER_SECRETS and self.s3_access_key_id:
                problems.append("HUIFANG_S3_SECRET_ACCESS_KEY is missing or a placeholder")
        if problems:
            raise ValueError(f"refusing to start in {self.environment}: " + "; ".join(problems))
        return self


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
