"""OAuth 2.0 for IMAP (issue 19), with real parts: a real Dovecot 2.3 that takes bearer tokens (passdb oauth2,
local validation of HS256 and RS256 tokens signed here with PyJWT) over loopback with XOAUTH2 and OAUTHBEARER,
the real `intake check`, `intake imap login` and `intake run` as subprocesses, the real clamd and SQLite.

**The token endpoint is a stand-in** (tests/integration/oauth_standin.py): Microsoft's and Google's cannot be
reached from here, so a small local HTTPS server answers in Microsoft's shapes (client credentials with a secret
or a certificate, refresh grants with strict rotation, device code, real AADSTS error bodies). What it proves is
our side of the exchange; a first real deployment must still verify the provider's side (README, OAuth 2.0).

Every test plants its secrets and tokens and greps what the intake printed and logged for them.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from oauth_standin import StandIn, self_signed
from sqlalchemy import select
from sqlalchemy.engine import Engine
from test_imap import Daemon, assert_exactly_once, dovecot_dir, intake_cli, sqlite_config, tiny, wait_for, write_config

from daemon.config import Config
from daemon.store.db import Alert, make_engine
from devkit.clamd import Clamd
from devkit.dovecot import Dovecot

__all__ = ["sqlite_config"]  # a fixture, used by name

MAILBOX = "pubcomment@soumu.example"  # a shared mailbox: the login user is the mailbox's address
PY = sys.executable


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot(dovecot_dir(), oauth2=True, user=MAILBOX)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture
def standin(dovecot: Dovecot, tmp_path: Path) -> Iterator[StandIn]:
    endpoint = StandIn(issue=lambda: dovecot.sign_token(MAILBOX, lifetime=3600)).start(tmp_path / "standin")
    yield endpoint
    endpoint.stop()


@pytest.fixture
def engine(sqlite_config: Config) -> Iterator[Engine]:
    eng = make_engine(sqlite_config.database_url)
    yield eng
    eng.dispose()


def oauth_table(standin: StandIn, tmp_path: Path, source: str, **more: Any) -> dict[str, Any]:
    secret = tmp_path / "client-secret"
    secret.write_text(standin.client_secret + "\n")
    return {"auth": "oauth2", "token_source": source, "provider": "microsoft", "tenant": standin.tenant,
            "token_url": standin.token_url, "device_code_url": standin.device_url, "client_id": standin.client_id,
            "client_secret_file": str(secret), "token_cafile": str(standin.cafile), **more}


def imap_line(out: str) -> str:
    lines = [line for line in out.splitlines() if line[6:].startswith("imap ")]
    assert len(lines) == 1, out
    return lines[0]


def assert_nothing_secret(texts: list[str], secrets: list[str]) -> None:
    """No secret, token or refresh token (nor the signature part of a JWT) in anything the intake printed."""
    for secret in secrets:
        parts = [secret, *([secret.rsplit(".", 1)[1]] if secret.count(".") == 2 else [])]
        for text in texts:
            for part in parts:
                assert part not in text, "a secret or token leaked into the output"


# -- 1. Dovecot takes our tokens with both mechanisms -----------------------------------------------------
async def test_both_mechanisms_log_in_to_dovecot_with_hs256_and_rs256_tokens(dovecot: Dovecot, tmp_path: Path) -> None:
    from daemon.sources.imap.config import ImapConfig, OAuth2Config
    from daemon.sources.imap.session import ImapError, try_login

    token_file = tmp_path / "token"
    cert, key_pem = self_signed("signer")
    from cryptography import x509

    public = x509.load_pem_x509_certificate(cert).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    dovecot.add_rsa_key(public, "k1")
    import jwt

    now = int(time.time())
    rs256 = jwt.encode({"sub": MAILBOX, "email": MAILBOX, "iat": now - 5, "exp": now + 600}, key_pem,
                       algorithm="RS256", headers={"kid": "k1"})

    def cfg(mechanism: str) -> ImapConfig:
        return ImapConfig(host="127.0.0.1", user=MAILBOX, password="", port=dovecot.port, security="plain",
                          auth="oauth2", oauth2=OAuth2Config(source="command", mechanism=mechanism,
                                                             command=("cat", str(token_file))))

    token_file.write_text(dovecot.sign_token(MAILBOX))
    for mechanism, expect in (("auto", "OAUTHBEARER"), ("xoauth2", "XOAUTH2"), ("oauthbearer", "OAUTHBEARER")):
        line = await try_login(cfg(mechanism))
        assert f"with {expect} works" in line and "token from imap.token_command" in line
    token_file.write_text(rs256)
    assert "with XOAUTH2 works" in await try_login(cfg("xoauth2"))
    logins = [line for line in dovecot.log_file.read_text().splitlines() if "Login: user=<" + MAILBOX in line]
    assert sum("method=XOAUTH2" in line for line in logins) == 2
    assert sum("method=OAUTHBEARER" in line for line in logins) == 2

    # A token Dovecot refuses (signed with another key): renewed once, refused again, one line with the cause.
    bad = dovecot.sign_token(MAILBOX, secret=b"not the server's key, 32 bytes.!")
    token_file.write_text(bad)
    with pytest.raises(ImapError) as refused:
        await try_login(cfg("auto"))
    text = str(refused.value)
    assert "OAUTHBEARER refused: token refused (server: invalid_token)" in text and "\n" not in text
    assert_nothing_secret([text], [bad, rs256])


# -- 2. intake check: the token and the login ---------------------------------------------------------
def test_check_reports_the_token_and_the_login_with_a_secret_and_with_a_certificate(
        tmp_path: Path, sqlite_config: Config, dovecot: Dovecot, clamd: Clamd, standin: StandIn) -> None:
    conf = write_config(tmp_path, sqlite_config, dovecot, clamd.url,
                        imap=oauth_table(standin, tmp_path, "client_credentials"))
    done = intake_cli(conf, "check")
    line = imap_line(done.stdout)
    assert line.startswith("ok"), done.stdout + done.stderr
    assert "token from client credentials from 127.0.0.1 (expires in 59 min)" in line
    assert "login as the configured user with OAUTHBEARER works, INBOX opens" in line
    assert standin.grants == ["client_credentials"]

    # The certificate instead of the secret: a client assertion (RS256, x5t) that the stand-in verifies.
    cert, key = self_signed("intake-app")
    standin.certificate_pem = cert
    bundle = tmp_path / "app-cert.pem"
    bundle.write_bytes(key + cert)
    table = oauth_table(standin, tmp_path, "client_credentials", client_certificate_file=str(bundle),
                        mechanism="xoauth2")
    del table["client_secret_file"]
    conf = write_config(tmp_path, sqlite_config, dovecot, clamd.url, imap=table, name="cert.toml")
    done = intake_cli(conf, "check")
    line = imap_line(done.stdout)
    assert line.startswith("ok") and "with XOAUTH2 works" in line, done.stdout + done.stderr
    assert_nothing_secret([done.stdout, done.stderr], [standin.client_secret, *standin.issued_access])


def test_check_names_an_expired_secret_and_missing_consent_by_their_aadsts_codes(
        tmp_path: Path, sqlite_config: Config, dovecot: Dovecot, clamd: Clamd, standin: StandIn) -> None:
    conf = write_config(tmp_path, sqlite_config, dovecot, clamd.url,
                        imap=oauth_table(standin, tmp_path, "client_credentials"))
    standin.secret_expired = True
    done = intake_cli(conf, "check")
    line = imap_line(done.stdout)
    assert done.returncode == 1 and line.startswith("FAIL")
    assert "AADSTS7000222 (invalid_client): the client secret has expired" in line
    assert "Trace ID" not in line  # the provider's description is not echoed, only its code

    standin.secret_expired, standin.consent_missing = False, True
    done2 = intake_cli(conf, "check")
    assert "AADSTS65001 (invalid_grant): admin consent is missing" in imap_line(done2.stdout)

    # The run refuses to start with one line (a refused client is not worth retrying), no traceback.
    run = intake_cli(conf, "run", "--once")
    assert run.returncode != 0 and "AADSTS65001" in run.stderr and "Traceback" not in run.stderr
    assert_nothing_secret([done.stdout, done.stderr, done2.stdout, done2.stderr, run.stdout, run.stderr],
                          [standin.client_secret])


# -- 3. refresh tokens: device-code login, rotation saved before use ---------------------------------
def test_device_login_stores_the_refresh_token_0600_and_each_rotation_is_saved(
        tmp_path: Path, sqlite_config: Config, dovecot: Dovecot, clamd: Clamd, standin: StandIn) -> None:
    conf = write_config(tmp_path, sqlite_config, dovecot, clamd.url,
                        imap=oauth_table(standin, tmp_path, "refresh_token"))
    store = sqlite_config.data_dir / "oauth2" / "imap-refresh-token"
    done = intake_cli(conf, "imap", "login")
    assert done.returncode == 0, done.stderr
    assert "enter the code ABCD-EFGH" in done.stdout and f"refresh token stored in {store} (0600)" in done.stdout
    assert standin.device_polls == 2  # one authorization_pending, then the sign-in
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    # The login proved the token at once: the device grant's refresh token was used and rotated, and the
    # rotated one is what the file holds (the stand-in never accepts a used one again).
    assert store.read_text().strip() == standin.issued_refresh[-1] and len(standin.issued_refresh) == 2

    for _ in range(2):
        before = store.read_text().strip()
        line = imap_line(intake_cli(conf, "check").stdout)
        assert line.startswith("ok") and "token from refresh token from 127.0.0.1" in line, line
        after = store.read_text().strip()
        assert after != before and after == standin.issued_refresh[-1]
        assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert before not in standin.refresh_tokens  # the old one is dead: had it not been saved, the next would fail

    # A refresh token that is no longer good: one line naming the cause.
    store.write_text("rt.revoked\n")
    line = imap_line(intake_cli(conf, "check").stdout)
    assert line.startswith("FAIL") and "AADSTS70008" in line and "run 'intake imap login' again" in line
    assert_nothing_secret([done.stdout, done.stderr, line], [standin.client_secret, *standin.issued_refresh[:-1],
                                                            *standin.issued_access])


# -- the daemon with tokens from a command (a site's own broker), short-lived ---------------------------
TOKEN_SCRIPT = r'''
import json, sys, time
from pathlib import Path
import jwt
d = Path(sys.argv[1])
now = int(time.time())
lifetime = int((d / "lifetime").read_text())
key = bytes.fromhex((d / ("bad-key" if (d / "mode").read_text().strip() == "bad" else "key")).read_text())
token = jwt.encode({"sub": sys.argv[2], "email": sys.argv[2], "iat": now - 1, "exp": now + lifetime}, key,
                   algorithm="HS256")
with open(d / "issued", "a") as f:
    f.write(json.dumps({"token": token, "at": time.time(), "exp": now + lifetime}) + "\n")
print(token)
'''


def token_broker(tmp_path: Path, dovecot: Dovecot, lifetime: int) -> Path:
    broker = tmp_path / "broker"
    broker.mkdir()
    (broker / "key").write_text(dovecot.oauth2_secret.hex())
    (broker / "bad-key").write_text(os.urandom(32).hex())
    (broker / "lifetime").write_text(str(lifetime))
    (broker / "mode").write_text("good")
    (broker / "mint_token.py").write_text(TOKEN_SCRIPT)
    return broker


def issued(broker: Path) -> list[dict[str, Any]]:
    path = broker / "issued"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def oauth_logins(dovecot: Dovecot) -> list[str]:
    return [line for line in dovecot.log_file.read_text(errors="replace").splitlines()
            if "Login: user=<" in line and ("method=XOAUTH2" in line or "method=OAUTHBEARER" in line)]


def test_a_token_expiring_during_idle_means_a_reconnect_with_a_new_one_and_no_mail_lost_or_doubled(
        tmp_path: Path, sqlite_config: Config, dovecot: Dovecot, clamd: Clamd, engine: Engine) -> None:
    broker = token_broker(tmp_path, dovecot, lifetime=12)  # renewed 4 s before expiry: a new session every ~8 s
    conf = write_config(tmp_path, sqlite_config, dovecot, clamd.url, imap={
        "auth": "oauth2", "token_source": "command", "token_command": [PY, str(broker / "mint_token.py"), str(broker),
                                                                     MAILBOX],
        "token_renew_seconds": 4})
    daemon = Daemon(conf, tmp_path).start()
    sent: list[bytes] = []
    try:
        for batch in range(3):
            mails = [tiny(i, f"b{batch}") for i in range(4)]
            dovecot.append(mails)
            sent += mails
            total = len(sent)
            wait_for(lambda n=total: dovecot.count("Intake.Accepted") + dovecot.count("Intake.Rejected") >= n,
                     90, f"batch {batch} moved")
            # the next batch arrives after at least one more token (so mail meets reconnects and IDLE)
            seen = len(issued(broker))
            wait_for(lambda s=seen: len(issued(broker)) > s, 60, "a reconnect with a fresh token")
        wait_for(lambda: len(oauth_logins(dovecot)) >= 5, 60, "five logins with five tokens")
    finally:
        assert daemon.stop() == 0
    assert_exactly_once(engine, sent)
    assert dovecot.count("INBOX") == 0
    tokens = issued(broker)
    assert len(tokens) >= 5
    # Each new token was fetched before the one before it expired: the session never outlived its token.
    for old, new in itertools.pairwise(tokens):
        assert new["at"] < old["exp"], (new["at"], old["exp"])
    reconnects = [e for e in daemon.logs() if e.get("event") == "reconnect_for_token"]
    assert len(reconnects) >= 4 and not [e for e in daemon.logs() if e.get("event") == "imap_error"]
    assert len(oauth_logins(dovecot)) == len(tokens)  # one login per token: never a refused one
    assert_nothing_secret([daemon.text()], [t["token"] for t in tokens])


def test_a_refused_token_backs_off_raises_mailbox_down_naming_authentication_and_recovers(
        tmp_path: Path, sqlite_config: Config, dovecot: Dovecot, clamd: Clamd, engine: Engine) -> None:
    # Dovecot delays each authentication after a failure from the same address (2, 6, 10, 17 s … measured):
    # a token must outlive that delay, so these live 60 s (a new session every 30 s), not 10.
    broker = token_broker(tmp_path, dovecot, lifetime=60)
    conf = write_config(tmp_path, sqlite_config, dovecot, clamd.url, imap={
        "auth": "oauth2", "token_source": "command", "token_command": [PY, str(broker / "mint_token.py"), str(broker),
                                                                     MAILBOX],
        "token_renew_seconds": 40, "backoff_initial": 0.5, "backoff_max": 2})
    with conf.open("a") as f:
        f.write("[alerts.categories.mailbox_down]\nminutes = 0.1\n")  # 6 s
    daemon = Daemon(conf, tmp_path).start()
    sent = [tiny(1, "before")]
    try:
        dovecot.append(sent)
        wait_for(lambda: dovecot.count("Intake.Accepted") + dovecot.count("Intake.Rejected") == 1, 60, "first mail")
        (broker / "mode").write_text("bad")  # from the next renewal on, Dovecot refuses every token

        def alerts() -> list[tuple[str, dict[str, Any]]]:
            with engine.connect() as conn:
                return [(r.kind, r.payload) for r in conn.execute(
                    select(Alert.kind, Alert.payload).where(Alert.category == "mailbox_down").order_by(Alert.id))]

        wait_for(lambda: alerts(), 90, "mailbox_down")
        kind, payload = alerts()[0]
        assert kind == "down" and payload["problem"] == "auth_failed"
        def errors() -> list[dict[str, Any]]:
            return [e for e in daemon.logs() if e.get("event") == "imap_error"]

        wait_for(lambda: len(errors()) >= 2, 60, "a second refused reconnect")
        assert all("refused: token refused (server: invalid_token)" in e["error"] for e in errors())
        # It backs off (capped exponential, jitter), it does not hammer the server: the attempts count up.
        assert [e["attempts"] for e in errors()][:2] == [1, 2] and all(e["backoff_s"] > 0 for e in errors())
        during = [tiny(2, "during")]
        dovecot.append(during)
        sent += during
        (broker / "mode").write_text("good")
        wait_for(lambda: [k for k, _ in alerts()] == ["down", "recovered"], 90, "mailbox_down recovered")
        wait_for(lambda: dovecot.count("Intake.Accepted") + dovecot.count("Intake.Rejected") == 2, 60, "mail after")
    finally:
        assert daemon.stop() == 0
    assert_exactly_once(engine, sent)

    import datetime as dt

    from daemon.alerts.events import Item, render_single

    item = Item(alert_id=1, category="mailbox_down", kind="down", created_at=dt.datetime.now(dt.UTC), payload=payload)
    text = render_single("a1", item).text
    assert "認証" in text and "AADSTS" in text
    assert_nothing_secret([daemon.text(), json.dumps(alerts())], [t["token"] for t in issued(broker)])
