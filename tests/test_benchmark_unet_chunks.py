"""benchmarks/unet_chunks.py: the world prior's UNet on a batch run whole and in chunks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "unet_chunks.py"


def test_every_chunk_size_is_timed_and_gives_the_whole_batchs_outputs_to_rounding() -> None:
    run = subprocess.run([sys.executable, str(SCRIPT), "--batch", "6", "--chunks", "6", "4", "1", "--rounds", "1"],
                         capture_output=True, text=True, check=True, cwd=REPO)
    lines = run.stdout.splitlines()
    assert lines[0].startswith("CPU: ") and "a batch of 6" in lines[0] and "the prior's chunk: 32" in lines[0]
    rows = {int(line.split()[0]): line.split() for line in lines[2:]}
    assert sorted(rows) == [1, 4, 6]
    assert rows[6][3] == "bitwise"  # the whole batch in one chunk
    for chunk, (_, cpu_ms, wall_ms, difference) in rows.items():
        assert float(cpu_ms) > 0 and float(wall_ms) > 0
        assert difference == "bitwise" or float(difference) < 1e-4, f"chunks of {chunk}: outputs {difference} off"
