"""Benchmark: what training holds per training basket, the figure `ml.channel.BYTES_PER_TRAINING_BASKET` rounds up.

Reads a training channel's training side (ml/channel.py) at a few sample sizes and, for each, fits the four families
with their default parameters one after the other in this process while a thread samples its resident memory every
20 ms; prints, per size and family, the peak above what the process held before the fit, and the matrix's own size.
What a fit holds beyond the matrix grows with the baskets; the training stage's peak is the matrix plus the largest
fit's extra.

    uv run python -m bench.train_memory --train <channel folder> [--sizes 50000,100000,200000]
"""

from __future__ import annotations

import argparse
import gc
import os
from pathlib import Path

from bench.memory import MemorySampler
from ml.channel import GoldChannel
from ml.families import FAMILIES, fitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="a training channel (work/<run>/train)")
    parser.add_argument("--sizes", default="50000,100000,200000", help="training baskets, comma-separated")
    args = parser.parse_args()
    channel = GoldChannel(args.train)
    sampler = MemorySampler()
    sampler.start()
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    for size in (int(s) for s in args.sizes.split(",")):
        side = channel.train_side(cap=size, seed=7)
        print(f"{side.used:,} baskets: matrix {side.x.nbytes / side.used:.0f} B/basket")
        for family in FAMILIES.values():
            gc.collect()
            sampler.reset()
            before = sampler.take()
            fitted(family.build(family.defaults, 7), side.x, side.y)
            extra = sampler.take() - before
            print(f"  {family.name}: {extra / 1e6:.0f} MB above the matrix, {extra / side.used:.0f} B/basket")
        del side
    sampler.stop()
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
