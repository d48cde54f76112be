"""A real S/MIME-signed mail, signed by the openssl command with a throwaway self-signed certificate."""

from __future__ import annotations

import functools
import subprocess
import tempfile
from pathlib import Path


@functools.cache
def _cert() -> tuple[Path, Path]:
    d = Path(tempfile.mkdtemp(prefix="smime-"))
    key, crt = d / "key.pem", d / "crt.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=intake test",
         "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True,
    )
    return key, crt


def make_smime_signed(mime_entity: bytes) -> bytes:
    """Sign a MIME entity (headers + body, CRLF) as multipart/signed with application/pkcs7-signature."""
    key, crt = _cert()
    signed = subprocess.run(
        ["openssl", "smime", "-sign", "-signer", str(crt), "-inkey", str(key), "-crlfeol"],
        input=mime_entity, check=True, capture_output=True,
    ).stdout
    head = (
        b"From: signer@example.jp\r\nTo: security-ai@example.go.jp\r\nSubject: signed\r\n"
        b"Received: from mx by mail; Sat, 10 Jan 2026 09:00:00 +0900\r\n"
    )
    return head + signed.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
