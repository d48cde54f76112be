"""Real parts for the tests: a real clamd (started here), a real SQLite file and, when
INTAKE_TEST_POSTGRES_URL is set (CI sets it), the real PostgreSQL — every DB test runs on both."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from daemon import logs
from daemon.config import PACKAGE_ROOT, Config, ScanConfig
from daemon.pipeline import Intake
from daemon.rules import load_rules
from daemon.store import migrate
from daemon.store.db import make_engine
from devkit.clamd import Clamd
from devkit.dovecot import Dovecot

CORPUS = (PACKAGE_ROOT.parent / "shared" / "corpus" / "real").resolve()
if not CORPUS.exists():
    CORPUS = Path(os.environ.get("INTAKE_CORPUS", "/work/shared/corpus/real"))
RULES = PACKAGE_ROOT / "rules" / "consultation.toml"
PG_URL = os.environ.get("INTAKE_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgres"] if PG_URL else [])
def all_tables() -> list[str]:
    # every mapped table, also those whose module no test has imported yet (else TRUNCATE would miss them)
    import daemon.store.review
    import daemon.store.users  # noqa: F401
    from daemon.store.db import Base

    return [t.name for t in Base.metadata.sorted_tables]


@pytest.fixture(scope="session")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    daemon = Clamd(tmp_path_factory.mktemp("clamd"))
    daemon.start()
    yield daemon
    daemon.stop()


@contextlib.contextmanager
def fresh_database(backend: str, folder: Path, prefix: str = "intake_test") -> Iterator[str]:
    """A new, migrated database for a module or a session: a SQLite file in `folder`, or a PostgreSQL database
    of its own on INTAKE_TEST_POSTGRES_URL's server, dropped afterwards."""
    if backend == "sqlite":
        url = f"sqlite:///{folder / 'intake.db'}"
        migrate.upgrade(url)
        yield url
        return
    assert PG_URL, "PostgreSQL tests need INTAKE_TEST_POSTGRES_URL"
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """A fresh PostgreSQL database for this test session, migrated once, dropped at the end."""
    if not PG_URL:
        yield None
        return
    with fresh_database("postgres", tmp_path_factory.mktemp("pg")) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path, pg_database: str | None) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'intake.db'}"
        migrate.upgrade(url)
        yield url
        return
    assert pg_database is not None
    engine = make_engine(pg_database)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(all_tables())} RESTART IDENTITY CASCADE"))
    engine.dispose()
    yield pg_database


@pytest.fixture
def config(tmp_path: Path, db_url: str, clamd: Clamd) -> Config:
    return Config(
        data_dir=tmp_path / "data",
        database_url=db_url,
        rules_path=RULES,
        scan=ScanConfig(clamd=clamd.url, timeout=30),
    )


@pytest.fixture
def env(config: Config, clamd: Clamd) -> dict[str, str]:
    """Environment for running the `intake` CLI against this test's database and clamd."""
    return {
        **os.environ,
        "INTAKE_DATABASE_URL": config.database_url,
        "INTAKE_DATA_DIR": str(config.data_dir),
        "INTAKE_RULES": str(config.rules_path),
        "INTAKE_CLAMD": clamd.url,
        "INTAKE_CONFIG": "/dev/null",
    }


@pytest.fixture
def intake(config: Config) -> Iterator[Intake]:
    logs.configure("WARNING")
    it = Intake.from_config(config, load_rules(config.rules_path))
    it.raw_store.init()
    yield it
    it.sessions.kw["bind"].dispose()


def dovecot_dir() -> Path:
    """Outside pytest's tmp tree: pytest resets /tmp/pytest-of-<user> to 0700 whenever a run starts, and
    Dovecot's auth and mail processes (other users) must traverse every folder above their files."""
    return Path(tempfile.mkdtemp(prefix="intake-test-dovecot-"))


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A throwaway Dovecot with an empty mailbox, for one test."""
    server = Dovecot(dovecot_dir())
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture
def engine(config: Config) -> Iterator[Engine]:
    eng = make_engine(config.database_url)
    yield eng
    eng.dispose()
