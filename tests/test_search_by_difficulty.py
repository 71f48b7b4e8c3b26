"""Accuracy by difficulty bin, with values worked by hand."""

import numpy as np

from rtc.analysis import by_difficulty


def test_accuracy_by_bin_golden(tmp_path):
    bins = np.array([0, 0, 1, 2, 2, 2])  # bin 3 is empty
    results = {
        "majority": {4: np.array([0, 1, 1, 0, 1, 1.0]), 2: np.array([0, 0, 1, 1, 1, 1.0])},
        "beam": {4: np.array([0.5, 0, 0, 1, 1, 0.0])},
    }
    got = by_difficulty.accuracy_by_bin(results, bins, 4)
    assert got == {
        "majority": {2: [0.0, 1.0, 1.0, None], 4: [0.5, 1.0, 2 / 3, None]},
        "beam": {4: [0.25, 0.0, 2 / 3, None]},
    }
    assert list(got["majority"]) == [2, 4]  # budgets in order
    table = by_difficulty.bin_table(got, [2, 1, 3, 0], [0.1, 0.5, 0.9, None])
    assert "| majority | 4 | 0.500 | 1.000 | 0.667 | - |" in table
    assert "bin 3 (0 problems, pass@1 -)" in table
    path = tmp_path / "bins.png"
    by_difficulty.plot_by_bin(got, [0.1, 0.5, 0.9, None], str(path), "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
