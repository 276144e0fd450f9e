"""A real gunicorn serving the app on a database of its own, for tests that
need several processes writing at once (load) or a served schema (fuzz).

Each gets a fresh database: a new one on a PostgreSQL server (dropped
afterwards) or a temporary SQLite file, and the production settings (debug
off, plain HTTP on loopback).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests import peers

ROOT = Path(__file__).resolve().parent.parent
SETUP_SERVER = """
from integrations.models import DicomWebServer, Institution
institution = Institution.objects.create(name="University Hospital")
server = DicomWebServer.objects.create(
    institution=institution, name="PACS", status="active",
    qido_url="https://pacs.example/dicomweb", wado_url="https://pacs.example/dicomweb",
)
print(server.pk)
"""


@dataclass
class Served:
    url: str  # http://127.0.0.1:PORT
    key: str  # a manage-scope API key
    server_id: int  # one DICOMweb server, no approved users
    engine: str  # "sqlite" or "postgresql"
    database: dict[str, str]  # SQLITE_PATH or DATABASE_URL
    log: Path

    @property
    def sqlite_path(self) -> str:
        """The SQLite file, however the environment names it."""
        if "SQLITE_PATH" in self.database:
            return self.database["SQLITE_PATH"]
        return self.database["DATABASE_URL"].removeprefix("sqlite:///")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Api-Key {self.key}"}


def suite_postgres_url() -> str | None:
    """The suite's PostgreSQL server (DATABASE_URL), or None on SQLite."""
    url = os.environ.get("DATABASE_URL", "")
    return url if urlsplit(url).scheme.startswith("postgres") else None


def base_env(**extra: str) -> dict[str, str]:
    """Production settings over plain HTTP on loopback, with a fresh secret."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(
            (
                "DJANGO_",
                "DATABASE_",
                "SQLITE_",
                "CACHE_",
                "CONNECTIVITY_",
                "REGISTRY_",
            )
        )
    }
    env.update(
        DJANGO_SETTINGS_MODULE="pacsbin_integrations.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_INSECURE_HTTP="1",
        DJANGO_STATIC_MANIFEST="0",
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
        # Required with debug off; links in its emails point at the server.
        REGISTRY_PUBLIC_ORIGIN="http://127.0.0.1",
    )
    env.update(extra)
    return env


@contextmanager
def database(
    tmp: Path, name: str, postgres_url: str | None, sqlite_url: bool = False
) -> Iterator[dict[str, str]]:
    """The environment naming a fresh, empty database: a new one on the
    PostgreSQL server of ``postgres_url`` (dropped afterwards), or else a
    SQLite file in ``tmp``, named by SQLITE_PATH (the default) or, with
    ``sqlite_url``, by DATABASE_URL=sqlite:///path."""
    if postgres_url is None:
        path = tmp / f"{name}.sqlite3"
        if sqlite_url:
            yield {"DATABASE_URL": f"sqlite:///{path}"}
        else:
            yield {"SQLITE_PATH": str(path)}
        return
    import psycopg

    parts = urlsplit(postgres_url)
    db_name = f"pacsbin_{name}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{db_name}"')
    try:
        yield {"DATABASE_URL": urlunsplit(parts._replace(path=f"/{db_name}"))}
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


@contextmanager
def served(
    tmp: Path,
    name: str,
    *,
    postgres_url: str | None = None,
    sqlite_url: bool = False,
    workers: int = 2,
    threads: int = 4,
    gunicorn_args: tuple[str, ...] = (),
    **extra: str,
) -> Iterator[Served]:
    """gunicorn (gthread, ``workers`` x ``threads``) on a migrated database of
    its own (see ``database``) with one server and a manage API key. Its
    workers reach nothing but loopback (tests/offline_gunicorn.py)."""
    with database(tmp, name, postgres_url, sqlite_url) as db_env:
        env = base_env(**db_env, **extra)
        manage(env, "migrate", "--no-input")
        key = manage(env, "create_api_key", f"{name}-test", "--scope", "manage")
        server_id = int(manage(env, "shell", "-c", SETUP_SERVER).split()[-1])
        port = peers.free_port()
        log = tmp / f"gunicorn-{name}.log"
        command = [
            *[sys.executable, "-m", "gunicorn", "pacsbin_integrations.wsgi"],
            *["--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
            *["--worker-class", "gthread", "--threads", str(threads)],
            *["--keep-alive", "30", "--chdir", str(ROOT)],
            *["--config", str(ROOT / "tests" / "offline_gunicorn.py")],
            # Not the shared ~/.gunicorn/gunicorn.ctl of every other gunicorn.
            "--no-control-socket",
            *gunicorn_args,
        ]
        url = f"http://127.0.0.1:{port}"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            peers.wait_for(f"{url}/api/v1/health", process, log, seconds=30)
            yield Served(
                url=url,
                key=key.strip().splitlines()[-1],
                server_id=server_id,
                engine="sqlite" if postgres_url is None else "postgresql",
                database=db_env,
                log=log,
            )
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
