"""deploy/z2jh-values.yaml carries what a class on Kubernetes needs (zero-to-jupyterhub)."""
from __future__ import annotations

import re

import pytest
import yaml

from course import REPO_ROOT
from course.nbgrader import COURSE_ID

VALUES = REPO_ROOT / "deploy" / "z2jh-values.yaml"


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def test_image_is_pinned_and_built_from_the_pinned_dependencies(values):
    image = values["singleuser"]["image"]
    assert image["name"] and image["tag"] not in ("", "latest"), image
    text = VALUES.read_text()
    pinned_torch = re.search(r'"torch==([\d.]+)"', (REPO_ROOT / "pyproject.toml").read_text())
    assert pinned_torch and f"torch=={pinned_torch.group(1)}" in text  # the image's recipe


def test_every_server_mounts_the_shared_exchange(values):
    single = values["singleuser"]
    volumes = {v["name"]: v for v in single["storage"]["extraVolumes"]}
    mounts = {m["name"]: m for m in single["storage"]["extraVolumeMounts"]}
    exchange = single["extraEnv"]["COURSE_EXCHANGE"]
    assert volumes["nbgrader-exchange"]["persistentVolumeClaim"]["claimName"]
    assert mounts["nbgrader-exchange"]["mountPath"] == exchange
    assert "ReadWriteMany" in VALUES.read_text()


def test_nbgrader_config_per_role(values):
    mounts = values["singleuser"]["storage"]["extraVolumeMounts"]
    targets = {m["mountPath"] for m in mounts if m["name"] == "nbgrader-config"}
    assert targets == {f"/etc/sft-course/{r}/nbgrader_config.py"
                       for r in ("learner", "instructor")}
    hook = values["hub"]["extraConfig"]["10-course-roles"]
    assert "/etc/sft-course/instructor" in hook and "/etc/sft-course/learner" in hook
    assert "COURSE_SOLUTIONS" in hook  # the answer key only reaches the instructor
    assert f'course_id = "{COURSE_ID}"' in VALUES.read_text()


def test_login_is_closed_and_encrypted(values):
    assert values["proxy"]["https"]["enabled"] is True
    assert values["hub"]["config"]["NativeAuthenticator"]["open_signup"] is False
    assert values["singleuser"]["memory"]["limit"]
