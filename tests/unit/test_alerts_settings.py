"""The `[alerts]` table: defaults, routing, secrets from outside the file, one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from daemon.alerts.settings import parse_alert_settings
from daemon.config import ConfigError

MAIL = {"host": "smtp.example.go.jp", "from": "intake@example.go.jp", "to": ["staff@example.go.jp"]}


def parse(alerts: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    return parse_alert_settings({"alerts": alerts}, env=env or {})


def test_defaults_without_an_alerts_table() -> None:
    s = parse_alert_settings({}, env={})
    assert s.mail is None and s.webhook is None and not s.include_filenames
    assert s.channels_for("quarantined") == ("log",)  # the log, always
    assert s.minutes("held_too_long") == 30 and s.minutes("scanner_down") == 5 and s.days("scanner_down") == 3
    assert s.minutes("mailbox_down") == 10
    assert s.category("rejected").window_seconds == 300


def test_routing_per_category_and_thresholds() -> None:
    s = parse({"mail": MAIL, "webhook": {"url": "https://hooks.example/x", "format": "teams"},
               "digest_window_seconds": 120,
               "categories": {"rejected": {"channels": ["mail"]},
                              "scanner_down": {"minutes": 2, "days": 7, "window_seconds": 0}}})
    assert s.channels_for("rejected") == ("mail", "log")
    assert s.channels_for("quarantined") == ("mail", "webhook", "log")
    assert s.minutes("scanner_down") == 2 and s.days("scanner_down") == 7
    assert s.category("scanner_down").window_seconds == 0 and s.category("rejected").window_seconds == 120
    assert s.mail.port == 587 and s.mail.starttls and s.mail.username is None
    assert "hooks.example" not in repr(s.webhook)


def test_secrets_come_from_a_file_an_env_var_or_systemd_credentials(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    from_file = parse({"mail": {**MAIL, "username": "u", "password_file": str(tmp_path / "pw")}})
    assert from_file.mail.password == "from-file"
    env = {"SMTP_PW": "from-env", "CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert parse({"mail": {**MAIL, "username": "u", "password_env": "SMTP_PW"}}, env).mail.password == "from-env"
    assert parse({"mail": {**MAIL, "username": "u", "password_credential": "pw"}}, env).mail.password == "from-file"
    assert "from-file" not in repr(parse({"mail": {**MAIL, "username": "u", "password_file": str(tmp_path / "pw")}}))
    hook = parse({"webhook": {"url_env": "HOOK"}}, {"HOOK": "https://hooks.slack.com/services/T/B/X"})
    assert hook.webhook.url.endswith("/X")


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        ({"mail": {**MAIL, "password": "x"}}, "alerts.mail.password: never in the config file"),
        ({"mail": {**MAIL, "username": "u"}}, "alerts.mail.password_file / password_env / password_credential"),
        ({"mail": {**MAIL, "username": "u", "password_env": "NOPE"}}, "NOPE is not set"),
        ({"mail": {**MAIL, "username": "u", "password_credential": "pw"}}, "$CREDENTIALS_DIRECTORY is not set"),
        ({"mail": {**MAIL, "to": []}}, "alerts.mail.to: at least one address"),
        ({"mail": {**MAIL, "to": ["x@y.jp\r\nBcc: z@w.jp"]}}, "alerts.mail.to: must be one mail address"),
        ({"mail": {**MAIL, "from": "not an address"}}, "alerts.mail.from"),
        ({"webhook": {"url": "ftp://x"}}, "alerts.webhook.url: must be an http(s):// URL"),
        ({"webhook": {"url": "https://x", "format": "discord"}}, "alerts.webhook.format"),
        ({"categories": {"viruses": {}}}, "alerts.categories.viruses: unknown category"),
        ({"categories": {"rejected": {"channels": ["mail"]}}}, "'mail' is routed but [alerts.mail] is not configured"),
        ({"categories": {"held_too_long": {"minutes": -1}}}, "alerts.categories.held_too_long.minutes"),
        ({"include_filenames": "yes"}, "alerts.include_filenames: wrong type"),
        ({"digest_window": 5}, "alerts.digest_window: unknown key"),
    ],
)
def test_bad_values_are_one_line_naming_the_key(alerts: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(alerts)
    assert expected in str(err.value) and "\n" not in str(err.value)
