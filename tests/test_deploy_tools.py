"""deploy/ checked by the tools that own each format, not by parsers of our own.

Kubernetes manifests against the API's schemas (kubernetes-validate, strict: an unknown
field fails), Dockerfiles with hadolint, systemd units with ``systemd-analyze verify``,
and every YAML file with yamllint (deploy/.yamllint.yaml). Each check also proves it
can fail, on a copy broken the way a careless edit would break it. Offline and fast.
That every `reindex ...` call in deploy/ matches the CLI is tests/test_deploy.py's job.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
MANIFESTS = sorted(p for p in (DEPLOY / "kubernetes").glob("*.yaml") if p.name != "kustomization.yaml")
DOCKERFILES = sorted(p for p in DEPLOY.glob("Dockerfile*") if not p.name.endswith(".dockerignore"))
YAML_FILES = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (the test extra installs it)")
    return found


# -- Kubernetes ---------------------------------------------------------------------------------
def _resources(path: Path) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for d in docs:
        # the API server names a generateName resource on create; the schema requires the name
        meta = d.setdefault("metadata", {})
        if "name" not in meta and "generateName" in meta:
            meta["name"] = meta["generateName"] + "x1y2z"
    return docs


def _k8s_problems(resource: dict) -> str | None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(resource, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{'.'.join(map(str, exc.path))}: {exc.message}"
    return None


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_kubernetes_manifests_match_the_api_schemas(path: Path) -> None:
    pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (the test extra)")
    resources = _resources(path)
    assert resources
    problems = {f"{r['kind']}/{r['metadata']['name']}": _k8s_problems(r) for r in resources}
    assert {k: v for k, v in problems.items() if v} == {}


def test_kubernetes_validation_catches_a_misspelt_field() -> None:
    pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (the test extra)")
    cronjob = next(r for r in _resources(DEPLOY / "kubernetes" / "cronjob-sync.yaml") if r["kind"] == "CronJob")
    broken = copy.deepcopy(cronjob)
    broken["spec"]["concurencyPolicy"] = broken["spec"].pop("concurrencyPolicy", "Forbid")
    assert _k8s_problems(cronjob) is None
    assert "concurencyPolicy" in (_k8s_problems(broken) or "")


# -- Dockerfiles --------------------------------------------------------------------------------
def _hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_tool("hadolint"), "--no-color", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_pass_hadolint(path: Path) -> None:
    done = _hadolint(path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_catches_an_unpinned_install(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text((DEPLOY / "Dockerfile").read_text().replace("pip install pip==26.3", "pip install --upgrade pip"))
    done = _hadolint(broken)
    assert done.returncode != 0 and "DL3013" in done.stdout


# -- systemd ------------------------------------------------------------------------------------
UNITS = sorted((DEPLOY / "systemd").glob("reindex-sync.*"))


def _verify_units(folder: Path) -> subprocess.CompletedProcess:
    """``systemd-analyze verify`` on copies whose ExecStart names this venv's real `reindex`.

    verify checks that the command exists; the unit's own path is /opt/reindex, which a
    test machine does not have. Everything else is the file as shipped.
    """
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (a systemd host has it)")
    copies = []
    for unit in UNITS:
        target = folder / unit.name
        target.write_text(unit.read_text().replace("/opt/reindex/bin/reindex", str(BIN / "reindex")))
        copies.append(str(target))
    return subprocess.run([analyze, "verify", *copies], capture_output=True, text=True, timeout=60)


def test_systemd_units_verify(tmp_path: Path) -> None:
    assert [u.suffix for u in UNITS] == [".service", ".timer"]
    done = _verify_units(tmp_path)
    # verify exits 0 on many findings and reports them on stderr: a clean unit says nothing
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


def test_systemd_verify_catches_a_bad_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "src"
    broken.mkdir()
    for unit in UNITS:
        (broken / unit.name).write_text(unit.read_text().replace("Type=oneshot", "Type=one-shot"))
    monkeypatch.setattr(sys.modules[__name__], "UNITS", sorted(broken.glob("reindex-sync.*")))
    out = tmp_path / "out"
    out.mkdir()
    assert "one-shot" in _verify_units(out).stderr


# -- YAML ---------------------------------------------------------------------------------------
def _yamllint(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_tool("yamllint"), "--strict", "-f", "parsable", "-c", str(DEPLOY / ".yamllint.yaml"),
                           *map(str, paths)], capture_output=True, text=True, timeout=60)


def test_every_yaml_file_passes_yamllint() -> None:
    assert len(YAML_FILES) >= 8
    done = _yamllint(*YAML_FILES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_yamllint_catches_a_duplicate_key(tmp_path: Path) -> None:
    broken = tmp_path / "configmap.yaml"
    broken.write_text((DEPLOY / "kubernetes" / "configmap.yaml").read_text() + "kind: ConfigMap\n")
    done = _yamllint(broken)
    assert done.returncode != 0 and "key-duplicates" in done.stdout
