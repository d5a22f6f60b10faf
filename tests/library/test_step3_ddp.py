"""Step 3's text on DistributedDataParallel, checked: the course loop divides every micro-batch's
summed loss by the global supervised-token count and needs the *sum* of the processes'
gradients; DDP *averages* them, so under DDP the loss is multiplied by world_size. Two CPU
processes (gloo, torchrun) wrapped in DDP then give the single-process gradients of the whole
batch (tests/library/step3_ddp_worker.py). About 20 s."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from course import REPO_ROOT

WORKER = REPO_ROOT / "tests" / "library" / "step3_ddp_worker.py"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "grads.json"
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(WORKER), str(out)],
                   check=True, env=env, cwd=REPO_ROOT, timeout=300, capture_output=True)
    return json.loads(out.read_text())


def test_ddp_with_the_loss_times_world_size_gives_the_single_process_gradients(run):
    assert run["world_size"] == 2 and run["tokens"] == run["single_tokens"]
    ddp, single = torch.tensor(run["ddp"]), torch.tensor(run["single"])
    assert torch.allclose(ddp, single, rtol=1e-4, atol=1e-6), (ddp - single).abs().max()


def test_without_the_factor_ddp_gradients_are_world_size_times_too_small(run):
    ddp, single = torch.tensor(run["ddp"]), torch.tensor(run["single"])
    plain = ddp / run["world_size"]  # what DDP's mean gives when the loss is not multiplied
    assert not torch.allclose(plain, single, rtol=1e-2)
    assert torch.allclose(plain * run["world_size"], single, rtol=1e-4, atol=1e-6)
