"""Low-precision autocast on every CPU: the LSTM falls back to float32 where oneDNN has no kernel.

``ONEDNN_MAX_CPU_ISA=AVX2`` makes oneDNN behave as on a CPU without AVX-512 (the machines
where a bf16 LSTM raised "could not create a primitive descriptor"), so these checks run
the same on every CI machine, whatever its CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import logging, sys, torch
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
    from fashion_retrieval.models.text_encoders import build_text_encoder
    enc = build_text_encoder("lstm", texts=["make it red", "with long sleeves please"], word_dim=8, hidden=16)
    for dtype in (torch.bfloat16, torch.float16):
        for texts in (["make it red", "with long sleeves please"], ["make it red"]):  # packed, unpacked
            with torch.autocast("cpu", dtype=dtype):
                out = enc(texts)  # (B, 16)
            out.float().sum().backward()
            assert out.shape == (len(texts), 16), out.shape
            assert torch.isfinite(out.float()).all()
    print("DONE")
""")


def _cpu_without_avx512() -> dict[str, str]:
    return {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "PYTHONPATH": str(ROOT)}


def test_lstm_runs_under_bf16_and_fp16_autocast_on_a_cpu_without_avx512_and_says_so():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=_cpu_without_avx512(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "DONE" in proc.stdout
    warnings = [line for line in proc.stdout.splitlines() if "LSTM text encoder runs in float32" in line]
    # once per dtype that fell back, not once per call; bf16 has no kernel without AVX-512
    assert any("bfloat16" in w for w in warnings), proc.stdout
    assert len(warnings) == len(set(warnings)) <= 2, warnings


@pytest.mark.slow
def test_the_device_tests_pass_on_a_cpu_without_avx512():
    """The bf16 device tests (training, evaluation, Retriever) on an AVX2-only oneDNN."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_device.py"], cwd=ROOT, env=_cpu_without_avx512(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]
