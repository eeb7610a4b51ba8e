"""Shared pytest fixtures. Each group sits under its own heading; add new groups below."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from support import Silos, breast_silos, pg_schema

# --- databases (silo data layer) ------------------------------------------------------------------
# PostgreSQL is a first-class backend, so tests run against a real server: 127.0.0.1:5432,
# database `test`, trust auth as `postgres` or `root` (FEDSILO_TEST_PG_URL overrides). Each test
# gets its own schema (the URL sets search_path), dropped afterwards. Without a server the test
# SKIPS, except under CI=true where it FAILS, so CI cannot pass by silently skipping.

PG_CANDIDATES = tuple(
    [os.environ["FEDSILO_TEST_PG_URL"]]
    if os.environ.get("FEDSILO_TEST_PG_URL")
    else [f"postgresql+psycopg://{user}@127.0.0.1:5432/test" for user in ("postgres", "root")]
)


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _find_pg() -> tuple[str | None, str]:
    reasons = []
    for url in PG_CANDIDATES:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return url, ""
        except Exception as err:  # any failure means "no usable server at this URL"
            reasons.append(f"{make_url(url).username}: {_first_line(err)}")
        finally:
            engine.dispose()
    return None, "; ".join(reasons)


@pytest.fixture(scope="session")
def pg_server() -> str:
    """URL of a reachable PostgreSQL server (skip, or fail under CI=true, when there is none)."""
    url, why = _find_pg()
    if url is None:
        msg = f"no PostgreSQL server answered ({why})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{msg}; CI=true forbids skipping PostgreSQL tests", pytrace=False)
        pytest.skip(msg)
    return url


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A PostgreSQL URL confined to a fresh schema (its search_path), dropped after the test.

    Dispose every engine made from it before the test ends: an open transaction would block
    the DROP (bounded by lock_timeout, then the fixture errors rather than hangs).
    """
    with pg_schema(pg_server, "t") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """Each test using it runs twice: on a fresh SQLite file and on a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/silo.db"
    return str(request.getfixturevalue("pg_url"))


# --- silo subprocesses (fault and resume tests) -------------------------------------------------
@pytest.fixture
def silos(tmp_path: Path) -> Iterator[Silos]:
    """The breast consortium (bank, bureau, telco) as running `fedsilo silo serve` processes."""
    s = breast_silos(tmp_path)
    try:
        for party in s.c.configs:
            s.start(party)
        yield s
    finally:
        s.stop_all()


# --- tiers ---------------------------------------------------------------------------------------
# Every test is `unit` or `e2e` (real gRPC servers, silo processes, the CLI): modules that start
# servers say `pytestmark = pytest.mark.e2e`; every other test is marked `unit` here, so both
# tiers can be selected. `slow` marks what the fast tier (`-m "not slow"`) leaves out.


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("e2e") is None:
            item.add_marker(pytest.mark.unit)
