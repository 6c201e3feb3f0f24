"""`dagster dev` (webserver and daemon) on a free port, driven through its GraphQL API as the
UI drives it: what a user meets, not what a test harness would prefer."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on UnauthorizedError { message }
    ... on PartitionSetNotFoundError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
  }
}
"""

BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { id status error { message } runs { id status } }
    ... on PythonError { message }
  }
}
"""

ASSET_KEYS = """
query { assetNodes { assetKey { path } isPartitioned isExecutable isObservable partitionKeys } }
"""

STALENESS = """
query { assetNodes { assetKey { path } isPartitioned isExecutable staleStatus
                     staleCauses { reason dependency { path } } } }
"""

PARTITION_STALENESS = """
query Stale($key: AssetKeyInput!, $partitions: [String!]) {
  assetNodes(assetKeys: [$key]) {
    staleStatusByPartition(partitions: $partitions)
    staleCausesByPartition(partitions: $partitions) { reason dependency { path } }
  }
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DagsterDev:
    """A running ``dagster dev``; ``graphql`` posts a query to its webserver."""

    def __init__(self, url: str, process: subprocess.Popen, log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"GraphQL {exc.code}: {exc.read().decode()[:3000]}") from None
        if answer.get("errors"):
            raise AssertionError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def asset_nodes(self) -> list[dict[str, Any]]:
        return self.graphql(ASSET_KEYS)["assetNodes"]

    def stale(self, partitions: list[str]) -> dict[str, Any]:
        """Each executable asset that the UI shows unsynced (or a partition of it), and why."""
        found = {}
        for node in self.graphql(STALENESS)["assetNodes"]:
            if not node["isExecutable"]:
                continue
            name = "/".join(node["assetKey"]["path"])
            if not node["isPartitioned"]:
                if node["staleStatus"] != "FRESH":
                    found[name] = node["staleCauses"]
                continue
            variables = {"key": {"path": node["assetKey"]["path"]}, "partitions": partitions}
            (by_partition,) = self.graphql(PARTITION_STALENESS, variables)["assetNodes"]
            statuses = by_partition["staleStatusByPartition"]
            causes = by_partition["staleCausesByPartition"]
            bad = {
                p: c for p, s, c in zip(partitions, statuses, causes, strict=True) if s != "FRESH"
            }
            if bad:
                found[name] = bad
        return found

    def materialize_all_partitions(self) -> str:
        """What "Materialize all" -> "All partitions" -> "Launch backfill" sends."""
        keys = [
            {"path": node["assetKey"]["path"]}
            for node in self.asset_nodes()
            if node["isExecutable"] and not node["isObservable"]
        ]
        launched = self.graphql(
            LAUNCH_BACKFILL, {"params": {"assetSelection": keys, "allPartitions": True}}
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        return launched["backfillId"]

    def wait_for_backfill(self, backfill_id: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            backfill = self.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
            done = backfill.get("status") not in (None, "REQUESTED")
            active = any(
                r["status"] in ("QUEUED", "STARTING", "STARTED", "NOT_STARTED")
                for r in backfill.get("runs") or []
            )
            if done and not active:
                return backfill
            if time.monotonic() > deadline:
                raise AssertionError(f"backfill {backfill_id} not done in {timeout} s: {backfill}")
            time.sleep(1)


@contextmanager
def dagster_dev(definitions: Path, home: Path, env: dict[str, str] | None = None):
    """Start ``dagster dev -f definitions`` with ``DAGSTER_HOME=home``; stop it after."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = home / "dagster_dev.log"
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster"),
            "dev",
            "-f",
            str(definitions),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=str(definitions.parent),
        env={**os.environ, "DAGSTER_HOME": str(home), **(env or {})},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise AssertionError(f"dagster dev exited: {log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"dagster dev did not start: {log.read_text()[-3000:]}"
                    ) from None
                time.sleep(0.5)
        yield DagsterDev(url, process, log)
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
