"""Memory estimate against measured peak RSS growth on CPU: the calibration cases, as a table.

    .venv/bin/python bench/bench_memory.py [--bundled]

Each case trains in its own process; two run at a time. The same cases are asserted within [0.9, 1.3] by
tests/training/test_memory_calibration.py; this prints every figure, for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.training.tiny import build_tiny_causal_lm, build_tiny_encoder, build_tiny_seq2seq
from tests.training.bundled import minilm_path, smollm2_path
from tests.training.memory_calibration import measure_all, table
from tests.training.test_memory_calibration import BUNDLED_CASES, TINY_CASES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundled", action="store_true", help="also the bundled SmolLM2 and MiniLM cases")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        models = {
            "lm": build_tiny_causal_lm(root / "lm"),
            "lm14m": build_tiny_causal_lm(root / "lm14m", hidden_size=512, num_layers=6),
            "encoder": build_tiny_encoder(root / "encoder"),
            "seq2seq": build_tiny_seq2seq(root / "seq2seq"),
        }
        cases = list(TINY_CASES)
        if arguments.bundled:
            models["smollm2"], models["minilm"] = smollm2_path(), minilm_path()  # type: ignore[assignment]
            cases += BUNDLED_CASES
        print(table(measure_all(cases, models, root / "runs")))


if __name__ == "__main__":
    main()
