"""Settings: read from HUIFANG_*, placeholders refused outside development."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from huifang.settings import Settings

STRONG = "k" * 40


def test_defaults_are_the_embedded_mode(monkeypatch):
    for name in ("HUIFANG_DATABASE_URL", "HUIFANG_REDIS_URL", "HUIFANG_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)
    assert settings.embedded
    assert settings.database_url.startswith("sqlite:///./var/")
    assert settings.sms_provider == "console"


def test_environment_variables_are_read(monkeypatch):
    monkeypatch.setenv("HUIFANG_REDIS_URL", "redis://localhost:6379/0")
    monkeypatch.setenv("HUIFANG_PUBLIC_URL", "https://hf.example.cn/")
    settings = Settings(_env_file=None)
    assert not settings.embedded
    assert settings.public_url == "https://hf.example.cn"


@pytest.mark.parametrize("secret", ["changethis", "development-only", "", "short"])
def test_production_refuses_placeholder_secrets(secret):
    with pytest.raises(ValidationError, match="HUIFANG_SECRET_KEY"):
        Settings(_env_file=None, environment="production", secret_key=secret)


def test_production_with_real_secrets_starts():
    assert Settings(_env_file=None, environment="production", secret_key=STRONG).secret_key


def test_production_twilio_needs_credentials():
    with pytest.raises(ValidationError, match="TWILIO_AUTH_TOKEN"):
        Settings(
            _env_file=None,
            environment="production",
            secret_key=STRONG,
            sms_provider="twilio",
            twilio_account_sid="AC123",
            twilio_auth_token="changethis",
            twilio_from_number="+14155550100",
        )


def test_production_twilio_needs_exactly_one_sender():
    with pytest.raises(ValidationError, match="exactly one"):
        Settings(
            _env_file=None,
            environment="production",
            secret_key=STRONG,
            sms_provider="twilio",
            twilio_account_sid="AC123",
            twilio_auth_token="t" * 32,
        )
    assert Settings(
        _env_file=None,
        environment="production",
        secret_key=STRONG,
        sms_provider="twilio",
        twilio_account_sid="AC123",
        twilio_auth_token="t" * 32,
        twilio_messaging_service_sid="MG1",
    ).embedded


def test_production_aliyun_needs_a_key_and_a_secret_not_one_template():
    with pytest.raises(ValidationError, match="ALIYUN_ACCESS_KEY_SECRET"):
        Settings(
            _env_file=None,
            environment="production",
            secret_key=STRONG,
            sms_provider="aliyun",
            aliyun_access_key_id="LTAI5",
        )
    with pytest.raises(ValidationError, match="ALIYUN_ACCESS_KEY_ID"):
        Settings(
            _env_file=None,
            environment="production",
            secret_key=STRONG,
            sms_provider="aliyun",
            aliyun_access_key_secret="s" * 30,
        )
    # Templates are the company's, one per purpose (messaging.sms_templates), not a setting.
    settings = Settings(
        _env_file=None,
        environment="production",
        secret_key=STRONG,
        sms_provider="aliyun",
        aliyun_access_key_id="LTAI5",
        aliyun_access_key_secret="s" * 30,
    )
    assert settings.aliyun_template_code is None


def test_development_accepts_the_placeholder():
    assert Settings(_env_file=None, environment="development").secret_key == "development-only"


def test_unknown_default_timezone_is_refused():
    with pytest.raises(ValidationError, match="IANA"):
        Settings(_env_file=None, default_timezone="Beijing")


@pytest.mark.parametrize("environment", ["development", "test", "production"])
def test_two_twilio_senders_are_refused_in_every_environment(environment):
    with pytest.raises(ValidationError, match="only one Twilio sender"):
        Settings(
            _env_file=None,
            environment=environment,
            secret_key=STRONG,
            sms_provider="twilio",
            twilio_account_sid="AC123",
            twilio_auth_token="t" * 32,
            twilio_from_number="+14155550100",
            twilio_messaging_service_sid="MG1",
        )


def test_the_cli_refuses_to_start_with_one_sentence_not_a_traceback(tmp_path):
    env = {
        **os.environ,
        "HUIFANG_ENVIRONMENT": "development",
        "HUIFANG_DATABASE_URL": f"sqlite:///{tmp_path / 'hf.db'}",
        "HUIFANG_SMS_PROVIDER": "twilio",
        "HUIFANG_TWILIO_FROM_NUMBER": "+14155550100",
        "HUIFANG_TWILIO_MESSAGING_SERVICE_SID": "MG1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "huifang.cli", "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    [line] = [text for text in done.stderr.splitlines() if text.strip()]
    assert "only one Twilio sender" in line and "HUIFANG_TWILIO_FROM_NUMBER" in line


def test_a_default_timezone_too_long_for_a_file_name_is_refused_with_a_sentence():
    with pytest.raises(ValidationError, match="IANA"):
        Settings(_env_file=None, default_timezone="A" * 300)
