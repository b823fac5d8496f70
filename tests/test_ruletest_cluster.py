"""`ray job submit -- nn-farm ruletest` against a Ray cluster this test starts (and stops by PID).

The cluster is a real head node (`ray start --head --block`) with its dashboard,
which serves the job API; `ray job submit` sets RAY_ADDRESS for the entrypoint,
so the driver joins that cluster instead of starting its own. Nothing here runs
`ray stop`: the head's process group is the one this test started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from nn_farm.builder.workspace import create_workspace

VENV_BIN = Path(sys.executable).parent


def _free_ports(n: int) -> list[int]:
    """n distinct free ports: every socket stays bound until all are picked (one at a
    time, the OS handed the same port out twice and Ray refused to start)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _wait_for(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(1.0)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")


@pytest.fixture()
def ray_head(tmp_path):
    """A head node on free ports; yields (dashboard address, environment for clients)."""
    # Every listening port picked free: other Rays on this machine hold the defaults
    # (a local ray.init starts a dashboard agent on 52365 even without a dashboard).
    flags = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
             "runtime-env-agent-port", "ray-client-server-port", "node-manager-port", "object-manager-port")
    port, dash, *rest = _free_ports(2 + len(flags))
    ports = dict(zip(flags, rest))
    tmpdir = tempfile.mkdtemp(prefix="nnrj-", dir="/tmp")  # short: Ray's socket paths
    env = dict(os.environ, RAY_TMPDIR=tmpdir, RAY_AUTH_MODE="disabled",
               RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0",
               NN_FARM_HOME=str(tmp_path / "home"), PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    env.pop("RAY_ADDRESS", None)
    log = open(tmp_path / "head.log", "w")
    head = subprocess.Popen(
        [str(VENV_BIN / "ray"), "start", "--head", f"--port={port}", f"--dashboard-port={dash}",
         "--dashboard-host=127.0.0.1", "--include-dashboard=true", "--num-cpus=2",
         f"--temp-dir={tmpdir}", "--block", *(f"--{flag}={p}" for flag, p in ports.items())],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        _wait_for(f"{address}/api/version", 120)
        yield address, env
    finally:
        # --block stops the node's processes when it is terminated; its process
        # group (ours alone: start_new_session) is killed if anything lingers.
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
        subprocess.run(["rm", "-rf", tmpdir], check=False)


def submit_job(address: str, env: dict, command: list[str], *, timeout: float) -> tuple[int, str]:
    """``ray job submit`` a command; returns its exit code and output."""
    deadline = time.monotonic() + 120
    while True:
        job = subprocess.run([str(VENV_BIN / "ray"), "job", "submit", "--address", address, "--", *command],
                             env=env, capture_output=True, text=True, timeout=timeout)
        out = job.stdout + job.stderr
        # The dashboard answers before its job agent is up; the submission is refused then.
        if "No available agent" not in out or time.monotonic() > deadline:
            return job.returncode, out
        time.sleep(3)


@pytest.mark.slow
def test_ray_job_submit_runs_the_rule_test_on_the_cluster(ray_head, tmp_path):
    address, env = ray_head
    ws = create_workspace(tmp_path / "ws", backend="host-cpu-litert")
    config = yaml.safe_load(ws.ruletest_config.read_text())
    config["BASIC_TESTCASES"], config["OTHER_TESTCASES"] = ["dwconv_relu", "dwconv_dwconv"], []
    ws.ruletest_config.write_text(yaml.safe_dump(config))

    code, out = submit_job(address, env, ["nn-farm", "ruletest", "--workspace", str(ws.root), "--no-progress"],
                           timeout=900)
    assert code == 0, out[-4000:]
    assert "Connecting to existing Ray cluster" in out, out[-4000:]  # joined, did not start its own
    rules = json.loads((ws.fusion_rule_test / "detected_fusion_rule.json").read_text())
    assert rules["BF_dwconv_relu"]["obey"] is True
    assert rules["BF_dwconv_dwconv"]["obey"] is False
    assert "BF_dwconv_relu" in out  # the command's own summary came back through the job log
