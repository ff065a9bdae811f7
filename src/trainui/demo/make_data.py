"""Regenerate the demo training data: data/spirals.csv.

Three interleaved noisy spiral arms in the plane, one arm per class, 2,000 points in all.
Uses only the standard library, so a fixed seed gives the same file on every Python version.

    python3 examples/demo/make_data.py            # writes examples/demo/data/spirals.csv
    python3 examples/demo/make_data.py OUT.csv    # writes OUT.csv
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

SEED = 20240521
N_POINTS = 2000
N_CLASSES = 3
TURNS = 1.25  # how far each arm winds around the centre
NOISE = 0.2  # angular noise, radians

DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "spirals.csv"


def make_rows(seed: int = SEED) -> list[tuple[float, float, int]]:
    rng = random.Random(seed)
    rows = []
    for i in range(N_POINTS):
        label = i % N_CLASSES
        t = rng.random()
        radius = 0.1 + t
        angle = label * 2 * math.pi / N_CLASSES + t * TURNS * 2 * math.pi
        angle += rng.gauss(0.0, NOISE) * (0.3 + t)
        rows.append((radius * math.cos(angle), radius * math.sin(angle), label))
    rng.shuffle(rows)
    return rows


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="\n") as f:
        f.write("x1,x2,label\n")
        for x1, x2, label in make_rows():
            f.write(f"{x1:.5f},{x2:.5f},{label}\n")
    print(f"wrote {N_POINTS} rows to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
