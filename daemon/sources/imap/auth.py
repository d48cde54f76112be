"""SASL for OAuth 2.0 bearer tokens: XOAUTH2 (Google's and Microsoft's) and OAUTHBEARER (RFC 7628), and what a
refused token most likely means. Pure functions; the AUTHENTICATE exchange itself is in client.py.

For a shared mailbox the login user is the mailbox's address (the token is the application's or the person's
who has access); the SASL strings carry it as `user=` (XOAUTH2) or the GS2 authzid `a=` (OAUTHBEARER).
"""

from __future__ import annotations

import base64
import binascii
import json

XOAUTH2 = "XOAUTH2"
OAUTHBEARER = "OAUTHBEARER"


class NoMechanism(Exception):
    """The server offers no OAuth 2.0 mechanism we may use."""


def xoauth2_response(user: str, token: str) -> str:
    """The base64 initial response of XOAUTH2: user=<user>^Aauth=Bearer <token>^A^A."""
    return base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode("ascii")


def _saslname(value: str) -> str:
    # RFC 5801 §4: ',' and '=' in the authzid are written =2C and =3D.
    return value.replace("=", "=3D").replace(",", "=2C")


def oauthbearer_response(user: str, token: str, host: str, port: int) -> str:
    """The base64 initial response of OAUTHBEARER (RFC 7628 §3.1): a GS2 header naming the user, then
    host, port and the bearer token as key=value pairs separated by ^A."""
    message = f"n,a={_saslname(user)},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"
    return base64.b64encode(message.encode()).decode("ascii")


# After a failure the server sends a challenge (a JSON error); the client must answer before the tagged NO:
# an empty line for XOAUTH2, the single byte ^A (base64 "AQ==") for OAUTHBEARER (RFC 7628 §3.2.3).
ABORT_RESPONSE = {XOAUTH2: "", OAUTHBEARER: "AQ=="}


def choose_mechanism(preference: str, capabilities: set[str]) -> str:
    """`auto`: OAUTHBEARER where the server offers it (the standard one), else XOAUTH2."""
    offered = {c.upper() for c in capabilities}
    wanted = [OAUTHBEARER, XOAUTH2] if preference == "auto" else [preference.upper()]
    for mech in wanted:
        if f"AUTH={mech}" in offered:
            return mech
    names = sorted(c.split("=", 1)[1] for c in offered if c.startswith("AUTH="))
    raise NoMechanism(f"the server offers no {' or '.join(wanted)} (it offers {', '.join(names) or 'none'}): "
                      "check imap.mechanism and that OAuth is enabled for IMAP on the server")


def challenge_status(challenge: bytes | None) -> str | None:
    """The `status` of the server's error challenge ({"status":"invalid_token",…} or Google's "400"), if any."""
    if not challenge:
        return None
    try:
        data = json.loads(base64.b64decode(challenge.strip(), validate=True))
    except (ValueError, binascii.Error):
        return None
    status = data.get("status") if isinstance(data, dict) else None
    if not isinstance(status, str | int):
        return None
    return "".join(c for c in str(status) if c.isalnum() or c in "_-")[:32] or None


def refusal_cause(source: str, status: str | None) -> str:
    """One line: why a server most likely refused a token the identity provider did issue."""
    said = f" (server: {status})" if status else ""
    if source == "client_credentials":
        return ("token refused" + said + ": the app has no access to this mailbox, or imap.user is not the "
                "mailbox's address. Exchange Online: register the app's service principal (New-ServicePrincipal) "
                "and grant it the mailbox (Add-MailboxPermission -AccessRights FullAccess); check that "
                "IMAP.AccessAsApp has admin consent")
    if source == "refresh_token":
        return ("token refused" + said + ": the signed-in account has no access to this mailbox, imap.user is "
                "not the mailbox's address, or IMAP is disabled for it")
    return ("token refused" + said + ": the token from imap.token_command is not valid for this mailbox "
            "(audience, scope, expiry or imap.user)")
