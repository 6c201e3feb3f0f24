"""Throwaway PostgreSQL servers for tests.

A :class:`PostgresServer` runs ``initdb`` into a fresh temp directory and starts a
private ``postgres`` listening on ``127.0.0.1`` (a free port) plus a Unix socket
inside that temp directory. It never touches the system cluster (``pg_lsclusters``)
or port 5432.

When the current process is root, PostgreSQL refuses to run, so every server
command is executed as the ``postgres`` OS user (``runuser -u postgres --``, or
``su postgres -c`` as a fallback) and the temp directory is chowned to that user.

Typical use::

    from helpers.pg_server import PostgresServer, postgres_available

    reason = postgres_available()
    if reason:
        pytest.skip(reason)
    with PostgresServer() as pg:
        pg.create_database("app")
        conn = pg.connect("app")
        ...
        pg.restart(down_seconds=2)        # clean stop, 2 s outage, start (same port)
        pg.kill_hard(); pg.start()        # simulated crash + crash recovery
        t = pg.outage(3, delay=0.5)       # background outage while the test runs
        ...
        t.join()

Authentication is ``trust``: any password (including :attr:`PostgresServer.password`)
is accepted. Durability settings (``fsync`` etc.) are off by default for speed;
pass ``durable=True`` to keep them.

Only the standard library is imported at module import time; ``psycopg2`` is imported
lazily by the helpers that need it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "PostgresServer",
    "PostgresServerError",
    "find_pg_bindir",
    "postgres_available",
    "reap_stale_servers",
]

PG_OS_USER = "postgres"
"""OS user the server runs as when the test process is root."""

TEMP_PREFIX = "dg-sqlmesh-pg-"
"""Prefix of the temp directories; used to find servers orphaned by a killed test run."""

_PREFERRED_MAJOR = "15"
_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")


class PostgresServerError(RuntimeError):
    """A server command failed; the message includes the tail of the server log."""

    port_in_use: bool = False


# --------------------------------------------------------------------------- discovery


def _has_server_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in _REQUIRED_BINARIES)


def find_pg_bindir() -> Path | None:
    """Directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or ``None``.

    Order: ``$PG_BINDIR``; ``pg_config --bindir``; ``/usr/lib/postgresql/15/bin``;
    the newest other ``/usr/lib/postgresql/*/bin``; the (resolved) directory of
    ``initdb`` on ``PATH``.
    """
    candidates: list[Path] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
            )
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
    candidates.append(Path(f"/usr/lib/postgresql/{_PREFERRED_MAJOR}/bin"))
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = sorted(
            (p for p in root.iterdir() if p.name.isdigit()),
            key=lambda p: int(p.name),
            reverse=True,
        )
        candidates.extend(p / "bin" for p in versions)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for candidate in candidates:
        if _has_server_binaries(candidate):
            return candidate
    return None


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _pg_user_ids() -> tuple[int, int] | None:
    import pwd

    try:
        entry = pwd.getpwnam(PG_OS_USER)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def postgres_available() -> str | None:
    """``None`` if a :class:`PostgresServer` can be started here, else the reason why not.

    Cheap (no server is started). Meant for ``pytest.skip(reason)``; on CI run
    ``.ci/install-postgres.sh`` first so that this returns ``None``.
    """
    if os.name != "posix":
        return "PostgresServer needs a POSIX system"
    bindir = find_pg_bindir()
    if bindir is None:
        return (
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found via $PG_BINDIR, "
            "pg_config --bindir, /usr/lib/postgresql/*/bin or PATH; "
            "run .ci/install-postgres.sh"
        )
    if _is_root():
        if _pg_user_ids() is None:
            return (
                f"running as root but OS user {PG_OS_USER!r} does not exist "
                "(postgres refuses to run as root); run .ci/install-postgres.sh"
            )
        if not (shutil.which("runuser") or shutil.which("su")):
            return "running as root but neither runuser nor su is available"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed"
    return None


# --------------------------------------------------------------------------- processes


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    # Format: "pid (comm) state ..."; comm may contain spaces/parens.
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def _children_of(pid: int) -> list[int]:
    children = []
    proc = Path("/proc")
    if not proc.is_dir():
        return children
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def _kill_process_tree(pid: int) -> list[int]:
    """SIGKILL a postmaster and its children; returns the PIDs signalled.

    The postmaster is SIGSTOPped first so it cannot fork new children (or restart
    crashed ones) while we collect and kill them.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGSTOP)
    victims = [*_children_of(pid), pid]
    for victim in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    return victims


def _wait_dead(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if not any(_pid_alive(p) for p in pids):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def _read_postmaster_pid(data_dir: Path) -> int | None:
    try:
        first = (data_dir / "postmaster.pid").read_text().splitlines()[0]
        return int(first.strip())
    except (OSError, IndexError, ValueError):
        return None


# --------------------------------------------------------------------------- the server

# Strong references on purpose: a server nobody closed must still be stopped at exit.
_live_servers: set[PostgresServer] = set()


@atexit.register
def _stop_all_at_exit() -> None:  # last line of defence against leaked servers
    for server in list(_live_servers):
        with contextlib.suppress(Exception):
            server.close()


class PostgresServer:
    """A private PostgreSQL server in a temp directory, for one test (or session).

    Use as a context manager (``with PostgresServer() as pg:``) or call :meth:`start`
    and :meth:`close` yourself. ``close`` (also run by ``__exit__`` and at interpreter
    exit) stops the server -- escalating to SIGKILL if a clean stop fails -- and
    removes the temp directory.

    Attributes: ``host`` (``"127.0.0.1"``), ``port`` (chosen at the first start and
    kept across restarts), ``user`` (``"postgres"``), ``password`` (ignored: trust
    auth), ``base_dir``, ``data_dir``, ``socket_dir``, ``log_file``, ``bindir``.
    """

    host = "127.0.0.1"
    user = "postgres"
    password = "postgres"  # trust auth: accepted but not checked

    def __init__(
        self,
        *,
        port: int | None = None,
        bindir: str | os.PathLike[str] | None = None,
        start_timeout: float = 30.0,
        durable: bool = False,
        max_connections: int = 200,
        extra_settings: dict[str, Any] | None = None,
        port_attempts: int = 5,
        keep_on_failure: bool = False,
    ) -> None:
        found = Path(bindir) if bindir is not None else find_pg_bindir()
        if found is None or not _has_server_binaries(found):
            raise PostgresServerError(postgres_available() or f"no server binaries in {found}")
        self.bindir: Path = found
        self._requested_port = port
        self.port: int | None = port
        self.start_timeout = start_timeout
        self.port_attempts = max(1, port_attempts)
        self.keep_on_failure = keep_on_failure
        settings: dict[str, Any] = {"max_connections": max_connections}
        if not durable:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        settings.update(extra_settings or {})
        self.settings = settings

        self._as_pg_user = _is_root()
        self._ids = _pg_user_ids() if self._as_pg_user else None
        if self._as_pg_user and self._ids is None:
            raise PostgresServerError(postgres_available() or "no postgres OS user")

        self.base_dir: Path | None = None
        self.data_dir: Path | None = None
        self.socket_dir: Path | None = None
        self.log_file: Path | None = None
        self._lock = threading.RLock()
        self._closed = False

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<PostgresServer {self.host}:{self.port} {state} data={self.data_dir}>"

    # ------------------------------------------------------------------ connection info

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq keyword/value DSN, e.g. for ``psycopg2.connect(dsn)``."""
        self._require_port()
        return (
            f"host={self.host} port={self.port} user={self.user} "
            f"password={self.password} dbname={dbname}"
        )

    def url(self, dbname: str = "postgres", driver: str = "postgresql") -> str:
        """SQLAlchemy/libpq URL, e.g. ``postgresql://postgres:postgres@127.0.0.1:5xxxx/db``."""
        self._require_port()
        return f"{driver}://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    def dagster_storage(self, dbname: str) -> dict[str, Any]:
        """The ``storage:`` section of a ``dagster.yaml`` keeping a Dagster instance in
        ``dbname`` (dagster-postgres)."""
        self._require_port()
        return {
            "postgres": {
                "postgres_db": {
                    "hostname": self.host,
                    "port": self.port,
                    "username": self.user,
                    "password": self.password,
                    "db_name": dbname,
                    # SQLAlchemy >= 2.1 maps plain postgresql:// to psycopg 3, not installed
                    "scheme": "postgresql+psycopg2",
                }
            }
        }

    def connection_kwargs(self, dbname: str = "postgres") -> dict[str, Any]:
        """``host``/``port``/``user``/``password``/``dbname`` as a dict."""
        self._require_port()
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": dbname,
        }

    def connect(self, dbname: str = "postgres", *, autocommit: bool = True, **kwargs: Any):
        """A new ``psycopg2`` connection (autocommit by default). Caller closes it."""
        import psycopg2

        kwargs.setdefault("connect_timeout", 10)
        conn = psycopg2.connect(self.dsn(dbname), **kwargs)
        conn.autocommit = autocommit
        return conn

    def execute(self, sql: str, params: Any = None, *, dbname: str = "postgres") -> list[tuple]:
        """Run one statement on a fresh autocommit connection; rows (``[]`` if none)."""
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description is not None else []
        finally:
            conn.close()

    def create_database(self, name: str, *, exist_ok: bool = False) -> str:
        """``CREATE DATABASE name``; returns ``self.dsn(name)``."""
        from psycopg2 import sql

        conn = self.connect()
        try:
            with conn.cursor() as cur:
                if exist_ok:
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                    if cur.fetchone():
                        return self.dsn(name)
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()
        return self.dsn(name)

    def drop_database(self, name: str, *, missing_ok: bool = True) -> None:
        """``DROP DATABASE [IF EXISTS] name WITH (FORCE)`` (kicks connected sessions)."""
        from psycopg2 import sql

        stmt = sql.SQL("DROP DATABASE {}{} WITH (FORCE)").format(
            sql.SQL("IF EXISTS ") if missing_ok else sql.SQL(""), sql.Identifier(name)
        )
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(stmt)
        finally:
            conn.close()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> PostgresServer:
        """initdb (first time only) and start; returns ``self``.

        On the first start a free port is picked; if binding it fails (another
        process took it meanwhile) a new port is tried, up to ``port_attempts``
        times. Later starts (restarts) reuse the same port.
        """
        with self._lock:
            if self._closed:
                raise PostgresServerError("server was closed")
            if self.is_running():
                return self
            if self.base_dir is None:
                self._init_cluster()
            if self.port is not None:
                # Explicit port, or a restart: clients expect this exact port.
                self._pg_ctl_start()
                return self
            for attempt in range(1, self.port_attempts + 1):
                self.port = _free_port(self.host)
                try:
                    self._pg_ctl_start()
                    return self
                except PostgresServerError as exc:
                    # Someone grabbed the port between probing and binding: try another.
                    if not exc.port_in_use or attempt == self.port_attempts:
                        self.port = None
                        raise
            raise AssertionError("unreachable")

    def stop(self, mode: str = "fast", timeout: float | None = None) -> None:
        """``pg_ctl stop -m mode`` (``smart``/``fast``/``immediate``); no-op if not running."""
        with self._lock:
            if self.data_dir is None or not self.is_running():
                return
            result = self._run(
                [
                    self._bin("pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    mode,
                    "-w",
                    "-t",
                    str(int(timeout or self.start_timeout)),
                    "stop",
                ],
                check=False,
                timeout=(timeout or self.start_timeout) + 10,
            )
            if result.returncode != 0 and self.is_running():
                raise self._error(f"pg_ctl stop -m {mode} failed", result)

    def kill_hard(self, timeout: float = 10.0) -> None:
        """Simulate a crash: SIGKILL the postmaster and all its children, wait until gone.

        The next :meth:`start` performs crash recovery. No-op if not running.
        """
        with self._lock:
            if self.data_dir is None:
                return
            pid = _read_postmaster_pid(self.data_dir)
            if pid is None or not _pid_alive(pid):
                return
            victims = _kill_process_tree(pid)
            if not _wait_dead(victims, timeout):
                raise PostgresServerError(f"postgres processes {victims} survived SIGKILL")
            self._remove_stale_lock_files()

    def restart(self, down_seconds: float = 0.0, *, hard: bool = False, mode: str = "fast") -> None:
        """Stop (``pg_ctl stop -m mode``, or :meth:`kill_hard` if ``hard``), stay down for
        ``down_seconds``, then start again on the same port."""
        with self._lock:
            if hard:
                self.kill_hard()
            else:
                self.stop(mode=mode)
            if down_seconds > 0:
                time.sleep(down_seconds)
            self.start()

    def outage(
        self, down_seconds: float, *, delay: float = 0.0, hard: bool = False, mode: str = "fast"
    ) -> threading.Thread:
        """Run ``sleep(delay); restart(down_seconds, hard=hard)`` in a background thread.

        Returns the started thread; ``join()`` it before asserting. An exception in the
        thread is stored as ``thread.error`` (``None`` on success).
        """

        def target() -> None:
            try:
                if delay > 0:
                    time.sleep(delay)
                self.restart(down_seconds, hard=hard, mode=mode)
            except BaseException as exc:  # surfaced via thread.error
                thread.error = exc  # type: ignore[attr-defined]

        thread = threading.Thread(target=target, name=f"pg-outage-{self.port}", daemon=True)
        thread.error = None  # type: ignore[attr-defined]
        thread.start()
        return thread

    @contextlib.contextmanager
    def down(self, *, hard: bool = False, mode: str = "fast") -> Iterator[None]:
        """``with pg.down(): ...`` -- server is stopped inside the block, restarted after."""
        if hard:
            self.kill_hard()
        else:
            self.stop(mode=mode)
        try:
            yield
        finally:
            self.start()

    def is_running(self) -> bool:
        """True if the postmaster of this data dir is alive."""
        if self.data_dir is None:
            return False
        pid = _read_postmaster_pid(self.data_dir)
        return pid is not None and _pid_alive(pid)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until a connection succeeds (``pg_ctl -w`` already does this on start)."""
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            try:
                self.connect(connect_timeout=2).close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        """Stop the server (escalating to SIGKILL) and delete the temp directory. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            _live_servers.discard(self)
            try:
                try:
                    self.stop(mode="fast", timeout=15)
                except Exception:
                    with contextlib.suppress(Exception):
                        self.stop(mode="immediate", timeout=10)
                finally:
                    if self.is_running():
                        self.kill_hard()
            finally:
                if self.base_dir is not None and not self.keep_on_failure:
                    shutil.rmtree(self.base_dir, ignore_errors=True)

    # ------------------------------------------------------------------ internals

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the server log (for error messages)."""
        if self.log_file is None:
            return ""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _remove_stale_lock_files(self) -> None:
        # Only call once every postgres process of this data dir is dead. The killed
        # postmaster may linger as a zombie until init reaps it (PID 1 in containers
        # can be slow to); postgres would then see its PID in postmaster.pid and in
        # the socket lock file as alive and refuse to start. Both files are stale.
        assert self.data_dir is not None and self.socket_dir is not None
        stale = [self.data_dir / "postmaster.pid"]
        if self.socket_dir.is_dir():
            stale += list(self.socket_dir.glob(".s.PGSQL.*"))
        for path in stale:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _require_port(self) -> None:
        if self.port is None:
            raise PostgresServerError("server has not been started yet (no port)")

    def _bin(self, name: str) -> str:
        return str(self.bindir / name)

    def _chown(self, path: Path) -> None:
        if self._ids is not None:
            os.chown(path, *self._ids)

    def _run(
        self, argv: list[str], *, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        if self._as_pg_user:
            if shutil.which("runuser"):
                argv = ["runuser", "-u", PG_OS_USER, "--", *argv]
            else:
                argv = ["su", PG_OS_USER, "-s", "/bin/sh", "-c", shlex.join(argv)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.setdefault("LC_ALL", "C")
        result = subprocess.run(
            argv,
            cwd=str(self.base_dir) if self.base_dir else "/",
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise self._error(f"command failed: {shlex.join(argv)}", result)
        return result

    def _error(self, what: str, result: subprocess.CompletedProcess[str]) -> PostgresServerError:
        return PostgresServerError(
            f"{what} (exit {result.returncode})\n"
            f"--- stdout ---\n{result.stdout.strip()}\n--- stderr ---\n{result.stderr.strip()}\n"
            f"--- server log ({self.log_file}) ---\n{self.log_tail()}"
        )

    def _init_cluster(self) -> None:
        reap_stale_servers()
        self.base_dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
        _live_servers.add(self)
        (self.base_dir / "owner.pid").write_text(str(os.getpid()))
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "sock"
        self.log_file = self.base_dir / "postgres.log"
        self.socket_dir.mkdir()
        self.log_file.touch()
        for path in (self.base_dir, self.socket_dir, self.log_file):
            self._chown(path)
        self._run(
            [
                self._bin("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.user,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ],
            timeout=120,
        )

    def _pg_ctl_start(self) -> None:
        assert self.data_dir is not None and self.socket_dir is not None
        opts = ["-h", self.host, "-p", str(self.port), "-k", str(self.socket_dir)]
        for key, value in self.settings.items():
            opts += ["-c", f"{key}={value}"]
        # Remember the log size so the port-collision check only sees this attempt.
        assert self.log_file is not None
        mark = self.log_file.stat().st_size
        result = self._run(
            [
                self._bin("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-o",
                shlex.join(opts),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(int(self.start_timeout)),
                "start",
            ],
            check=False,
            timeout=self.start_timeout + 10,
        )
        if result.returncode != 0 or not self.is_running():
            err = self._error(f"pg_ctl start on port {self.port} failed", result)
            try:
                new_log = self.log_file.read_text(errors="replace")[mark:]
            except OSError:
                new_log = ""
            err.port_in_use = "could not bind" in new_log or "already in use" in new_log
            # A half-started postmaster must not linger.
            if self.is_running():
                with contextlib.suppress(Exception):
                    self.kill_hard()
            raise err


def reap_stale_servers(max_age_without_owner: float = 3600.0) -> list[Path]:
    """Stop and delete servers left behind by test processes that died (e.g. a
    SIGKILLed pytest). Only touches ``TEMP_PREFIX`` dirs in the temp dir whose
    recorded owner PID is gone (or, lacking an owner file, that are older than
    ``max_age_without_owner`` seconds). Returns the directories removed."""
    removed: list[Path] = []
    for base in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        try:
            owner: int | None = int((base / "owner.pid").read_text().strip())
        except (OSError, ValueError):
            owner = None
        if owner is not None:
            if _pid_alive(owner):
                continue
        else:
            try:
                if time.time() - base.stat().st_mtime < max_age_without_owner:
                    continue  # probably being created right now
            except OSError:
                continue
        pid = _read_postmaster_pid(base / "data")
        if pid is not None and _pid_alive(pid):
            with contextlib.suppress(PermissionError):
                _wait_dead(_kill_process_tree(pid), 10)
        shutil.rmtree(base, ignore_errors=True)
        removed.append(base)
    return removed
