"""OAuth 2.0 access tokens for the IMAP login: where they come from, when they are renewed, what a refusal means.

Three sources (imap.token_source), one interface (`TokenSource.token()`):

- `client_credentials`: the app-only grant (Exchange Online's IMAP.AccessAsApp), with a client secret or a
  certificate (a signed client assertion, RFC 7523, with the `x5t` thumbprint header Microsoft asks for);
- `refresh_token`: the delegated grant; `intake imap login` stores the first refresh token (device-code login,
  RFC 8628), and each rotated one is saved (0600, fsync'd, renamed) before the access token it came with is used;
- `command`: an external program prints the token (a site's own token broker), as mutt and msmtp allow.

The token requests go through Authlib's generic OAuth 2.0 client rather than MSAL: one well-kept library serves
Microsoft, Google and a site's own identity provider alike, needs only the token URL (MSAL also insists on
discovering a Microsoft authority), and signs the certificate assertion. The Microsoft specifics that matter
here — the token URL, the `.default` scope, the `x5t` header and the AADSTS codes — are a few lines of data.

A token is cached and renewed `renew_before` seconds (at most half its lifetime) before it expires; the watcher
reconnects at the same moment, so a long IDLE never outlives its token. Nothing here puts a token, a refresh
token or a secret into an exception text or a log line: every error is one line naming the likely cause.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from daemon.logs import get_logger
from daemon.sources.imap.config import OAuth2Config

log = get_logger("imap")

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
UNKNOWN_LIFETIME = 55 * 60  # a token whose expiry nobody says (an opaque token from a command): Google's ~1 hour

# Microsoft's AADSTS codes that a mailbox set-up meets, each with the likely cause and what to do.
AADSTS_CAUSES = {
    "AADSTS7000215": "the client secret is wrong: copy the secret's value (not its id) into the credential",
    "AADSTS7000222": "the client secret has expired: add a new one in the app registration "
                     "(Certificates & secrets) and update the credential",
    "AADSTS700016": "the application (client id) is not in this tenant: check imap.client_id and imap.tenant",
    "AADSTS90002": "the tenant does not exist: check imap.tenant",
    "AADSTS900023": "the tenant is not a valid tenant id or domain: check imap.tenant",
    "AADSTS65001": "admin consent is missing: grant admin consent for the app's IMAP permission "
                   "(IMAP.AccessAsApp, or IMAP.AccessAsUser.All for delegated login)",
    "AADSTS650057": "the app registration lacks the permission: add Office 365 Exchange Online › "
                    "IMAP.AccessAsApp and grant admin consent",
    "AADSTS500011": "the resource of the scope is not in this tenant: check imap.scope "
                    "(https://outlook.office365.com/.default)",
    "AADSTS70011": "the scope is not valid for this grant: check imap.scope",
    "AADSTS700027": "the client assertion's signature does not verify: upload this certificate to the app "
                    "registration (Certificates & secrets)",
    "AADSTS700024": "the client assertion is outside its validity: check the clock of this machine",
    "AADSTS7000218": "the app needs a client secret or certificate (or 'Allow public client flows' for "
                     "device-code login)",
    "AADSTS70008": "the refresh token has expired: run 'intake imap login' again",
    "AADSTS700082": "the refresh token has expired after inactivity: run 'intake imap login' again",
    "AADSTS50173": "the refresh token was revoked (password changed?): run 'intake imap login' again",
    "AADSTS50076": "multi-factor authentication is required: run 'intake imap login' again",
    "AADSTS53003": "blocked by a Conditional Access policy: ask the tenant's administrator",
    "AADSTS50034": "the user account does not exist in this tenant",
    "AADSTS50057": "the user account is disabled",
    "AADSTS70043": "the refresh token expired under a Conditional Access sign-in frequency: run "
                   "'intake imap login' again",
}

# RFC 6749 §5.2 (and RFC 8628) error codes, for providers that give no code of their own.
OAUTH_CAUSES = {
    "invalid_client": "the client id or its secret/certificate is wrong or expired",
    "unauthorized_client": "this client may not use this grant (app registration / domain-wide delegation)",
    "invalid_grant": "the grant was refused: the refresh token expired or was revoked, or consent is missing "
                     "(for a refresh token: run 'intake imap login' again)",
    "invalid_scope": "the scope is not valid for this client: check imap.scope",
    "access_denied": "the sign-in was declined",
    "expired_token": "the device code expired before the sign-in finished: run 'intake imap login' again",
    "consent_required": "consent is missing: grant admin consent for the app's IMAP permission",
    "interaction_required": "the account needs an interactive sign-in: run 'intake imap login' again",
}


class TokenError(Exception):
    """No token. str() is one line naming the likely cause and never holds a token or a secret.
    `refused`: the identity provider refused the credentials (retrying will not help; at start it is fatal)."""

    def __init__(self, text: str, refused: bool = False) -> None:
        super().__init__(text)
        self.refused = refused


@dataclass(frozen=True)
class AccessToken:
    value: str = field(repr=False)
    expires_at: float  # seconds since the epoch
    obtained_at: float

    def renew_at(self, renew_before: float) -> float:
        """When to renew it (and reconnect): renew_before ahead of its expiry, at most half its lifetime."""
        lifetime = max(0.0, self.expires_at - self.obtained_at)
        return self.expires_at - min(renew_before, lifetime / 2)


def explain(error: str, description: str = "") -> str:
    """One line for a token endpoint's error: the provider's code (AADSTS…) when it gives one, and the likely
    cause. The description itself is not repeated (it may name accounts); only its code is."""
    code = re.search(r"\bAADSTS\d+\b", description or "")
    if code:
        cause = AADSTS_CAUSES.get(code.group(0)) or OAUTH_CAUSES.get(error) or "see Microsoft's AADSTS code list"
        return f"{code.group(0)} ({error or 'error'}): {cause}"
    safe = re.sub(r"[^A-Za-z0-9_.-]", "", error or "")[:40] or "error"
    return f"{safe}: {OAUTH_CAUSES.get(safe, 'the token endpoint refused the request')}"


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT access token (Microsoft's are JWTs), read without verifying: only the server
    that receives the token needs to trust it; we only need to know when to renew it."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def save_refresh_token(path: Path, value: str) -> None:
    """Write the refresh token durably and privately: a 0600 temp file, fsync'd, renamed, folder fsync'd."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, value.encode("utf-8") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def load_refresh_token(path: Path) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise TokenError(f"no refresh token stored at {path}: run 'intake imap login' once", refused=True) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"the refresh token file {path} cannot be read ({exc.__class__.__name__})",
                         refused=True) from None
    if not value:
        raise TokenError(f"the refresh token file {path} is empty: run 'intake imap login'", refused=True)
    return value


def certificate_parts(pem: str) -> tuple[str, str]:
    """(the private key PEM, the x5t header: base64url of the certificate's SHA-1) from one PEM bundle."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise TokenError("the client certificate must be one PEM file holding the private key (unencrypted) "
                         "and the certificate", refused=True) from None
    der = cert.public_bytes(serialization.Encoding.DER)
    thumb = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()  # x5t is defined as SHA-1
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem, thumb


class TokenSource:
    """A cached access token, renewed before it expires; `token(force=True)` after a refused login.
    Thread-safe: the watcher asks from a worker thread, `intake check` from the main one."""

    def __init__(self, cfg: OAuth2Config, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.clock = clock
        self._cached: AccessToken | None = None
        self._lock = threading.Lock()

    def token(self, force: bool = False) -> AccessToken:
        with self._lock:
            cached = self._cached
            if not force and cached is not None and self.clock() < cached.renew_at(self.cfg.renew_before):
                return cached
            self._cached = None
            fresh = self._fetch()
            self._cached = fresh
            log.info("oauth2_token", source=self.cfg.source,
                     detail=f"expires in {max(0, int(fresh.expires_at - self.clock()))} s")
            return fresh

    def describe(self) -> str:
        return self.cfg.source.replace("_", " ")

    def _fetch(self) -> AccessToken:
        raise NotImplementedError

    def _token_from(self, value: Any, expires_in: Any = None) -> AccessToken:
        if not isinstance(value, str) or not value.strip():
            raise TokenError(f"{self.describe()}: the answer holds no access_token")
        value = value.strip()
        if any(c.isspace() or ord(c) < 0x21 or ord(c) > 0x7E for c in value):
            raise TokenError(f"{self.describe()}: the access token is not a single printable word")
        now = self.clock()
        expires_at = jwt_expiry(value)
        with contextlib.suppress(TypeError, ValueError):
            if expires_in is not None:
                expires_at = now + float(expires_in)
        return AccessToken(value=value, expires_at=expires_at or now + UNKNOWN_LIFETIME, obtained_at=now)


class _EndpointSource(TokenSource):
    """A token endpoint over HTTPS (Authlib's OAuth 2.0 client on requests)."""

    def describe(self) -> str:
        host = urlparse(self.cfg.token_url).hostname or "?"
        return f"{self.cfg.source.replace('_', ' ')} from {host}"

    def _session(self, secret: str | None = None, method: str | None = None) -> Any:
        from authlib.integrations.requests_client import OAuth2Session

        return OAuth2Session(self.cfg.client_id, secret, scope=self.cfg.scope,
                             token_endpoint_auth_method=method or ("client_secret_post" if secret else "none"))

    def _request(self, call: Callable[..., Any], **params: Any) -> dict[str, Any]:
        """Run a token request; every failure becomes one TokenError line (never the secret or a token)."""
        import requests
        from authlib.integrations.base_client import OAuthError

        try:
            token = call(self.cfg.token_url, verify=self.cfg.cafile or True, timeout=self.cfg.timeout, **params)
        except OAuthError as exc:
            raise TokenError(f"{self.describe()}: refused: {explain(exc.error, exc.description or '')}",
                             refused=True) from None
        except requests.exceptions.SSLError:
            raise TokenError(f"{self.describe()}: TLS failed: check imap.token_cafile / the proxy's certificate") \
                from None
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise TokenError(f"{self.describe()}: the token endpoint failed (HTTP {status})") from None
        except requests.exceptions.RequestException as exc:
            raise TokenError(f"{self.describe()}: unreachable ({exc.__class__.__name__}): check imap.token_url "
                             "and the network / proxy") from None
        except ValueError:
            raise TokenError(f"{self.describe()}: the token endpoint did not answer with a token (JSON)") from None
        return dict(token)


class ClientCredentialsSource(_EndpointSource):
    """App-only: client id + secret, or client id + certificate (a client assertion signed with its key)."""

    def _fetch(self) -> AccessToken:
        cfg = self.cfg
        if cfg.client_certificate:
            from authlib.oauth2.rfc7523 import PrivateKeyJWT

            key_pem, thumb = certificate_parts(cfg.client_certificate)
            session = self._session(key_pem, "private_key_jwt")
            session.register_client_auth_method(PrivateKeyJWT(cfg.token_url, headers={"x5t": thumb}, alg="RS256"))
            # Microsoft wants client_id beside the assertion; Authlib's private_key_jwt sends only the assertion.
            token = self._request(session.fetch_token, grant_type="client_credentials", client_id=cfg.client_id)
        else:
            session = self._session(cfg.client_secret)
            token = self._request(session.fetch_token, grant_type="client_credentials")
        return self._token_from(token.get("access_token"), token.get("expires_in"))


class RefreshTokenSource(_EndpointSource):
    """Delegated: the stored refresh token buys an access token; a rotated refresh token is saved first."""

    def _fetch(self) -> AccessToken:
        cfg = self.cfg
        store = cfg.refresh_token_file
        current = load_refresh_token(store)
        session = self._session(cfg.client_secret)
        token = self._request(session.refresh_token, refresh_token=current)
        rotated = token.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != current:
            try:
                save_refresh_token(store, rotated)  # before the access token is used: a crash must not lose it
            except OSError as exc:
                raise TokenError(f"the rotated refresh token cannot be saved to {store} ({exc.__class__.__name__}): "
                                 "fix the data dir's permissions or space, then run 'intake imap login'") from None
            log.info("oauth2_refresh_token_rotated", path_kind="data_dir")
        return self._token_from(token.get("access_token"), token.get("expires_in"))


class CommandSource(TokenSource):
    """An external program prints the token: a bare token on its first line, or a JSON object with
    access_token (and expires_in). Its stderr is never shown: it may hold secrets."""

    def describe(self) -> str:
        return f"imap.token_command ({Path(self.cfg.command[0]).name})"

    def _fetch(self) -> AccessToken:
        try:
            done = subprocess.run(list(self.cfg.command), capture_output=True, text=True, timeout=self.cfg.timeout,
                                  stdin=subprocess.DEVNULL, check=False)
        except FileNotFoundError:
            raise TokenError(f"{self.describe()}: not found", refused=True) from None
        except PermissionError:
            raise TokenError(f"{self.describe()}: not executable", refused=True) from None
        except subprocess.TimeoutExpired:
            raise TokenError(f"{self.describe()}: no token within {self.cfg.timeout:g} s") from None
        except OSError as exc:
            raise TokenError(f"{self.describe()}: cannot run ({exc.__class__.__name__})") from None
        if done.returncode != 0:
            raise TokenError(f"{self.describe()}: exited with status {done.returncode} (run it by hand to see why)")
        out = done.stdout.strip()
        if out.startswith("{"):
            try:
                answer = json.loads(out)
            except ValueError:
                raise TokenError(f"{self.describe()}: printed JSON that does not parse") from None
            if not isinstance(answer, dict):
                raise TokenError(f"{self.describe()}: printed JSON that is not an object")
            return self._token_from(answer.get("access_token"), answer.get("expires_in"))
        return self._token_from(out.splitlines()[0] if out else "")


def make_source(cfg: OAuth2Config) -> TokenSource:
    if cfg.source == "client_credentials":
        return ClientCredentialsSource(cfg)
    if cfg.source == "refresh_token":
        return RefreshTokenSource(cfg)
    return CommandSource(cfg)


# -- the first refresh token: device-code login (RFC 8628), for `intake imap login` --------------------
def device_login(cfg: OAuth2Config, show: Callable[[str], None], sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
    """Ask for a device code, show the person where to sign in, poll until they did, store the refresh token."""
    import requests

    if not cfg.device_code_url:
        raise TokenError("imap.device_code_url: missing (the provider's device authorization endpoint)",
                         refused=True)
    source = RefreshTokenSource(cfg)
    host = urlparse(cfg.device_code_url).hostname or "?"
    data = {"client_id": cfg.client_id, "scope": cfg.scope}
    if cfg.client_secret:
        data["client_secret"] = cfg.client_secret
    try:
        resp = requests.post(cfg.device_code_url, data=data, timeout=cfg.timeout, verify=cfg.cafile or True)
        answer = resp.json()
    except requests.exceptions.RequestException as exc:
        raise TokenError(f"device login at {host}: unreachable ({exc.__class__.__name__})") from None
    except ValueError:
        raise TokenError(f"device login at {host}: no JSON answer (HTTP {resp.status_code})") from None
    if not isinstance(answer, dict) or "error" in answer or "device_code" not in answer:
        answer = answer if isinstance(answer, dict) else {}
        raise TokenError(f"device login at {host}: refused: "
                         f"{explain(str(answer.get('error', 'error')), str(answer.get('error_description', '')))}",
                         refused=True)
    uri = answer.get("verification_uri") or answer.get("verification_url") or "?"
    show(str(answer.get("message") or f"Open {uri} and enter the code {answer.get('user_code')}"))
    interval = float(answer.get("interval") or 5)
    deadline = clock() + float(answer.get("expires_in") or 900)
    session = source._session(cfg.client_secret)
    while clock() < deadline:
        sleep(interval)
        try:
            token = source._request(session.fetch_token, grant_type=DEVICE_GRANT,
                                    device_code=answer["device_code"])
        except TokenError as exc:
            text = str(exc)
            if "authorization_pending" in text:
                continue
            if "slow_down" in text:
                interval += 5
                continue
            raise
        refresh = token.get("refresh_token")
        if not isinstance(refresh, str) or not refresh:
            raise TokenError("the sign-in gave no refresh token: the scope must include offline_access "
                             "(Microsoft) or the client must allow offline access", refused=True)
        save_refresh_token(cfg.refresh_token_file, refresh)
        return
    raise TokenError("the device code expired before the sign-in finished: run 'intake imap login' again",
                     refused=True)
