"""The deployment examples under config/: the example configuration documents every key and passes --check."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

from proxy.config import DERIVED_FROM_URL, ClientUser, Config

CONFIG = Path(__file__).resolve().parent.parent / "config"
EXAMPLE = CONFIG / "sidecar.example.yaml"
DERIVED = {f"upstream.{key}" for key in DERIVED_FROM_URL}  # filled in from upstream.url, documented in a comment


def check(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "proxy", "--config", str(EXAMPLE), "--check"], capture_output=True,
                          text=True, env={k: v for k, v in {**os.environ, **env}.items() if v is not None},
                          timeout=60)


def test_example_config_passes_check():
    ok = check({"REDIS_PASSWORD": "from-env", "SIDECAR_OPS_PASSWORD": "ops-from-env"})
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0] == "configuration OK"
    assert "from-env" not in ok.stdout  # passwords are said to be set, never shown
    missing = check({"REDIS_PASSWORD": None, "SIDECAR_OPS_PASSWORD": "x"})
    assert missing.returncode == 2
    assert "upstream.password_env: environment variable REDIS_PASSWORD is not set" in missing.stderr


def key_paths(cls: type, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        default = f.default if f.default is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            out += key_paths(type(default), path + ".")
        else:
            out.append(path)
    return out


def test_example_config_shows_every_key_with_a_comment():
    raw = yaml.safe_load(EXAMPLE.read_text())
    text = EXAMPLE.read_text()
    for path in key_paths(Config):
        if path in DERIVED:  # explained, not set: the url carries them
            assert path in text, path
            continue
        node = raw
        for part in path.split("."):
            assert isinstance(node, dict) and part in node, f"{path} is missing from {EXAMPLE.name}"
            node = node[part]
    user_keys = {f.name for f in dataclasses.fields(ClientUser)}
    assert set(raw["client_auth"]["users"][0]) == user_keys


def test_deployment_examples_match_the_sidecar():
    unit = (CONFIG / "redis-sidecar.service").read_text()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit and "KillMode=mixed" in unit and "--check" in unit
    docs = list(yaml.safe_load_all((CONFIG / "kubernetes-sidecar.yaml").read_text()))
    sidecar_yaml = yaml.safe_load(docs[0]["data"]["sidecar.yaml"])
    from proxy import config

    cfg = config.build(sidecar_yaml, {"REDIS_PASSWORD": "x", "SIDECAR_OPS_PASSWORD": "y"})
    assert cfg.metrics.listen == "0.0.0.0:9121"
    pod = docs[1]["spec"]["template"]["spec"]
    sidecar = pod["initContainers"][0]
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["terminationGracePeriodSeconds"] > cfg.shutdown_timeout
    dockerfile = (CONFIG / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["redis-sidecar"]' in dockerfile and "STOPSIGNAL SIGTERM" in dockerfile


def _build_stage_sources(dockerfile: str) -> list[tuple[str, str]]:
    """(source in the repository, destination under /src) for each COPY of the image's build stage."""
    build_stage = dockerfile.split("\nFROM ")[1]
    copies = []
    for line in build_stage.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not words[1].startswith("--"):
            for source in words[1:-1]:
                dest = words[-1]
                copies.append((source, dest + source if dest.endswith("/") else dest))
    return copies


def _wheel_from_image_sources(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    root = CONFIG.parent
    src = tmp_path / "src"
    for source, dest in _build_stage_sources((CONFIG / "Dockerfile").read_text()):
        target = src / Path(dest).relative_to("/src")
        target.parent.mkdir(parents=True, exist_ok=True)
        if (root / source).is_dir():
            shutil.copytree(root / source, target, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        else:
            shutil.copy(root / source, target)
    return subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir",
                           str(tmp_path / "wheels"), str(src)], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "REDIS_SIDECAR_REQUIRE_EXTENSIONS": "1", **env})


def test_the_image_builds_the_c_extension_from_what_it_copies(tmp_path):
    """The Dockerfile's build stage, run by hand: its files alone make a wheel with the compiled wire layer."""
    built = _wheel_from_image_sources(tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "wheels").glob("redis_sidecar-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("proxy/wire/_speedups") and n.endswith(".so") for n in names), names
    assert "proxy/__main__.py" in names


def test_the_image_build_fails_rather_than_ship_the_python_path(tmp_path):
    """With REDIS_SIDECAR_REQUIRE_EXTENSIONS=1 (as the image sets it) a compile that fails fails the build."""
    broken = _wheel_from_image_sources(tmp_path, CC="/bin/false")
    assert broken.returncode != 0
    assert "_speedups.c" in broken.stdout + broken.stderr
