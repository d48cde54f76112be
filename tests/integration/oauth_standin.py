"""A stand-in for Microsoft's (and any OAuth 2.0 provider's) token endpoint, for the OAuth 2.0 IMAP tests.

**Not a real identity provider.** login.microsoftonline.com and oauth2.googleapis.com cannot be reached from
these machines, so this small HTTPS server on 127.0.0.1 (a self-signed certificate the client must be told to
trust, as a real deployment behind a TLS-inspecting proxy would be) answers the requests our token sources send,
in Microsoft's shapes: `/<tenant>/oauth2/v2.0/token` (client credentials with a secret or a certificate
assertion, refresh grants with rotation, the device-code grant) and `/<tenant>/oauth2/v2.0/devicecode`. Its
errors are Microsoft's real AADSTS bodies (an expired client secret, missing consent). The access tokens it
issues are signed for the test's Dovecot (`Dovecot.sign_token`), which is the real part that checks them.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import ssl
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def self_signed(common_name: str, san_ip: str | None = None) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM), RSA 2048, valid two days."""
    import ipaddress

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=2)))
    if san_ip:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san_ip))]),
                                        critical=False)
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def aadsts(status: int, error: str, code: int, text: str) -> tuple[int, dict[str, Any]]:
    """A body as Microsoft's token endpoint sends it (error_description with CRLF and trace lines)."""
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return status, {
        "error": error,
        "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\n"
                             f"Timestamp: {stamp}",
        "error_codes": [code], "timestamp": stamp, "trace_id": trace, "correlation_id": corr,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }


@dataclass
class StandIn:
    """The endpoint's state; the test flips `secret_expired` / `consent_missing` and reads the counters."""

    issue: Callable[[], str]  # makes an access token for the mailbox (signed for the test's Dovecot)
    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    client_secret: str = field(default_factory=lambda: "sec~" + secrets.token_urlsafe(24))
    tenant: str = "contoso.onmicrosoft.com"
    certificate_pem: bytes | None = None  # the app registration's uploaded certificate (assertions)
    secret_expired: bool = False
    consent_missing: bool = False
    lifetime: int = 3599
    refresh_tokens: set[str] = field(default_factory=set)  # the ones still good (each is used once)
    issued_refresh: list[str] = field(default_factory=list)
    issued_access: list[str] = field(default_factory=list)
    grants: list[str] = field(default_factory=list)
    device_polls: int = 0
    port: int = 0
    cafile: Path | None = None
    _server: ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}/{self.tenant}/oauth2/v2.0"

    @property
    def token_url(self) -> str:
        return f"{self.base}/token"

    @property
    def device_url(self) -> str:
        return f"{self.base}/devicecode"

    def new_refresh_token(self) -> str:
        value = "rt." + secrets.token_urlsafe(32)
        self.refresh_tokens.add(value)
        self.issued_refresh.append(value)
        return value

    # -- the grants ---------------------------------------------------------------------------------
    def _client_ok(self, form: dict[str, str]) -> tuple[int, dict[str, Any]] | None:
        if form.get("client_id") != self.client_id:
            return aadsts(400, "unauthorized_client", 700016,
                          f"Application with identifier '{form.get('client_id')}' was not found in the directory "
                          f"'{self.tenant}'.")
        if form.get("client_assertion_type") == ASSERTION_TYPE:
            assert self.certificate_pem is not None
            cert = x509.load_pem_x509_certificate(self.certificate_pem)
            try:
                header = jwt.get_unverified_header(form["client_assertion"])
                claims = jwt.decode(form["client_assertion"], cert.public_key(), algorithms=["RS256"],  # type: ignore[arg-type]
                                    audience=self.token_url)
            except jwt.PyJWTError:
                return aadsts(401, "invalid_client", 700027, "Client assertion failed signature validation.")
            import base64
            import hashlib

            thumb = base64.urlsafe_b64encode(hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).digest())
            if header.get("x5t") != thumb.rstrip(b"=").decode() or claims.get("iss") != self.client_id \
                    or claims.get("sub") != self.client_id:
                return aadsts(401, "invalid_client", 700027, "Client assertion contains an invalid signature.")
            return None
        if "client_secret" in form:
            if self.secret_expired:
                return aadsts(401, "invalid_client", 7000222,
                              f"The provided client secret keys for app '{self.client_id}' are expired. Visit the "
                              "Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or "
                              "consider using certificate credentials for added security: https://aka.ms/certCreds.")
            if form["client_secret"] != self.client_secret:
                return aadsts(401, "invalid_client", 7000215,
                              "Invalid client secret provided. Ensure the secret being sent in the request is the "
                              "client secret value, not the client secret ID, for a secret added to app "
                              f"'{self.client_id}'.")
        return None

    def _access(self, refresh: bool) -> tuple[int, dict[str, Any]]:
        token = self.issue()
        self.issued_access.append(token)
        body: dict[str, Any] = {"token_type": "Bearer", "expires_in": self.lifetime, "ext_expires_in": self.lifetime,
                                "access_token": token}
        if refresh:
            body["refresh_token"] = self.new_refresh_token()
            body["scope"] = "https://outlook.office365.com/IMAP.AccessAsUser.All"
        return 200, body

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant = form.get("grant_type", "")
        self.grants.append(grant)
        refused = self._client_ok(form)
        if refused is not None:
            return refused
        if self.consent_missing:
            return aadsts(400, "invalid_grant", 65001,
                          f"The user or administrator has not consented to use the application with ID "
                          f"'{self.client_id}' named 'intake'. Send an interactive authorization request for this "
                          "user and resource.")
        if grant == "client_credentials":
            if form.get("scope") != "https://outlook.office365.com/.default":
                return aadsts(400, "invalid_scope", 70011, "The provided value for the input parameter 'scope' "
                                                           "is not valid.")
            return self._access(refresh=False)
        if grant == "refresh_token":
            current = form.get("refresh_token", "")
            if current not in self.refresh_tokens:
                return aadsts(400, "invalid_grant", 70008, "The provided authorization code or refresh token has "
                                                           "expired due to inactivity.")
            self.refresh_tokens.discard(current)  # strict rotation: an old refresh token is never good again
            return self._access(refresh=True)
        if grant == DEVICE_GRANT:
            self.device_polls += 1
            if self.device_polls < 2:
                return 400, {"error": "authorization_pending",
                             "error_description": "AADSTS70016: OAuth 2.0 device flow error. Authorization is "
                                                  "pending. Continue polling."}
            return self._access(refresh=True)
        return 400, {"error": "unsupported_grant_type"}

    def device_code(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("client_id") != self.client_id:
            return aadsts(400, "unauthorized_client", 700016, "Application not found.")
        return 200, {"user_code": "ABCD-EFGH", "device_code": secrets.token_urlsafe(16),
                     "verification_uri": "https://microsoft.com/devicelogin", "expires_in": 60, "interval": 1,
                     "message": "To sign in, use a web browser to open the page https://microsoft.com/devicelogin "
                                "and enter the code ABCD-EFGH to authenticate."}

    # -- the server ---------------------------------------------------------------------------------
    def start(self, workdir: Path) -> StandIn:
        cert, key = self_signed("127.0.0.1", "127.0.0.1")
        workdir.mkdir(parents=True, exist_ok=True)
        self.cafile = workdir / "standin-cert.pem"
        self.cafile.write_bytes(cert)
        (workdir / "standin-key.pem").write_bytes(key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cafile, workdir / "standin-key.pem")
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name for it
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if self.path.endswith("/oauth2/v2.0/token"):
                    status, body = state.token(form)
                elif self.path.endswith("/oauth2/v2.0/devicecode"):
                    status, body = state.device_code(form)
                else:
                    status, body = 404, {"error": "not_found"}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
