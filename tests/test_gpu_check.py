"""bench/gpu_check.py on the CPU with tiny data: the script that verifies the GPU paths works, and its
checks pass where they can run here (float32 against float64 on the CPU)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_the_gpu_check_runs_its_checks_on_the_cpu():
    command = [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--device", "cpu", "--quick",
               "--cases", "FC", "ResNet-20"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout.split("\nCPU: ")[1].splitlines()[1:]
    verdicts = [line for line in summary if line.startswith(("PASS", "FAIL"))]
    assert [line.split(":")[0] for line in verdicts] == [
        "PASS FC LCA batch_stats on cpu vs CPU float64",
        "PASS ResNet-20 LCA batch_stats on cpu vs CPU float64",
        "PASS ResNet-20 LCA eval on cpu vs CPU float64",
        "PASS ResNet-20 LCA records with the set on the device, in host memory, streamed",
    ]
    assert sum("two forward+backward passes" in line for line in summary) == 2
    assert sum("samples/s at precision 32" in line for line in summary) == 2
