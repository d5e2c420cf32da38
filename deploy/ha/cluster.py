"""A real two-node PostgreSQL 15 cluster under Patroni (Debian ``patroni``) with one etcd (Debian
``etcd-server``), on loopback, in private directories on free ports.

Each node is a Patroni process running as the ``postgres`` user (PostgreSQL refuses root) with its own data
directory, PostgreSQL port and REST port; the cluster runs in synchronous mode, so the standby Patroni keeps
synchronous is the only failover candidate and no acknowledged commit is lost with the leader. ``kill``
SIGKILLs a whole node (its Patroni and every PostgreSQL process), which is what losing a machine looks like.

    python deploy/ha/cluster.py run [DIR]   # start, print the multi-host URL, run until Ctrl-C, clean up

The drill (``deploy/ha/drill.py``, ``make ha-drill``) and the suite's HA test use :class:`HaCluster`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

HERE = Path(__file__).resolve().parent
PG_BIN = Path(os.environ.get("KNHK_HA_PG_BIN", "/usr/lib/postgresql/15/bin"))
OS_USER = "postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres() -> dict[str, Any]:
    """Popen arguments that run the child as the postgres user when we are root."""
    if os.geteuid() != 0:
        return {}
    import pwd

    entry = pwd.getpwnam(OS_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [],
            "env": {**os.environ, "HOME": entry.pw_dir, "USER": OS_USER, "LOGNAME": OS_USER}}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@dataclass
class Node:
    name: str
    pg_port: int
    rest_port: int
    config: Path
    data: Path
    proc: subprocess.Popen[bytes] | None = None

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, IndexError, ValueError):
            return None

    def rest(self, path: str, timeout: float = 2.0) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.rest_port}{path}", timeout=timeout) as response:
            return json.loads(response.read())


@dataclass
class HaCluster:
    root: Path
    ttl: int = 10
    loop_wait: int = 2
    retry_timeout: int = 4
    scope: str = "knhk"
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    nodes: list[Node] = field(default_factory=list)
    etcd: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls, root: Path | None = None, **timing: int) -> HaCluster:
        base = root or Path(tempfile.mkdtemp(prefix="knhk-ha-"))
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(base, 0o755)  # noqa: S103 - the postgres user must reach its node directories
        cluster = cls(base, **timing)
        try:
            cluster._write_configs()
        except BaseException:
            shutil.rmtree(base, ignore_errors=True)
            raise
        return cluster

    def _write_configs(self) -> None:
        base, cluster = self.root, self
        template = Template((HERE / "patroni.yml.in").read_text())
        for name in ("node1", "node2"):
            home = base / name
            home.mkdir(mode=0o700)
            node = Node(name, free_port(), free_port(), home / "patroni.yml", home / "data")
            node.config.write_text(template.substitute(
                scope=cluster.scope, name=name, root=base, rest_port=node.rest_port, pg_port=node.pg_port,
                etcd_port=cluster.etcd_port, ttl=cluster.ttl, loop_wait=cluster.loop_wait,
                retry_timeout=cluster.retry_timeout, pg_bin=PG_BIN, password=os.urandom(12).hex()))
            cluster.nodes.append(node)
        (base / "etcd").mkdir(mode=0o700)
        if os.geteuid() == 0:
            for path in [base, *base.rglob("*")]:
                shutil.chown(path, OS_USER, OS_USER)

    # -- life cycle -------------------------------------------------------------------------------------
    def start(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        with open(self.root / "etcd" / "etcd.log", "ab") as log:
            self.etcd = subprocess.Popen(
                ["etcd", "--name", "etcd0", "--data-dir", str(self.root / "etcd" / "data"),
                 "--listen-client-urls", client, "--advertise-client-urls", client,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", f"etcd0={peer}", "--initial-cluster-state", "new",
                 "--initial-cluster-token", f"knhk-{self.etcd_port}"],
                stdout=log, stderr=log, start_new_session=True, **_as_postgres())
        self._wait(lambda: self._etcd_healthy(), deadline, "etcd did not become healthy")
        self.start_node(self.nodes[0])
        self._wait(lambda: self.leader() is not None, deadline, "no Patroni leader was elected")
        self.start_node(self.nodes[1])
        self.wait_synchronous(deadline - time.monotonic())

    def start_node(self, node: Node) -> None:
        log = open(node.config.parent / "patroni.out", "ab")  # noqa: SIM115 - the child keeps it open
        node.proc = subprocess.Popen(["patroni", str(node.config)], stdout=log, stderr=log, start_new_session=True,
                                     cwd=node.config.parent, **_as_postgres())
        log.close()

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.etcd_port}/health", timeout=2) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    @staticmethod
    def _wait(check: Any, deadline: float, message: str) -> None:
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(message)
            time.sleep(0.2)

    def members(self) -> list[dict[str, Any]]:
        """Patroni's view of the cluster (from any node that answers)."""
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                continue
            try:
                members: list[dict[str, Any]] = node.rest("/cluster")["members"]
                return members
            except (OSError, ValueError, KeyError, urllib.error.URLError):
                continue
        return []

    def role(self, role: str) -> Node | None:
        for member in self.members():
            if member.get("role") == role and member.get("state") in ("running", "streaming"):
                return next(n for n in self.nodes if n.name == member["name"])
        return None

    def leader(self) -> Node | None:
        return self.role("leader")

    def wait_synchronous(self, timeout: float = 120) -> Node:
        """Wait until the other node streams as the synchronous standby; return it."""
        deadline = time.monotonic() + timeout
        self._wait(lambda: self.role("sync_standby") is not None, deadline,
                   "no synchronous standby appeared")
        standby = self.role("sync_standby")
        assert standby is not None
        return standby

    def url(self, database: str = "postgres", **params: str) -> str:
        """A multi-host URL that always reaches the current leader (``target_session_attrs=read-write``)."""
        hosts = ",".join(f"127.0.0.1:{n.pg_port}" for n in self.nodes)
        query = "&".join(f"{k}={v}" for k, v in {"target_session_attrs": "read-write", **params}.items())
        return f"postgresql://postgres@{hosts}/{database}?{query}"

    def kill(self, node: Node) -> None:
        """SIGKILL the node: its Patroni and all its PostgreSQL processes, at once."""
        pids = []
        if node.proc is not None:
            pids.append(node.proc.pid)
        main = node.postmaster_pid()
        if main is not None and _alive(main):
            pids += [main, *_children(main)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if node.proc is not None:
            node.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids[1:]) and time.monotonic() < deadline:
            time.sleep(0.05)

    def destroy(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
            main = node.postmaster_pid()
            if main is not None and _alive(main):
                for pid in [main, *_children(main)]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        if self.etcd is not None and self.etcd.poll() is None:
            self.etcd.terminate()
            try:
                self.etcd.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.etcd.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def _run(root: Path | None) -> None:
    cluster = HaCluster.create(root)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        cluster.start()
        leader = cluster.leader()
        print(f"leader {leader.name if leader else '?'}; KNHK_DATABASE_URL={cluster.url('postgres')}", flush=True)
        print(f"patronictl -c {cluster.nodes[0].config} list", flush=True)
        while not stop:
            time.sleep(0.5)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "run":
        print(__doc__)
        sys.exit(2)
    _run(Path(sys.argv[2]) if len(sys.argv) > 2 else None)
