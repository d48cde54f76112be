"""OAuth 2.0 for IMAP, the parts that need no server: the SASL strings (RFC 7628, Google's XOAUTH2), the choice
of mechanism, the one-line causes (AADSTS codes), token expiry and renewal, the [imap] keys, the command source
(a real child process) and the refresh-token file. The exchanges with Dovecot and a token endpoint are in
tests/integration/test_imap_oauth.py."""

from __future__ import annotations

import base64
import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from daemon.config import Config, ConfigError
from daemon.sources.imap.auth import (
    NoMechanism,
    challenge_status,
    choose_mechanism,
    oauthbearer_response,
    refusal_cause,
    xoauth2_response,
)
from daemon.sources.imap.config import OAuth2Config, load_imap_config
from daemon.sources.imap.tokens import (
    AccessToken,
    CommandSource,
    TokenError,
    TokenSource,
    explain,
    jwt_expiry,
    load_refresh_token,
    save_refresh_token,
)


def _jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}.c2ln"


# -- SASL -------------------------------------------------------------------------------------------------
def test_xoauth2_initial_response_is_googles_format() -> None:
    raw = base64.b64decode(xoauth2_response("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"))
    assert raw == b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"


def test_oauthbearer_initial_response_is_rfc_7628s_example_with_the_authzid_escaped() -> None:
    raw = base64.b64decode(oauthbearer_response("user@example.com", "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
                                                "server.example.com", 143))
    assert raw == (b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
                   b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01")
    odd = base64.b64decode(oauthbearer_response("a,b=c", "t", "h", 1))
    assert odd.startswith(b"n,a=a=2Cb=3Dc,\x01")


def test_auto_prefers_oauthbearer_and_falls_back_to_xoauth2() -> None:
    assert choose_mechanism("auto", {"IMAP4REV1", "AUTH=XOAUTH2", "AUTH=OAUTHBEARER"}) == "OAUTHBEARER"
    assert choose_mechanism("auto", {"IMAP4REV1", "AUTH=PLAIN", "AUTH=XOAUTH2"}) == "XOAUTH2"  # Exchange Online
    assert choose_mechanism("xoauth2", {"AUTH=XOAUTH2", "AUTH=OAUTHBEARER"}) == "XOAUTH2"
    with pytest.raises(NoMechanism, match="offers PLAIN"):
        choose_mechanism("auto", {"IMAP4REV1", "AUTH=PLAIN"})


def test_the_servers_error_challenge_is_read_for_its_status_only() -> None:
    google = base64.b64encode(b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}')
    assert challenge_status(google) == "401"
    assert challenge_status(base64.b64encode(b'{"status":"invalid_token","schemes":"bearer"}')) == "invalid_token"
    assert challenge_status(b"not base64 !!") is None and challenge_status(None) is None
    assert "New-ServicePrincipal" in refusal_cause("client_credentials", "401")
    assert "(server: 401)" in refusal_cause("refresh_token", "401")


# -- causes ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("code", "words"), [
    ("AADSTS7000222", "client secret has expired"),
    ("AADSTS7000215", "client secret is wrong"),
    ("AADSTS65001", "admin consent is missing"),
    ("AADSTS700016", "check imap.client_id and imap.tenant"),
    ("AADSTS90002", "check imap.tenant"),
    ("AADSTS70008", "run 'intake imap login' again"),
])
def test_aadsts_codes_name_the_likely_cause_in_one_line(code: str, words: str) -> None:
    line = explain("invalid_client", f"{code}: something long.\r\nTrace ID: 1\r\nCorrelation ID: 2")
    assert line.startswith(f"{code} (invalid_client): ") and words in line
    assert "\n" not in line and "Trace ID" not in line


def test_other_providers_errors_fall_back_to_rfc_6749_codes() -> None:
    assert "refresh token expired or was revoked" in explain("invalid_grant", "Token has been expired or revoked.")
    assert explain("weird\r\ncode", "") == "weirdcode: the token endpoint refused the request"
    assert explain("invalid_client", "AADSTS999999: new").startswith("AADSTS999999 (invalid_client): the client id")


# -- expiry and renewal ------------------------------------------------------------------------------------
def test_jwt_expiry_is_read_without_verifying() -> None:
    assert jwt_expiry(_jwt({"exp": 1_900_000_000, "sub": "x"})) == 1_900_000_000.0
    assert jwt_expiry("ya29.opaque-google-token") is None
    assert jwt_expiry("a.!!!.c") is None
    assert jwt_expiry(_jwt({"exp": True})) is None


def test_a_token_is_renewed_before_it_expires_at_most_half_its_lifetime_ahead() -> None:
    token = AccessToken(value="t", expires_at=4600.0, obtained_at=1000.0)
    assert token.renew_at(300) == 4300.0
    short = AccessToken(value="t", expires_at=1060.0, obtained_at=1000.0)
    assert short.renew_at(300) == 1030.0  # a 60 s token: renewed after 30 s, not "before it was issued"
    assert "secret-token" not in repr(AccessToken(value="secret-token", expires_at=1, obtained_at=0))


class Counting(TokenSource):
    def __init__(self) -> None:
        self.now = 1000.0
        super().__init__(OAuth2Config(source="command", command=("x",), renew_before=300), clock=lambda: self.now)
        self.fetched = 0

    def _fetch(self) -> AccessToken:
        self.fetched += 1
        return AccessToken(value=f"t{self.fetched}", expires_at=self.now + 3600, obtained_at=self.now)


def test_the_cached_token_serves_until_its_renewal_and_force_fetches_a_new_one() -> None:
    source = Counting()
    assert source.token().value == "t1"
    source.now += 3000
    assert source.token().value == "t1"  # 600 s left: still good
    source.now += 301
    assert source.token().value == "t2"  # within 300 s of expiry: renewed
    assert source.token(force=True).value == "t3"  # after a refused login


# -- the command source: a real child process ---------------------------------------------------------------
def _command(tmp_path: Path, body: str) -> OAuth2Config:
    script = tmp_path / "broker.py"
    script.write_text(body)
    return OAuth2Config(source="command", command=(sys.executable, str(script)), timeout=20)


def test_the_command_prints_a_bare_token_or_json_with_its_lifetime(tmp_path: Path) -> None:
    bare = CommandSource(_command(tmp_path, f"print({_jwt({'exp': 2_000_000_000})!r})")).token()
    assert bare.expires_at == 2_000_000_000.0
    answer = CommandSource(_command(tmp_path, 'import json; print(json.dumps({"access_token": "ya29.abc", '
                                              '"expires_in": 120}))')).token()
    assert answer.value == "ya29.abc" and 119 <= answer.expires_at - answer.obtained_at <= 121


def test_a_failing_command_is_one_line_without_its_stderr(tmp_path: Path) -> None:
    cfg = _command(tmp_path, "import sys; sys.stderr.write('client_secret=hunter2-planted'); sys.exit(3)")
    with pytest.raises(TokenError) as failed:
        CommandSource(cfg).token()
    assert str(failed.value) == "imap.token_command (python): exited with status 3 (run it by hand to see why)"
    with pytest.raises(TokenError, match="not a single printable word"):
        CommandSource(_command(tmp_path, "print('two words')")).token()
    with pytest.raises(TokenError, match="not found"):
        CommandSource(OAuth2Config(source="command", command=(str(tmp_path / "nothing"),))).token()


# -- the refresh-token file -------------------------------------------------------------------------------
def test_the_refresh_token_file_is_0600_and_replaced_whole(tmp_path: Path) -> None:
    store = tmp_path / "data" / "oauth2" / "imap-refresh-token"
    with pytest.raises(TokenError, match="run 'intake imap login' once"):
        load_refresh_token(store)
    save_refresh_token(store, "rt.first")
    save_refresh_token(store, "rt.second")
    assert load_refresh_token(store) == "rt.second"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.parent.stat().st_mode) == 0o700
    assert [p.name for p in store.parent.iterdir()] == ["imap-refresh-token"]  # no temp file left


# -- the [imap] keys ----------------------------------------------------------------------------------------
def _config(tmp_path: Path, imap: dict[str, Any]) -> Config:
    return Config(data_dir=tmp_path / "data", database_url="sqlite://", rules_path=tmp_path / "r.toml",
                  raw={"imap": {"host": "imap.example.jp", "user": "pubcomment@example.go.jp", **imap}})


def test_microsoft_defaults_from_the_tenant(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t\n")
    cfg = load_imap_config(_config(tmp_path, {"auth": "oauth2", "token_source": "client_credentials",
                                              "tenant": "contoso.onmicrosoft.com", "client_id": "app-id",
                                              "client_secret_file": str(secret)}), env={})
    assert cfg is not None and cfg.oauth2 is not None and cfg.password == ""
    o = cfg.oauth2
    assert o.provider == "microsoft" and o.client_secret == "s3cr3t" and o.mechanism == "auto"
    assert o.token_url == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    assert o.scope == "https://outlook.office365.com/.default"
    assert "s3cr3t" not in repr(cfg)
    assert o.refresh_token_file == tmp_path / "data" / "oauth2" / "imap-refresh-token"


def test_gmail_defaults_and_a_public_client(tmp_path: Path) -> None:
    cfg = load_imap_config(_config(tmp_path, {"auth": "oauth2", "token_source": "refresh_token",
                                              "provider": "google", "client_id": "x.apps.googleusercontent.com"}),
                           env={})
    assert cfg is not None and cfg.oauth2 is not None
    assert cfg.oauth2.scope == "https://mail.google.com/" and cfg.oauth2.client_secret is None
    assert cfg.oauth2.token_url == "https://oauth2.googleapis.com/token"


@pytest.mark.parametrize(("imap", "message"), [
    ({"pasword_file": "/x"}, "imap.pasword_file: unknown key (known: account, arrivals_connection, auth, "),
    ({"auth": "kerberos"}, "imap.auth: 'password' or 'oauth2'"),
    ({"auth": "oauth2"}, "imap.token_source: one of client_credentials, refresh_token, command"),
    ({"auth": "oauth2", "token_source": "client_credentials", "client_id": "a", "tenant": "t",
      "client_secret": "in-the-file"}, "imap.client_secret: not allowed in the config file"),
    ({"auth": "oauth2", "token_source": "client_credentials", "client_id": "a", "tenant": "t"},
     "imap: no client secret: set imap.client_secret_file, $INTAKE_IMAP_CLIENT_SECRET or a systemd credential"),
    ({"auth": "oauth2", "token_source": "client_credentials", "provider": "google", "client_id": "a"},
     "Gmail has no client-credentials grant"),
    ({"auth": "oauth2", "token_source": "refresh_token", "client_id": "a"}, "imap.token_url: missing"),
    ({"auth": "oauth2", "token_source": "refresh_token", "client_id": "a", "token_url": "http://idp/token",
      "scope": "s"}, "imap.token_url: must be an https:// URL"),
    ({"auth": "oauth2", "token_source": "command"}, "imap.token_command: the program"),
    ({"auth": "oauth2", "token_source": "command", "token_command": "x", "mechanism": "plain"},
     "imap.mechanism: one of auto, xoauth2, oauthbearer"),
])
def test_bad_imap_keys_are_one_line_naming_the_key(tmp_path: Path, imap: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as bad:
        load_imap_config(_config(tmp_path, imap), env={"INTAKE_IMAP_PASSWORD": "pw"})
    assert message in str(bad.value) and "\n" not in str(bad.value)


def test_the_secret_comes_from_the_environment_or_a_systemd_credential(tmp_path: Path) -> None:
    table = {"auth": "oauth2", "token_source": "client_credentials", "client_id": "a", "tenant": "t"}
    cfg = load_imap_config(_config(tmp_path, table), env={"INTAKE_IMAP_CLIENT_SECRET": "from-env"})
    assert cfg is not None and cfg.oauth2 is not None and cfg.oauth2.client_secret == "from-env"
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "imap-client-secret").write_text("from-credential\n")
    cfg = load_imap_config(_config(tmp_path, table), env={"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")})
    assert cfg is not None and cfg.oauth2 is not None and cfg.oauth2.client_secret == "from-credential"
