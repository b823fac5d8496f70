"""Per-kernel round records of a build, on disk, so a rerun skips finished rounds.

``<workspace>/predictor_build/results/build_state.json`` holds, per kernel type:

    test_ids      the held-out ids, fixed in round 1 and never trained on, so every
                  round is scored on the same configs and rounds are comparable
    rounds        one record per finished round: mark, ids measured, accuracy on the
                  held-out set (rmse, rmspe, acc5/10/15), learner, kept or not
    kept_round    the round whose regressor goes into the package
    error_configs where the next round samples (configs predicted worse than the
                  threshold by a fit that never saw the held-out set)
    done          why the kernel stopped ("" while it still runs rounds)

A later round is kept only when it measures better on the held-out set
(:func:`is_better`): nn-Meter users report that adaptive rounds can make a kernel
worse, and nn-Meter keeps the last round whatever it measures.
"""

from __future__ import annotations

import json
import os
import pathlib
from dataclasses import asdict, dataclass, field

__all__ = ["STATE_FILE", "RoundRecord", "KernelState", "BuildState", "is_better", "round_mark"]

STATE_FILE = "build_state.json"
# acc10 differences below this are ties (one test config in a thousand); rmspe decides.
_ACC_TIE = 1e-9


def round_mark(round_no: int, mark: str = "") -> str:
    """nn-Meter's data-file marks: ``prior`` for round 1, ``finegrained<r-1>`` after."""
    base = "prior" if round_no == 1 else f"finegrained{round_no - 1}"
    return f"{base}_{mark}" if mark else base


def is_better(new: dict, old: dict | None) -> bool:
    """Whether metrics ``new`` beat ``old`` on the same held-out set.

    Higher +-10% accuracy wins; on a tie, lower RMSPE wins. Anything beats no
    metrics at all.
    """
    if old is None:
        return True
    if new["acc10"] > old["acc10"] + _ACC_TIE:
        return True
    if new["acc10"] < old["acc10"] - _ACC_TIE:
        return False
    return new["rmspe"] < old["rmspe"]


@dataclass
class RoundRecord:
    """One finished round of one kernel."""

    round: int
    mark: str
    new_ids: int
    n_train: int
    n_test: int
    metrics: dict
    learner: str
    kept: bool
    error_configs: int
    predictor_path: str = ""


@dataclass
class KernelState:
    """Everything a rerun needs to go on with one kernel."""

    kernel_type: str
    test_ids: list = field(default_factory=list)
    rounds: list = field(default_factory=list)  # RoundRecord dicts
    kept_round: int = 0
    error_configs: list = field(default_factory=list)
    done: str = ""

    @property
    def rounds_done(self) -> int:
        return len(self.rounds)

    @property
    def kept(self) -> dict | None:
        for r in self.rounds:
            if r["round"] == self.kept_round:
                return r
        return None

    def record(self, rec: RoundRecord) -> None:
        self.rounds = [r for r in self.rounds if r["round"] != rec.round] + [asdict(rec)]
        if rec.kept:
            self.kept_round = rec.round

    def consider(self, rec: RoundRecord) -> bool:
        """Record a finished round, kept only if it beats the kept round (:func:`is_better`).

        Returns:
            Whether the round is now the kept one.
        """
        kept = self.kept
        rec.kept = is_better(rec.metrics, kept["metrics"] if kept else None)
        self.record(rec)
        return rec.kept


class BuildState:
    """The round records of every kernel of one workspace, saved after each change.

    Args:
        results_dir: ``<workspace>/predictor_build/results``.
    """

    def __init__(self, results_dir: str | os.PathLike):
        self.path = pathlib.Path(results_dir) / STATE_FILE
        self.kernels: dict[str, KernelState] = {}
        if self.path.exists():
            raw = json.loads(self.path.read_text())
            for name, entry in raw.get("kernels", {}).items():
                self.kernels[name] = KernelState(**entry)

    def kernel(self, kernel_type: str) -> KernelState:
        if kernel_type not in self.kernels:
            self.kernels[kernel_type] = KernelState(kernel_type)
        return self.kernels[kernel_type]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"kernels": {k: asdict(v) for k, v in self.kernels.items()}}, indent=2))
        os.replace(tmp, self.path)
