"""Issue 22, item 4: the Ray path on a real two-node cluster on this machine, a worker killed midway.

`ray start --head` and `ray start --address=...` (a second raylet: a second node) on 127.0.0.1 only, one
CPU each; `sqbert-fast score --ray ADDRESS` runs as a driver subprocess; once some shards are committed one
actor process is SIGKILLed. The run must end with every input row exactly once, in order, and the bytes of
a single-machine run: either Ray restarts the actor and retries its shard (a shard commits only through its
`.done` marker, so a retried shard is written once), or the driver fails and `--resume` finishes the rest.
Bounded: every wait has a deadline, and the nodes are stopped in a finalizer.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("ray", reason="Ray is not installed: pip install 'sqbert_fast[ray]' (CI installs it)")
pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'ray[data]'")
pq = pytest.importorskip("pyarrow.parquet")

from sqbert_fast.scoring import Scorer  # noqa: E402

from test_scoring import _texts, _write, models  # noqa: E402,F401  (the tiny checkpoints fixture)

RAY = shutil.which("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Ray 2.5x+ turns token authentication on for `ray start --head`; every process here talks to 127.0.0.1 only,
# so the nodes and the driver all run without it (set for this module's processes, the driver inheriting it)
ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def _ray(*args, timeout=120):
    env = {**os.environ, **ENV}
    return subprocess.run([RAY, *args], capture_output=True, text=True, timeout=timeout, env=env)


def _done_shards(parts) -> int:
    try:
        return sum(name.endswith(".done") for name in os.listdir(parts))
    except OSError:
        return 0


def _actor_pids() -> list[int]:
    """Processes of our scoring actors (Ray names a worker's process after the actor class it hosts)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split(None, 1)[0]) for line in out.splitlines()
            if "ray::" in line and "ShardActor" in line]  # e.g. ray::MapWorker(MapBatches(ShardActor))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if RAY is None:
        pytest.skip("the `ray` command is not on PATH")
    port = _free_port()
    head = _ray("start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
                "--include-dashboard=false", "--disable-usage-stats")
    try:
        assert head.returncode == 0, head.stdout[-2000:] + head.stderr[-2000:]
        address = f"127.0.0.1:{port}"
        node = _ray("start", f"--address={address}", "--node-ip-address=127.0.0.1", "--num-cpus=1")
        assert node.returncode == 0, node.stdout[-2000:] + node.stderr[-2000:]
        status = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # both raylets registered
            status = _ray("status", f"--address={address}", timeout=30).stdout
            if status.count("node_") >= 2:
                break
            time.sleep(1)
        assert status.count("node_") >= 2, status
        yield address
    finally:
        _ray("stop", "--force", timeout=60)


def test_two_nodes_one_worker_killed_no_row_lost_or_doubled(models, cluster, tmp_path):
    texts = _texts(640, seed=31)
    texts[101] = ""  # a bad row: it goes to the errors file, once
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"key": f"k{i}", "text": t} for i, t in enumerate(texts)])
    ref = tmp_path / "ref.parquet"
    Scorer(models["embed"], task="embed", window=8, num_threads=1).score_file(src, ref, id_field="key",
                                                                              progress=False)
    out = tmp_path / "out.parquet"
    parts = str(out) + ".parts"
    args = [sys.executable, "-m", "sqbert_fast.cli", "score", models["embed"], src, str(out), "--task", "embed",
            "--window", "8", "--ray-shard-rows", "8", "--id-field", "key", "--no-progress", "--ray", cluster,
            "--ray-actors", "2", "--ray-cpus-per-actor", "0.5"]
    with open(tmp_path / "driver.log", "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **ENV})
        try:
            deadline = time.monotonic() + 180
            while _done_shards(parts) < 6 and proc.poll() is None:
                assert time.monotonic() < deadline, "the Ray run made no progress"
                time.sleep(0.01)
            victims = _actor_pids()
            assert victims, "no scoring actor process found: " + (tmp_path / "driver.log").read_text()[-2000:]
            os.kill(victims[0], signal.SIGKILL)
            killed_at = _done_shards(parts)
            rc = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert killed_at < 80, killed_at  # the worker died midway, not after the last shard
    print(f"actor {victims[0]} killed with {killed_at} of 80 shards committed; driver exit code {rc}"
          + (" (Ray restarted the actor and retried its shard)" if rc == 0 else " (finished by --resume)"))
    if rc != 0:  # the actor's shard was lost with it and the run gave up: --resume finishes the rest
        resumed = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=300,
                                 env={**os.environ, **ENV})
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert out.read_bytes() == ref.read_bytes()
    assert (tmp_path / "out.parquet.errors.jsonl").read_bytes() == \
        (tmp_path / "ref.parquet.errors.jsonl").read_bytes()
    ids = pq.read_table(out).column("id").to_pylist()
    assert ids == [f"k{i}" for i in range(640) if i != 101]  # each row once, in input order
    assert not os.path.exists(parts)
