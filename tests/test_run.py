"""`hub run` as a new user starts it: the demo town is up with every source's items."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import urlopen

from tests.demo_graph import demo_graph

ROOT = Path(__file__).resolve().parents[1]


def test_hub_run_shows_every_demo_source_within_a_minute(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with demo_graph() as graph_env:  # as `make run` does: the bakery's Facebook page and Instagram account
        _run_the_demo(tmp_path, port, graph_env)


def _run_the_demo(tmp_path: Path, port: int, graph_env: dict[str, str]) -> None:
    env = {**os.environ, **graph_env, "HUB_STORE_URL": f"sqlite:///{tmp_path / 'hub.db'}",
           "HUB_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "hub", "run", "-c", "config.example.yaml", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    health = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                health = json.load(urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2))
            except OSError:
                health = {}
            if health.get("sources", {}).get("healthy") == health.get("sources", {}).get("total", -1):
                break
            time.sleep(0.5)
        page = urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
        bakery = urlopen(f"http://127.0.0.1:{port}/m/baeckerei-schmitz", timeout=5).read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=20)[0]
    assert health["status"] == "ok", output
    assert health["sources"]["total"] == health["sources"]["healthy"] >= 13
    assert health["sources"]["with_warnings"] == 0  # the demo's tokens are checked at start, and fine
    assert health["items"] >= 88
    assert "Bäckerei Schmitz" in page and "Stadtverwaltung" in page
    assert "Stollenanschnitt auf dem Marktplatz" in page  # from the Facebook page
    # from the Instagram account: on the bakery's page (the front page holds the town's newest 30)
    assert "Wie wird eine Brezel geschlungen?" in bakery
    # SIGTERM is a clean shutdown (uvicorn re-raises the signal once it has shut down)
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    # a first start is quiet: housekeeping yields to the first fetch's writes (it used to
    # print a traceback: "database table is locked")
    assert "Traceback" not in output and " ERROR " not in output, output
