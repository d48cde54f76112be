"""The web application's accounts: add, change a password, disable, list, and sign in with a lockout.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's second recommendation). After
`LOCK_AFTER` wrong passwords in a row an account is locked for `LOCK_BASE`, doubling with each further wrong
password up to `LOCK_MAX`; a right password while locked is refused too (it would tell a guesser it was
right). An unknown name costs a hash like a known one, so timing does not tell which names exist.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.logs import get_logger
from daemon.store.db import now_utc
from daemon.store.users import ROLES, User

log = get_logger("accounts")

LOCK_AFTER = 5
LOCK_BASE = dt.timedelta(seconds=30)
LOCK_MAX = dt.timedelta(hours=1)
MIN_PASSWORD = 12
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password of anyone")


class AccountError(Exception):
    """A one-line error for the user (CLI or page)."""


@dataclass
class SignIn:
    user: User | None
    error: str | None  # None when signed in; else what to show (the same words for a wrong name or password)
    locked_until: dt.datetime | None = None


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise AccountError("name: letters, digits and . _ @ - only, starting with a letter or digit, at most 64")
    return name


def check_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD:
        raise AccountError(f"password: at least {MIN_PASSWORD} characters")
    return password


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"role: one of {', '.join(ROLES)}")
    return role


def find(session: Session, name: str) -> User | None:
    return session.scalar(select(User).where(User.name == name))


def add(session: Session, name: str, role: str, password: str) -> User:
    check_name(name)
    check_role(role)
    check_password(password)
    if find(session, name) is not None:
        raise AccountError(f"user {name!r} exists (intake users passwd to change the password)")
    user = User(name=name, role=role, password_hash=_hasher.hash(password), disabled=False, failed_logins=0,
                session_epoch=0)
    session.add(user)
    session.flush()
    log.info("account", action="add", count=1)
    return user


def _need(session: Session, name: str) -> User:
    user = find(session, name)
    if user is None:
        raise AccountError(f"no user {name!r}")
    return user


def set_password(session: Session, name: str, password: str) -> User:
    user = _need(session, name)
    user.password_hash = _hasher.hash(check_password(password))
    user.failed_logins, user.locked_until = 0, None
    user.session_epoch += 1  # every open session of this account ends
    return user


def set_disabled(session: Session, name: str, disabled: bool) -> User:
    user = _need(session, name)
    user.disabled = disabled
    if disabled:
        user.session_epoch += 1
    else:
        user.failed_logins, user.locked_until = 0, None
    return user


def set_role(session: Session, name: str, role: str) -> User:
    user = _need(session, name)
    user.role = check_role(role)
    user.session_epoch += 1
    return user


def all_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))


def lock_for(failures: int) -> dt.timedelta:
    """How long an account stays locked after `failures` wrong passwords in a row (0 below LOCK_AFTER)."""
    if failures < LOCK_AFTER:
        return dt.timedelta(0)
    doublings = min(failures - LOCK_AFTER, 16)  # 30 s × 2^16 is far past the cap already
    return min(LOCK_BASE * (2 ** doublings), LOCK_MAX)


WRONG = "ユーザー名またはパスワードが違います。"
LOCKED = "ログインの失敗が続いたため、しばらくログインできません。時間をおいてやり直してください。"


def sign_in(session: Session, name: str, password: str, now: dt.datetime | None = None) -> SignIn:
    """Check a name and password (in the caller's transaction, which it commits). The same message for an
    unknown name, a wrong password and a disabled account."""
    now = now or now_utc()
    user = find(session, name) if name else None
    if user is None:
        try:
            _hasher.verify(_DUMMY_HASH, password or "-")
        except VerificationError:
            pass
        return SignIn(None, WRONG)
    if user.locked_until is not None and user.locked_until > now:
        return SignIn(None, LOCKED, user.locked_until)
    try:
        ok = _hasher.verify(user.password_hash, password or "")
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok:
        user.failed_logins += 1
        wait = lock_for(user.failed_logins)
        user.locked_until = now + wait if wait else None
        log.warning("sign_in", action="failed", count=user.failed_logins)
        return SignIn(None, LOCKED if wait else WRONG, user.locked_until)
    if user.disabled:
        return SignIn(None, WRONG)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
    return SignIn(user, None)
