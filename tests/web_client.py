"""Signing in to the web application in tests (Starlette's TestClient): the one password of the test
accounts, a page's CSRF token, and a client signed in as an account."""

from __future__ import annotations

import re
from typing import Any

from starlette.testclient import TestClient

PASSWORD = "correct horse battery"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def signed_in(app: Any, name: str) -> TestClient:
    client = TestClient(app)
    token = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"name": name, "password": PASSWORD, "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    return client
