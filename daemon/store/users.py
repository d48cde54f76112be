"""The web application's local accounts (`users`, migration 0007): who may sign in to `intake web`, and how.

The row holds an argon2 hash, never a password. `failed_logins` / `locked_until` are the lockout with
back-off; `session_epoch` is part of every session cookie, so raising it (a new password, a disable) ends
every session of that account at its next request.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from daemon.store.db import Base, IdType, UTCDateTime, now_utc

VIEWER, REVIEWER, ADMIN = "viewer", "reviewer", "admin"
ROLES = (VIEWER, REVIEWER, ADMIN)  # each may do what the ones before it may


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("name", name="uq_users_name"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(Text)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=now_utc)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=now_utc, onupdate=now_utc)

    def may(self, role: str) -> bool:
        """Whether this account has `role` or a higher one."""
        return ROLES.index(self.role) >= ROLES.index(role)
