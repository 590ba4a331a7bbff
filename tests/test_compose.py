"""The compose stack (docker-compose.yml, deploy/, Dockerfile) as an operator runs it.

No Docker engine is needed: the files are read with PyYAML and the few compose rules they
rely on (``${VAR:-default}`` interpolation, ``env_file`` under ``environment``, profiles)
are applied here. Where a compose CLI is installed (``docker compose``, else the old
``docker-compose``), it checks the files too; without one those tests are skipped.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DEMO_ENV = ROOT / "deploy" / "demo.env"
DOCKERFILE = ROOT / "Dockerfile"
# Every API host a cinebot process calls (README, "Configuration").
API_BASES = ("CINEBOT_WECHAT_API_BASE", "CINEBOT_WECOM_API_BASE", "CINEBOT_WECHATPAY_API_BASE")


# --- reading the files the way compose does ------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


_VARIABLE = re.compile(r"\$\{(\w+)(?:(:?-)([^}]*))?\}")


def interpolate(value: Any, variables: dict[str, str]) -> Any:
    """``${VAR}``, ``${VAR-default}`` and ``${VAR:-default}``, as compose substitutes them."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, default = match.groups()
        found = variables.get(name)
        if op == ":-" and not found:
            return default
        if op == "-" and found is None:
            return default
        return found or ""

    return _VARIABLE.sub(one, value)


def stack(variables: dict[str, str]) -> dict[str, Any]:
    """The compose model (anchors and ``<<`` merges resolved by PyYAML) after interpolation."""
    return interpolate(yaml.safe_load(COMPOSE.read_text(encoding="utf-8")), variables)


def demo_variables() -> dict[str, str]:
    """What ``docker compose --env-file deploy/demo.env`` interpolates with."""
    return read_env_file(DEMO_ENV)


def services(model: dict[str, Any], profiles: set[str]) -> dict[str, dict[str, Any]]:
    """The services ``up`` starts with these profiles on."""
    return {
        name: svc for name, svc in model["services"].items()
        if not svc.get("profiles") or profiles & set(svc["profiles"])
    }


def command(svc: dict[str, Any]) -> list[str]:
    cmd = svc.get("command", [])
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def is_cinebot(svc: dict[str, Any]) -> bool:
    return command(svc)[:1] == ["cinebot"]


def option(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def container_env(svc: dict[str, Any]) -> dict[str, str]:
    """A container's environment: its env_file(s), then ``environment``, which wins."""
    env: dict[str, str] = {}
    files = svc.get("env_file", [])
    for entry in [files] if isinstance(files, (str, dict)) else files:
        path = entry["path"] if isinstance(entry, dict) else entry
        env.update(read_env_file(ROOT / path))
    environment = svc.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    env.update({k: str(v) for k, v in environment.items()})
    return env


def published(svc: dict[str, Any]) -> list[str]:
    return [str(p) for p in svc.get("ports", [])]


def demo_stand_in() -> tuple[str, int]:
    """The stand-in service's name and port, from its ``cinebot fakewx`` command."""
    found = [
        (name, int(option(command(svc), "--port")))
        for name, svc in stack(demo_variables())["services"].items()
        if command(svc)[:2] == ["cinebot", "fakewx"]
    ]
    assert len(found) == 1, found
    return found[0]


# --- the demo: the stand-in, and everything pointed at it ------------------------------------


def test_the_stand_in_is_a_service_of_its_own_in_the_demo_profile() -> None:
    name, port = demo_stand_in()
    svc = stack(demo_variables())["services"][name]
    assert svc["profiles"] == ["demo"]
    assert option(command(svc), "--host") == "0.0.0.0"  # reachable by the other containers
    # Its page shows every message the bot sent: this machine only.
    assert published(svc) == [f"127.0.0.1:{port}:{port}"]
    # The demo's env file is what turns the profile on.
    assert demo_variables()["COMPOSE_PROFILES"] == "demo"
    # One stand-in for all: no replica starts its own (`serve --demo` does, on port + 1).
    every = stack(demo_variables())["services"].values()
    assert not any("--demo" in command(svc) for svc in every)


def test_every_cinebot_process_of_the_demo_calls_the_stand_in_and_no_real_api() -> None:
    name, port = demo_stand_in()
    running = services(stack(demo_variables()), {"demo"})
    cinebot = {n: svc for n, svc in running.items() if is_cinebot(svc) and n != name}
    assert {"app", "worker"} <= set(cinebot)
    for svc_name, svc in cinebot.items():
        env = container_env(svc)
        for base in API_BASES:
            assert env.get(base) == f"http://{name}:{port}", (svc_name, base)
        # The demo's own bank, and the demo accounts (the stand-in's), not real ones.
        assert env.get("CINEBOT_PAY_MODE") == "sandbox", svc_name
        assert not any(k.endswith(("_APPID", "_SECRET", "_CORP_ID", "_MCHID")) for k in env)


def test_the_demo_seeds_its_cinema_once_and_serves_it_to_the_browser_through_the_lb() -> None:
    running = services(stack(demo_variables()), {"demo"})
    seeders = [svc for svc in running.values() if command(svc) == ["cinebot", "demo"]]
    assert len(seeders) == 1 and seeders[0]["profiles"] == ["demo"]
    assert seeders[0]["restart"] in ("no", "on-failure")  # a one-shot, not a loop
    # Links the bot sends must open where the load balancer is published.
    lb_port = published(running["lb"])[0].split(":")[-2]
    assert container_env(running["worker"])["CINEBOT_PUBLIC_URL"] == f"http://127.0.0.1:{lb_port}"


def test_without_the_demo_file_the_stack_is_production_with_real_apis_and_dot_env() -> None:
    model = stack({})
    running = services(model, set())
    # No profile: no stand-in, no demo data.
    assert not any(command(svc)[:2] in (["cinebot", "fakewx"], ["cinebot", "demo"])
                   for svc in running.values())
    for name, svc in running.items():
        if is_cinebot(svc):
            # The operator's settings; compose refuses to start while .env is missing.
            assert svc["env_file"] == ".env", name
            environment = svc.get("environment", {})
            # The real API hosts (the settings' defaults) unless .env names others.
            assert not set(API_BASES) & set(environment), name
            assert not any(k.startswith("CINEBOT_") and k not in (
                "CINEBOT_DATABASE_URL", "CINEBOT_REDIS_URL") for k in environment), name
    # .env holds the secrets: never in the image.
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


# --- scale-out: no web replica publishes a port, the load balancer does ----------------------


def test_app_replicas_publish_no_port_and_only_the_lb_publishes_8080() -> None:
    for profiles in (set(), {"demo"}):
        running = services(stack(demo_variables() if profiles else {}), profiles)
        app = running["app"]
        assert "ports" not in app and "container_name" not in app  # --scale app=N works
        assert option(command(app), "--role") == "web"
        host_ports = {name: published(svc) for name, svc in running.items() if published(svc)}
        public = {name: ports for name, ports in host_ports.items()
                  if not all(p.startswith("127.0.0.1:") for p in ports)}
        assert public == {"lb": ["8080:8080"]}


def caddyfile() -> str:
    lb = stack({})["services"]["lb"]
    mounts = [v.split(":") for v in lb["volumes"]]
    config = [m for m in mounts if m[1] == "/etc/caddy/Caddyfile"]
    assert config and config[0][2:] == ["ro"], "the LB config file is mounted read-only"
    path = ROOT / config[0][0]
    assert path.is_file(), path
    # Comments out: what is left is what Caddy acts on.
    return "\n".join(line.split("#", 1)[0].rstrip() for line in path.read_text().splitlines())


def test_the_lb_is_the_official_caddy_image_with_its_config_mounted() -> None:
    lb = stack({})["services"]["lb"]
    assert lb["image"].split(":")[0] == "caddy"
    assert lb["depends_on"]["app"]["condition"] == "service_started"
    assert caddyfile()


def test_the_lb_proxies_every_path_to_every_app_replica() -> None:
    app_port = option(command(stack({})["services"]["app"]), "--port")
    config = caddyfile()
    assert re.search(r"^:8080 \{", config, re.MULTILINE)  # the published port
    # Every replica of the app service, found again in Docker's DNS as they come and go.
    assert re.search(rf"\breverse_proxy \{{[^}}]*\bdynamic a app {app_port}\b", config)
    # One reverse_proxy for the whole site, behind no path matcher: callbacks, /api, the
    # pages, /healthz and /telemetry all go through.
    assert re.findall(r"\breverse_proxy\b(.*)", config) == [" {"]
    assert not re.search(r"^\s*(handle|route|handle_path)\b", config, re.MULTILINE)
    # ... except each replica's own /metrics.
    assert re.search(r"^\s*respond /metrics 404$", config, re.MULTILINE)


def test_the_lb_caps_bodies_above_the_app_and_passes_the_client_address() -> None:
    config = caddyfile()
    size = re.search(r"request_body \{\s*max_size (\d+)MiB\s*\}", config)
    assert size and 1 < int(size.group(1)) <= 10  # above the app's default 1 MiB limit
    # The edge: the client's own address, never one the client claims.
    assert "trusted_proxies" not in config
    assert re.search(r"header_up X-Real-IP \{remote_host\}", config)


# --- the worker keeps the demo week topped up ------------------------------------------------


def test_the_worker_runs_the_hourly_top_up_of_the_demo_week() -> None:
    from jobs import schedule
    from jobs.context import JobContext
    from jobs.scheduler import build_scheduler

    worker = stack(demo_variables())["services"]["worker"]
    assert command(worker) == ["cinebot", "worker"]
    # `cinebot worker` builds its scheduler without the demo flag; the top-up is on it.
    scheduler = build_scheduler(JobContext(clock=None, locks=None))  # type: ignore[arg-type]
    job = scheduler.get_job(schedule.JOB_ID)
    assert job is not None and job.args[0] is schedule.top_up_demo_schedule
    assert job.trigger.interval <= timedelta(days=1)


# --- the image: both models trained at build, only read at run time --------------------------


def runtime_stage() -> list[str]:
    """The Dockerfile's last stage, one instruction a line (continuations joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    last = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return lines[last:]


def test_the_image_trains_both_models_and_the_runtime_user_only_reads_them() -> None:
    stage = runtime_stage()
    env = " ".join(line for line in stage if line.startswith("ENV "))
    cache = re.search(r"CINEBOT_NLU_CACHE=(\S+)", env)
    assert cache, "the models' folder is fixed in the image"
    user_at = next(i for i, line in enumerate(stage) if line.startswith("USER "))
    assert stage[user_at].split()[1] not in ("root", "0")
    trained = [i for i, line in enumerate(stage) if "cinebot nlu train" in line]
    assert trained and trained[0] < user_at, "trained as root, at build"
    run = stage[trained[0]]
    # The build fails unless both models are there: the runtime user never trains one.
    checked = re.search(r"for model in ([\w ]+);", run)
    assert checked and set(checked.group(1).split()) == {"intent", "feedback"}
    assert '"$CINEBOT_NLU_CACHE"/$model-*.pkl' in run
    # Readable by everyone, writable by root only; not handed to the runtime user.
    assert re.search(r'chmod -R a\+rX,go-w "\$CINEBOT_NLU_CACHE"', run)
    assert not any("chown" in line and cache.group(1) in line for line in stage)


def test_cinebot_nlu_train_leaves_both_models_in_the_cache(tmp_path: Path) -> None:
    cinebot = Path(sys.executable).with_name("cinebot")
    cache, tmp = tmp_path / "nlu", tmp_path / "tmp"
    tmp.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp),
           "CINEBOT_NLU_CACHE": str(cache)}
    done = subprocess.run([str(cinebot), "nlu", "train"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name.split("-")[0] for p in cache.glob("*.pkl")) == ["feedback", "intent"]


# --- compose itself, where installed -------------------------------------------------------


def compose_cli() -> list[str] | None:
    for cli in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cli[0]) is None:
            continue
        if subprocess.run([*cli, "version"], capture_output=True, check=False).returncode == 0:
            return cli
    return None


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the files compose reads, with an (empty) operator's .env."""
    for name in ("docker-compose.yml", "Dockerfile", ".dockerignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    (tmp_path / ".env").write_text("")
    return tmp_path


@pytest.mark.parametrize("mode", ["production", "demo"])
def test_compose_accepts_the_file(project: Path, mode: str) -> None:
    cli = compose_cli()
    if cli is None:
        pytest.skip("no compose CLI (docker compose or docker-compose) installed")
    args = ["--env-file", "deploy/demo.env"] if mode == "demo" else []
    done = subprocess.run([*cli, *args, "config", "-q"], cwd=project,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    if cli == ["docker", "compose"]:
        listed = subprocess.run([*cli, *args, "config", "--services"], cwd=project,
                                capture_output=True, text=True, timeout=60, check=False)
        assert ("fakewx" in listed.stdout.split()) == (mode == "demo"), listed.stdout


def test_compose_refuses_a_production_start_without_dot_env(project: Path) -> None:
    cli = compose_cli()
    if cli is None:
        pytest.skip("no compose CLI (docker compose or docker-compose) installed")
    (project / ".env").unlink()
    done = subprocess.run([*cli, "config", "-q"], cwd=project,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and ".env" in done.stderr
