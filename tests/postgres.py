"""A throwaway PostgreSQL cluster for the tests: initdb into a temporary folder, a free port.

The session fixture `postgres_server` starts one cluster (as the `postgres` user when the tests
run as root: initdb refuses root) and deletes it at the end; `postgres_url` gives each test a
database of its own. Without the PostgreSQL binaries the tests that need them skip, saying so;
CI (`.ci/run`) installs the Debian package `postgresql` when it is missing.

The superuser has a password (host connections use scram-sha-256), so the tests also show the
password never reaches a message, a log or a file.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def postgres_bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, or Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return candidates[-1].parent if candidates else None


@dataclass(frozen=True)
class PostgresServer:
    bin_dir: Path
    root: Path
    port: int
    password: str

    def url(self, database: str, *, password: bool = True) -> str:
        secret = f":{self.password}" if password else ""
        return f"postgresql://postgres{secret}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.run("createdb", "-h", str(self.root), "-p", str(self.port), "-U", "postgres", name)
        return name

    def run(self, tool: str, *args: str) -> str:
        result = subprocess.run(
            _as_postgres([str(self.bin_dir / tool), *args]),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.root,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {result.stderr[-2000:]}")
        return result.stdout


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = postgres_bin_dir()
    if bin_dir is None or not (bin_dir / "pg_ctl").exists():
        pytest.skip(
            "PostgreSQL is not installed (no initdb/pg_ctl on PATH or in /usr/lib/postgresql): "
            "apt-get install postgresql (CI installs it)"
        )
    root = Path(tempfile.mkdtemp(prefix="inpaint-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")  # the Debian package creates this user
        os.chown(root, user.pw_uid, user.pw_gid)
    password = secrets.token_urlsafe(12)
    pwfile = root / "pw"
    pwfile.write_text(password)
    if os.geteuid() == 0:
        os.chown(pwfile, user.pw_uid, user.pw_gid)
    server: PostgresServer | None = None
    try:
        init = PostgresServer(bin_dir, root, 0, password)
        init.run(
            "initdb",
            "-D",
            str(root / "data"),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-sync",
            "-E",
            "UTF8",
        )
        for attempt in range(3):  # a free port may be taken between the check and the start
            candidate = PostgresServer(bin_dir, root, _free_port(), password)
            options = (
                f"-p {candidate.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off"
            )
            try:
                candidate.run(
                    "pg_ctl", "-D", str(root / "data"), "-l", str(root / "log"), "-w",
                    "-t", "120", "-o", options, "start",
                )  # fmt: skip
            except RuntimeError:
                if attempt == 2:
                    log = root / "log"
                    raise RuntimeError(log.read_text() if log.exists() else "no log") from None
                continue
            server = candidate
            break
        assert server is not None
        yield server
    finally:
        if server is not None:
            subprocess.run(
                _as_postgres(
                    [str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "stop"]
                ),
                capture_output=True,
                timeout=120,
            )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A new, empty database of the session's cluster, as a URL with its password."""
    return postgres_server.url(postgres_server.create_database())
