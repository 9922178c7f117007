"""Two CPU processes under ``accelerate launch``: disjoint data, identical weights."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_training import make_tiny_fashioniq

REPO = Path(__file__).resolve().parents[1]


def _launch(cmd: list[str], env: dict[str, str], outputs: list[Path]) -> subprocess.CompletedProcess:
    """Run an ``accelerate launch --main_process_port 0`` command.

    With port 0 Accelerate picks a free port and torch binds it a moment later; another
    program can take it in between (torch's TCPStore then fails with EADDRINUSE; neither can
    bind port 0 and share the number with the other ranks). Only that failure is retried,
    once, on clean ``outputs``.
    """
    for attempt in range(2):
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=360)
        if proc.returncode == 0 or "EADDRINUSE" not in proc.stderr or attempt:
            return proc
        for path in outputs:
            shutil.rmtree(path, ignore_errors=True)
    return proc


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_cpu_processes_see_disjoint_data_and_agree(tmp_path: Path) -> None:
    data = make_tiny_fashioniq(tmp_path / "fiq")
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", "0",
        str(REPO / "training" / "train.py"),
        "--dataset", "fashioniq", "--data-root", str(data), "--model.image-encoder", "tiny_cnn",
        "--model.text-encoder", "lstm", "--model.compositor", "tirg", "--model.embed-dim", "32", "--model.pretrained", "false",
        "--batch-size", "4", "--max-steps", "6", "--save-every", "3", "--eval-every", "100",
        "--log-every", "1", "--lr", "0.05", "--model.modality-dropout", "0.2",
        "--model.text-kwargs", '{"word_dim": 32, "hidden": 32}',
        "--feature-cache-dir", str(tmp_path / "features"), "--output-dir", str(out), "--debug-log-ids",
    ]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    proc = _launch(cmd, env, [out, tmp_path / "features"])
    assert proc.returncode == 0, proc.stderr[-4000:]

    seen = {}
    for rank in (0, 1):
        rows = [json.loads(line) for line in (out / f"debug_ids_rank{rank}.jsonl").read_text().splitlines()]
        assert [r["micro_step"] for r in rows] == list(range(6))
        seen[rank] = rows
    # 60 examples, global batch 8: 7 steps per epoch, so all 6 steps are in the first epoch.
    epoch0 = [i for rank in (0, 1) for r in seen[rank] for i in r["index"]]
    assert len(epoch0) == 48 and len(set(epoch0)) == 48  # no example seen twice in an epoch
    for step in range(6):
        assert not set(seen[0][step]["index"]) & set(seen[1][step]["index"])

    from safetensors.torch import load_file

    w0 = load_file(str(out / "debug_weights_rank0.safetensors"))
    w1 = load_file(str(out / "debug_weights_rank1.safetensors"))
    final = load_file(str(out / "final" / "model.safetensors"))
    assert w0.keys() == w1.keys() == final.keys()
    for key in w0:  # parameters and buffers alike
        assert torch.equal(w0[key], w1[key]), key
        assert torch.equal(w0[key], final[key]), key
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == [1, 2, 3, 4, 5, 6]  # written once, by the main process
