"""A real Celery deployment for Dagster's Celery executor (dagster-celery): a Redis broker
on 127.0.0.1 and worker processes, each in a working folder of its own, started by the
test and stopped after.

Workers take steps from Dagster's ``dagster`` queue one at a time (no prefetch, so an idle
worker is never left waiting behind a busy one) and open the run's instance from the
reference each task carries, so they share the instance's database and nothing else.
Both sides retry the result backend while the broker is down (``RETRY``), as a deployment
that must survive a broker restart configures them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent
RETRY = {"result_backend_always_retry": True, "result_backend_max_retries": 60}


def redis_available() -> str | None:
    """None when a Redis server and dagster-celery are here, else why not."""
    if shutil.which("redis-server") is None:
        return "redis-server not installed (apt-get install redis-server)"
    try:
        import dagster_celery  # noqa: F401
    except ImportError:
        return "dagster-celery not installed"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process: subprocess.Popen, timeout: float = 15) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)


class CeleryCluster:
    """Redis plus ``workers`` Celery workers of ``concurrency`` processes each, under
    ``root``; ``env``: what the workers' environment adds (the project the job loads)."""

    def __init__(
        self, root: Path, *, workers: int = 2, concurrency: int = 2, env: Mapping[str, str] = {}
    ) -> None:
        self.root = root
        self.n_workers = workers
        self.concurrency = concurrency
        self.env = dict(env)
        self.port = _free_port()
        self.redis: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []

    @property
    def broker(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def backend(self) -> str:
        return f"redis://127.0.0.1:{self.port}/1"

    def executor_config(self) -> dict[str, Any]:
        """The Celery executor's run config for this cluster."""
        return {"broker": self.broker, "backend": self.backend, "config_source": dict(RETRY)}

    def __enter__(self) -> CeleryCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.start_broker()
            conf = self.root / "conf"
            conf.mkdir(exist_ok=True)  # read by dagster_celery.app on the workers
            (conf / "dagster_celery_config.py").write_text(
                "".join(f"{k} = {v!r}\n" for k, v in RETRY.items())
            )
            self.workers = [self._start_worker(i, conf) for i in range(self.n_workers)]
            for i in range(self.n_workers):
                self._wait_for(self.root / f"worker{i}.log", " ready.", 60)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in self.workers:
            _stop(worker)
        if self.redis is not None:
            _stop(self.redis)

    # --- the broker -----------------------------------------------------------------------

    def start_broker(self) -> None:
        data = self.root / "redis"
        data.mkdir(exist_ok=True)
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(data)],
            stdout=open(self.root / "redis.log", "a"),  # noqa: SIM115 - the child owns it
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start:\n{self._tail('redis.log')}")

    def restart_broker(self, down_seconds: float) -> None:
        """Kill the broker outright, keep it down ``down_seconds``, start it again."""
        assert self.redis is not None
        os.killpg(self.redis.pid, signal.SIGKILL)
        self.redis.wait(timeout=30)
        time.sleep(down_seconds)
        self.start_broker()

    # --- the workers ----------------------------------------------------------------------

    def _start_worker(self, i: int, conf: Path) -> subprocess.Popen:
        folder = self.root / f"worker{i}"
        folder.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
        env.update(self.env)
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(conf), env.get("PYTHONPATH", "")])
        env["SQLMESH__DISABLE_ANONYMIZED_ANALYTICS"] = "1"
        argv = [sys.executable, "-m", "celery", "-A", "dagster_celery.app", "-b", self.broker]
        argv += ["--result-backend", self.backend, "worker", "-Q", "dagster"]
        argv += ["-c", str(self.concurrency), "-P", "prefork", "--prefetch-multiplier=1"]
        argv += ["--disable-prefetch", "-n", f"w{i}@%h", "--without-gossip", "--without-mingle"]
        argv += ["--loglevel", "INFO"]
        return subprocess.Popen(
            argv,
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=open(self.root / f"worker{i}.log", "w"),  # noqa: SIM115 - the child owns it
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _wait_for(self, log: Path, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in log.read_text(errors="replace"):
                return
            if any(w.poll() is not None for w in self.workers):
                break
            time.sleep(0.1)
        raise RuntimeError(f"a Celery worker did not start:\n{self._tail(log.name)}")

    def _tail(self, name: str, lines: int = 40) -> str:
        path = self.root / name
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def logs(self) -> str:
        """The tail of every worker's log, for assertion messages."""
        return "\n".join(
            f"--- worker{i}\n{self._tail(f'worker{i}.log')}" for i in range(self.n_workers)
        )
