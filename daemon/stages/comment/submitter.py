"""The submitter (R7, R11): the 意見書's fields, the submitter kind and a request for anonymity.

The fields arrive in order of preference (the 意見書 first, then the body, then any other attachment);
the first non-empty value of each field wins. When the mail gives neither telephone nor e-mail, the
sender's address stands in as the e-mail.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.utils import parseaddr
from typing import Any

from daemon.rules import FIELD_NAMES

from .labels import Compiled
from .normalize import normalize

_POSTAL_RE = re.compile(r"(?:〒[ \t]*)?(\d{3}[ \t]*-?[ \t]*\d{4})(?!\d)")


def read_submitter(
    fields: Iterable[tuple[str, str]],
    anon: Iterable[bool],
    from_address: str | None,
    c: Compiled,
    guessed: Iterable[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The submitter dict of the record: kind, every field of FIELD_NAMES (None when absent), anonymous, and
    `guessed`: the fields read from an unlabelled signature block because no label gave them."""
    submitter: dict[str, Any] = {"kind": "unknown", **dict.fromkeys(FIELD_NAMES), "anonymous": False}
    for k, v in fields:
        if submitter.get(k) is None and v:
            submitter[k] = v
    _complete_postal(submitter)
    from_signature: list[str] = []
    for k, v in guessed:
        if submitter.get(k) is None and v:
            submitter[k] = v
            from_signature.append(k)
    anonymous = any(anon) or any(isinstance(v, str) and c.mentions_anonymity(v) for v in submitter.values())
    if submitter["organization"] or submitter["representative"]:
        kind = "organization"
    elif submitter["name"] and c.is_organization_name(submitter["name"]):
        kind = "organization"
        submitter["organization"] = submitter["name"]
    elif submitter["name"]:
        kind = "individual"
    else:
        kind = "unknown"
    sender = _from_address(from_address)
    if submitter["email"] is None and submitter["phone"] is None and sender:
        submitter["email"] = sender
    submitter["kind"] = kind
    submitter["anonymous"] = anonymous
    submitter["guessed"] = [k for k in FIELD_NAMES if k in from_signature]
    return submitter


def _complete_postal(submitter: dict[str, Any]) -> None:
    """〒100-8926 東京都… : split a postal code off a 〒 line; take one out of the address."""
    postal = submitter.get("postal_code")
    if postal:
        n = normalize(postal)
        m = _POSTAL_RE.match(n.norm.strip())
        if m:
            lead = len(n.norm) - len(n.norm.lstrip())
            code = n.slice(lead + m.start(1), lead + m.end(1))
            rest = n.slice(lead + m.end(), len(n.norm)).strip()
            if rest:
                submitter["postal_code"] = code
                if not submitter.get("address"):
                    submitter["address"] = rest
    elif submitter.get("address"):
        n = normalize(submitter["address"])
        m = re.search(r"〒[ \t]*(\d{3}[ \t]*-?[ \t]*\d{4})(?!\d)", n.norm)
        if m:
            submitter["postal_code"] = n.slice(m.start(1), m.end(1))


def _from_address(value: str | None) -> str | None:
    if not value or not value.strip():
        return None
    addr = parseaddr(value)[1]
    return addr if "@" in addr else None
