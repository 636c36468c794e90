"""deploy/: the Dockerfile and the Kubernetes example agree with each other and with the real server.

No container engine runs here: the image is not built. What is checked instead: the Kubernetes
manifest parses and its timings are consistent (grace period above preStop + drain timeout); the
command the image runs, with the manifest's arguments and environment appended, starts a real
`agent-run serve` (with the emulator) that answers the probe paths, exposes the HPA's metric and
drains on SIGTERM well inside the grace period; the Dockerfile copies files that exist.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
TOKEN = "deploy-test-token-0123456789"

pytestmark = pytest.mark.timeout(60)


def _docs() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()) if doc}


def _container() -> dict[str, Any]:
    [container] = _docs()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def _dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def _entrypoint() -> list[str]:
    match = re.search(r"^ENTRYPOINT (\[.*\])$", _dockerfile(), re.M)
    assert match, "no exec-form ENTRYPOINT"
    return list(json.loads(match.group(1)))


def _option(args: list[str], name: str) -> str:
    return args[len(args) - 1 - args[::-1].index(name) + 1]  # the last one wins, as in argparse


def test_grace_period_covers_prestop_and_drain() -> None:
    pod = _docs()["Deployment"]["spec"]["template"]["spec"]
    container = _container()
    drain = float(_option(container["args"], "--drain-timeout"))
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= float(pre_stop[1]) + drain + 5


def test_ports_and_probes_match_the_image() -> None:
    docs = _docs()
    container = _container()
    entry = _entrypoint()
    port = int(_option(entry, "--port"))
    assert port == 8080 and _option(entry, "--host") == "0.0.0.0"  # AgentCore Runtime's contract
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/ping"
    assert docs["Service"]["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == docs["Deployment"]["metadata"]["name"]
    assert float(hpa["metrics"][0]["pods"]["target"]["averageValue"]) < float(
        _option(container["args"], "--max-conversations"))


def test_dockerfile_basics() -> None:
    text = _dockerfile()
    assert re.search(r"^ARG PYTHON=python:3\.12-slim$", text, re.M)
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1] not in ("root", "0")
    pod = _docs()["Deployment"]["spec"]["template"]["spec"]
    assert str(pod["securityContext"]["runAsUser"]) == user[-1] and pod["securityContext"]["runAsNonRoot"]
    assert re.search(r"^HEALTHCHECK .*\n.*127\.0\.0\.1:8080/ping", text, re.M)
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in source.split():
            if "$" not in path:
                assert (REPO / path).exists(), path
    assert (REPO / "agents" / "orders.yaml").exists()  # the default AGENT_DIR/AGENT_FILE
    ignored = (REPO / ".dockerignore").read_text().split()
    assert not {"runner", "schemas", "agents", "pyproject.toml", "README.md"} & set(ignored)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def as_deployed(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """The image's command + the manifest's args and env, run here (the emulator for the model)."""
    entry, container = _entrypoint(), _container()
    assert entry[:3] == ["agent-run", "serve", "/agent/agent.yaml"]
    port = _free_port()
    args = [a if a != "8080" else str(port) for a in entry[3:]] + container["args"]
    names = {e["name"] for e in container["env"]}
    assert "AGENT_RUN_SERVE_TOKEN" in names  # bound beyond loopback: callers must authenticate
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AGENT_RUN_SERVE_TOKEN=TOKEN, AGENT_RUN_EMULATOR_ASR="none")
    err = (tmp_path / "serve.err").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "runner", "serve", str(REPO / "agents" / "orders.yaml"),
                             *args, "--emulate"], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=err)
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        err.close()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers or {},
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_readme_agentcore_recipe_names_what_the_server_serves() -> None:
    readme = (REPO / "README.md").read_text()
    recipe = readme[readme.index("**Amazon Bedrock AgentCore Runtime**"):readme.index("## The agent file")]
    for needed in ("linux/arm64", "--no-auth", "POST /invocations", "time_of_last_update", "/ping",
                   "text/event-stream", "--invocation-timeout"):
        assert needed in recipe, needed
    assert "not served" not in recipe and "What is missing" not in recipe


def test_the_deployed_command_serves_the_probes_and_drains(
        as_deployed: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, base = as_deployed
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, f"serve exited {proc.returncode}"
        try:
            if _get(base + "/readyz")[0] == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "not ready in 30 s"
        time.sleep(0.1)
    status, ping = _get(base + "/ping")
    assert status == 200 and json.loads(ping)["status"] == "Healthy"
    assert abs(json.loads(ping)["time_of_last_update"] - time.time()) < 60  # AgentCore: Unix seconds
    status, metrics = _get(base + "/metrics")
    hpa = _docs()["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]["metric"]["name"]
    assert status == 200 and re.search(rf"^{hpa} 0\.0$", metrics, re.M), metrics
    assert _get(base + "/")[0] == 200  # the page (the token is asked by /ws, not by the page)
    # AgentCore Runtime's request endpoint, as the README's recipe calls it (the token is ours).
    prompt = {"prompt": "Hello there."}
    assert _post(base + "/invocations", prompt)[0] == 403
    status, answer = _post(base + "/invocations", prompt, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, answer
    assert json.loads(answer)["reply"] and json.loads(answer)["conversation"]

    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 143
    pre_stop = float(_container()["lifecycle"]["preStop"]["exec"]["command"][1])
    grace = _docs()["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert time.monotonic() - started < grace - pre_stop
