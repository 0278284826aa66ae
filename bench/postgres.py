"""A throwaway PostgreSQL for the sink under the latency load, from the machine's PostgreSQL binaries.

The same recipe as the tests' fixture (tests/fixtures/postgres.py, which is pytest's): `initdb` + `pg_ctl`
in a fresh temp dir on a free port, durability off (it is thrown away), and under root the server runs as
the `postgres` system user because initdb refuses root. The sink writes here as it does in production; its
own CPU is what the bench reports, the server's is the database's.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

from pipeline.kafka.local import free_port

HINT = "install the PostgreSQL server binaries (Debian/Ubuntu: apt-get install postgresql; make setup does)"


def _bindir() -> Path:
    def major(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.parent.name)) or (0,)

    for initdb in sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=major, reverse=True):
        if (initdb.parent / "pg_ctl").is_file():
            return initdb.parent
    found = shutil.which("initdb")
    if found and (Path(found).resolve().parent / "pg_ctl").is_file():
        return Path(found).resolve().parent
    raise FileNotFoundError(f"no PostgreSQL initdb/pg_ctl: {HINT}")


class ThrowawayPostgres:
    """One cluster, started by `start()`, removed by `destroy()`; `url(db)` creates nothing (see `create`)."""

    def __init__(self) -> None:
        self.bindir = _bindir()
        self.user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="riskstream-bench-pg-", dir="/tmp"))
        self.port = free_port()
        self.password = secrets.token_urlsafe(18)

    def _run(self, program: str, *args: str) -> None:
        user = self.user
        done = subprocess.run(
            [str(self.bindir / program), *args],
            cwd=self.root,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"},
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)} failed ({done.returncode}): {done.stdout}{done.stderr}")

    def start(self) -> ThrowawayPostgres:
        data, sockets, pwfile = self.root / "data", self.root / "sockets", self.root / "pwfile"
        sockets.mkdir()
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self.user is not None:
            for path in (self.root, sockets, pwfile):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        self._run("initdb", "-D", str(data), "-U", "postgres", "--pwfile", str(pwfile), "--auth", "scram-sha-256",
                  "--encoding", "UTF8", "--locale", "C", "--no-sync")  # fmt: skip
        pwfile.unlink()
        # Durability off: the cluster is thrown away after the run.
        conf = {"port": self.port, "listen_addresses": "'127.0.0.1'", "unix_socket_directories": f"'{sockets}'",
                "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                "timezone": "'UTC'"}  # fmt: skip
        with (data / "postgresql.conf").open("a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in conf.items())
        self._run("pg_ctl", "start", "-D", str(data), "-l", str(self.root / "server.log"), "-w", "-t", "60")
        return self

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{database}"

    def create(self, database: str) -> str:
        """A new empty database at the schema's head; its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        from pipeline.db.migrate import upgrade_database

        info = psycopg.conninfo.make_conninfo(
            host="127.0.0.1", port=self.port, user="postgres", password=self.password, dbname="postgres"
        )
        with psycopg.connect(info, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        upgrade_database(self.url(database))
        return self.url(database)

    def destroy(self) -> None:
        try:
            if (self.root / "data" / "postmaster.pid").exists():
                self._run("pg_ctl", "stop", "-D", str(self.root / "data"), "-m", "fast", "-w")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
