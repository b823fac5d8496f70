"""Rounds over all kernels of a build: sample, one farm run, train in parallel, keep if better.

    round 1        prior configs of every kernel  --one farm run--> latencies
                   ids split 8:2 once: the 20% is the kernel's held-out test set for good
                   fit on the rest (one Ray task per kernel) -> accuracy on the held-out set
    round r > 1    fine-grained configs around the configs a fit predicted badly
                   (found on a split of the training pool, never on the held-out set)
                   --one farm run--> refit on the grown pool -> accuracy on the same held-out set
                   kept only if it measures better than the kept round
    stop           at ITERATION, at the target +-10% accuracy, or when nothing is predicted badly

Every kernel of a round goes into the same farm run, so devices never idle between
kernel types. The round records (:mod:`.state`), the kernel-data files and the result
store make a rerun skip what is done: finished rounds are not redone, measured kernels
are not measured again.
"""

from __future__ import annotations

import logging
import os
import pathlib
import pickle
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable

from nn_farm.builder.kernel_build.profiling import ProfileOutcome, parse_latency, profile_records
from nn_farm.builder.kernel_build.state import BuildState, KernelState, RoundRecord, round_mark

__all__ = ["KernelPlan", "BuildResult", "plans_from_config", "run_rounds", "kernel_records",
           "DEFAULT_TARGET_ACC10", "TEST_FRACTION"]

log = logging.getLogger("nn_farm.builder.kernel_build")

# Stop a kernel's rounds once its +-10% accuracy on the held-out set reaches this:
# the target for conv and dwconv.
DEFAULT_TARGET_ACC10 = 0.95
# nn-Meter's 8:2 split.
TEST_FRACTION = 0.2
# Fitted regressors of each round: <workspace>/predictor_build/predictors/<kernel>_<mark>.pkl
PREDICTORS_DIR = "predictors"


@dataclass(frozen=True)
class KernelPlan:
    """One kernel type's budget (a KERNELS entry of predictorbuild_config.yaml)."""

    kernel_type: str
    init_sample_num: int
    finegrained_sample_num: int
    iteration: int
    error_threshold: float


@dataclass
class BuildResult:
    """What a build produced.

    Attributes:
        workspace: the workspace root.
        kernels: per kernel type, its :class:`KernelState` (rounds, held-out accuracy, kept round).
        fits: per kernel type, the kept round's fit (``KernelFit``).
        measured: kernels measured in this run (not found in the store).
        reused: kernel measurements taken from the store.
        failed: kernels that could not be built or measured.
        device_s: device time spent measuring in this run.
        device_s_total: device time of all kernels in the build, stored ones included.
        runtime, runtime_version: what measured.
        package: the predictor package directory (None until written).
        elapsed_s: wall time of this run.
    """

    workspace: pathlib.Path
    kernels: dict = field(default_factory=dict)
    fits: dict = field(default_factory=dict)
    measured: int = 0
    reused: int = 0
    failed: int = 0
    device_s: float = 0.0
    device_s_total: float = 0.0
    runtime: str = ""
    runtime_version: str = ""
    package: pathlib.Path | None = None
    elapsed_s: float = 0.0

    def summary(self) -> dict:
        """A JSON-ready summary: per-kernel held-out metrics and rounds, and the cost."""
        kernels = {}
        for name, ks in self.kernels.items():
            kept = ks.kept
            kernels[name] = {
                "kept_round": ks.kept_round,
                "rounds": [{"round": r["round"], "mark": r["mark"], "n_train": r["n_train"],
                            "n_test": r["n_test"], "kept": r["kept"], "learner": r["learner"],
                            **{k: r["metrics"].get(k) for k in ("rmse", "rmspe", "acc5", "acc10", "acc15")}}
                           for r in ks.rounds],
                "metrics": dict(kept["metrics"]) if kept else {},
                "stopped": ks.done,
            }
        return {"workspace": str(self.workspace), "package": str(self.package) if self.package else None,
                "kernels": kernels, "measured": self.measured, "reused": self.reused, "failed": self.failed,
                "device_s": round(self.device_s, 3), "device_s_total": round(self.device_s_total, 3),
                "runtime": self.runtime, "runtime_version": self.runtime_version,
                "elapsed_s": round(self.elapsed_s, 1)}


def plans_from_config(kernels_config: dict, only=None) -> list[KernelPlan]:
    """Plans from a predbuild ``KERNELS`` mapping, optionally only some kernel types.

    Raises:
        ConfigError: a kernel in ``only`` is not in the config.
    """
    from nn_farm.errors import ConfigError

    names = list(kernels_config)
    if only:
        missing = [k for k in only if k not in kernels_config]
        if missing:
            raise ConfigError(f"kernel(s) {', '.join(missing)} not in predictorbuild_config.yaml "
                              f"KERNELS (it has: {', '.join(names)})", key="KERNELS")
        names = [k for k in names if k in only]
    return [KernelPlan(k, int(kernels_config[k]["INIT_SAMPLE_NUM"]), int(kernels_config[k]["FINEGRAINED_SAMPLE_NUM"]),
                       int(kernels_config[k]["ITERATION"]), float(kernels_config[k]["ERROR_THRESHOLD"]))
            for k in names]


def _seed(*parts) -> int:
    """A stable seed from strings: the same kernel and round sample the same configs."""
    return zlib.crc32("/".join(map(str, parts)).encode())


def input_shapes(kernel_type: str, config: dict) -> list:
    """nn-Meter's ``shapes`` of a kernel model's inputs (NHWC without the batch)."""
    from nn_farm.predictor.kernel_specs import get_spec

    family = get_spec(kernel_type).family
    if family == "fc":
        return [[int(config["CIN"])]]
    if family == "concat":
        return [[int(config["HW"]), int(config["HW"]), int(config[f"CIN{i}"])]
                for i in range(1, 5) if int(config.get(f"CIN{i}", 0)) > 0]
    if family == "add":
        return [[int(config["HW"]), int(config["HW"]), int(config["CIN"])]] * 2
    return [[int(config["HW"]), int(config["HW"]), int(config["CIN"])]]


def kernel_records(workspace, kernel_type: str, configs: list[dict], *, fmt: str, implement: str,
                   taken=(), id_seed=None) -> dict:
    """nn-Meter's records ``{id: {"model", "shapes", "config"}}`` for sampled configs.

    ``model`` is where the converted kernel model is (or will be) written under
    ``<workspace>/predictor_build/kernels``; it is built when first profiled.
    """
    import random

    from nn_farm.builder.convert import model_file_name
    from nn_farm.builder.kernel_data import new_ids
    from nn_farm.builder.workspace import Workspace

    kernels_dir = Workspace(pathlib.Path(workspace).resolve()).kernels_dir
    rng = random.Random(id_seed) if id_seed is not None else None
    ids = new_ids(len(configs), taken=taken, rng=rng)
    return {kid: {"model": str(kernels_dir / model_file_name("kernel", kernel_type, config, implement, fmt)),
                  "shapes": input_shapes(kernel_type, config), "config": dict(config)}
            for kid, config in zip(ids, configs)}


def _config_key(kernel_type: str, config: dict) -> tuple:
    from nn_farm.predictor.kernel_specs import get_spec

    return tuple(int(config.get(k, 0)) for k in get_spec(kernel_type).config_keys)


def _existing_rounds(results_dir: pathlib.Path, kernel_type: str, rounds: int, mark: str) -> dict[int, dict]:
    """Records of rounds 1..rounds already sampled (their configs files exist)."""
    from nn_farm.builder.kernel_data import read_json

    out = {}
    for r in range(1, rounds + 1):
        path = results_dir / f"{kernel_type}_{round_mark(r, mark)}.json"
        if path.exists():
            out[r] = dict(read_json(path).get(kernel_type, {}))
    return out


def _sample_round(workspace, results_dir, plan: KernelPlan, ks: KernelState, round_no: int, mark: str,
                  fmt: str, implement: str) -> dict:
    """This round's records of one kernel: read back if sampled before, else sampled and written."""
    from nn_farm.builder.kernel_data import write_configs
    from nn_farm.builder.sampling import finegrained_configs, sample_kernel_configs

    earlier = _existing_rounds(results_dir, plan.kernel_type, round_no, mark)
    if round_no in earlier and earlier[round_no]:
        return earlier[round_no]
    seen = {_config_key(plan.kernel_type, e["config"]) for r, recs in earlier.items() if r < round_no
            for e in recs.values()}
    taken = {kid for recs in earlier.values() for kid in recs}
    if round_no == 1:
        configs = sample_kernel_configs(plan.kernel_type, plan.init_sample_num,
                                        seed=_seed(plan.kernel_type, mark, "prior"))
    else:
        configs = finegrained_configs(plan.kernel_type, ks.error_configs, plan.finegrained_sample_num,
                                      seed=_seed(plan.kernel_type, mark, round_no))
    configs = [c for c in configs if _config_key(plan.kernel_type, c) not in seen]
    records = kernel_records(workspace, plan.kernel_type, configs, fmt=fmt, implement=implement, taken=taken,
                             id_seed=_seed(plan.kernel_type, mark, round_no, "ids"))
    if records:
        write_configs(workspace, plan.kernel_type, round_mark(round_no, mark), records)
    return records


def _note_errors(results_dir: pathlib.Path, outcome: ProfileOutcome) -> None:
    if outcome.errors:
        with open(results_dir / "profile_error.log", "a") as fh:
            for (kernel_type, kid), message in sorted(outcome.errors.items()):
                fh.write(f"{kernel_type} {kid}: {message}\n")


def _load_fit(path: str):
    with open(path, "rb") as fh:
        return pickle.load(fh)


def _save_fit(fit, path: pathlib.Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(fit, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    return str(path)


def _train(datasets: dict, parallel: bool, progress: bool = True, **options) -> dict:
    """Fit every kernel's dataset (one Ray task per kernel type when ``parallel``).

    Each dataset carries its own train and test parts: the held-out set is fixed
    across rounds.
    """
    from nn_farm.builder.training import train_kernels

    return train_kernels(datasets, parallel=parallel, progress=progress, **options)


def _dataset(kernel_type, configs, latency, train_ids, test_ids, ids):
    pos = {kid: i for i, kid in enumerate(ids)}
    return {"train_configs": [configs[pos[i]] for i in train_ids],
            "train_latency_ms": [latency[pos[i]] for i in train_ids],
            "test_configs": [configs[pos[i]] for i in test_ids],
            "test_latency_ms": [latency[pos[i]] for i in test_ids]}


def run_rounds(workspace, backend, plans: list[KernelPlan], *, mark: str = "",
               target_acc10: float | None = DEFAULT_TARGET_ACC10, seed: int = 0, parallel_training: bool = True,
               progress: bool = True, echo: Callable[[str], None] = print) -> BuildResult:
    """Build every planned kernel's regressor in rounds on one open backend.

    Args:
        workspace: the workspace root.
        backend: an open :class:`~nn_farm.builder.backend.Backend`.
        plans: the kernels and their budgets.
        mark: appended to every data file's mark (nn-Meter's ``mark``).
        target_acc10: stop a kernel once its kept +-10% accuracy reaches this (None: never early).
        seed: seed of the held-out split and of the learners.
        parallel_training: fit kernels in parallel Ray tasks.
        progress: show the training bar.
        echo: where round summaries go.

    Returns:
        A :class:`BuildResult` (no package yet).
    """
    from nn_farm.builder.kernel_data import write_profiled
    from nn_farm.builder.training import split_ids
    from nn_farm.builder.workspace import Workspace

    started = time.perf_counter()
    ws = Workspace(pathlib.Path(workspace).resolve())
    for directory in (ws.kernels_dir, ws.results_dir):
        directory.mkdir(parents=True, exist_ok=True)
    state = BuildState(ws.results_dir)
    result = BuildResult(workspace=ws.root)
    pool: dict[str, dict] = {p.kernel_type: {} for p in plans}  # kernel -> id -> record with latency
    max_rounds = max((p.iteration for p in plans), default=0)
    for p in plans:
        ks = state.kernel(p.kernel_type)
        if ks.done.startswith("ITERATION") and ks.rounds_done < p.iteration:
            ks.done = ""  # ITERATION was raised since: go on from the last finished round

    for round_no in range(1, max_rounds + 1):
        active = [p for p in plans if round_no <= p.iteration and not state.kernel(p.kernel_type).done
                  and state.kernel(p.kernel_type).rounds_done < round_no]
        if not active:
            continue
        records, new_counts = {}, {}
        for p in active:
            ks = state.kernel(p.kernel_type)
            recs = records.setdefault(p.kernel_type, {})
            if not pool[p.kernel_type]:
                # A resumed build: earlier rounds' kernels come back from the store.
                for earlier in _existing_rounds(ws.results_dir, p.kernel_type, round_no - 1, mark).values():
                    recs.update(earlier)
            new = _sample_round(ws.root, ws.results_dir, p, ks, round_no, mark, backend.format, backend.implement)
            recs.update(new)
            new_counts[p.kernel_type] = len(new)
        total = sum(len(v) for v in records.values())
        echo(f"round {round_no}: {total} kernel models of {len(active)} kernel type(s) "
             f"({', '.join(p.kernel_type for p in active)}) -> farm")
        outcome = profile_records(backend, records, ws.kernels_dir)
        _note_errors(ws.results_dir, outcome)
        result.measured += outcome.measured
        result.reused += outcome.reused
        result.failed += len(outcome.errors)
        result.device_s += outcome.device_s
        result.device_s_total += outcome.device_s_total
        result.runtime = result.runtime or outcome.runtime
        result.runtime_version = result.runtime_version or outcome.runtime_version
        for kernel_type, recs in records.items():
            measured = {kid: rec for kid, rec in recs.items() if "latency" in rec}
            if measured:
                write_profiled(ws.root, kernel_type, {kid: {"latency": rec["latency"]}
                                                      for kid, rec in measured.items()})
            pool[kernel_type].update(measured)

        # Held-out sets (fixed in round 1) and the training pools.
        evaluate, explore, splits = {}, {}, {}
        for p in active:
            ks = state.kernel(p.kernel_type)
            recs = pool[p.kernel_type]
            ids = sorted(recs)
            if len(ids) < 5:
                ks.done = f"too few measured kernels ({len(ids)})"
                continue
            configs = [recs[i]["config"] for i in ids]
            latency = [parse_latency(recs[i]["latency"]) for i in ids]
            if not ks.test_ids:
                _, test = split_ids(ids, test_fraction=TEST_FRACTION, seed=seed)
                ks.test_ids = sorted(test)
            test_ids = [i for i in ks.test_ids if i in recs]
            train_ids = [i for i in ids if i not in set(ks.test_ids)]
            evaluate[p.kernel_type] = _dataset(p.kernel_type, configs, latency, train_ids, test_ids, ids)
            splits[p.kernel_type] = (ids, configs, latency, train_ids, test_ids)
            # Where to sample next: badly predicted configs of a split of the training
            # pool (nn-Meter's build_predictor_by_data), never of the held-out set. Found
            # in the last round too, so a rerun with a higher ITERATION can go on.
            inner_train, inner_test = split_ids(train_ids, test_fraction=TEST_FRACTION, seed=seed + round_no)
            explore[p.kernel_type] = _dataset(p.kernel_type, configs, latency, inner_train, inner_test, ids)
        # refit: the package ships each kept learner refitted on train + held-out data;
        # its held-out scores are those of the fit on the training part alone.
        fits = _train(evaluate, parallel_training, progress=progress, seed=seed, refit=True)
        probes = _train(explore, parallel_training, progress=progress, seed=seed)

        for p in active:
            ks = state.kernel(p.kernel_type)
            if p.kernel_type not in fits:
                continue
            fit = fits[p.kernel_type]
            error_configs = []
            if p.kernel_type in probes:
                probe = probes[p.kernel_type]
                error_configs = [dict(c) for c, e in zip(probe.test_configs, probe.test_errors)
                                 if abs(float(e)) > p.error_threshold]
            rm = round_mark(round_no, mark)
            _, _, _, train_ids, test_ids = splits[p.kernel_type]
            rec = RoundRecord(round=round_no, mark=rm, new_ids=new_counts.get(p.kernel_type, 0),
                              n_train=len(train_ids), n_test=len(test_ids),
                              metrics={k: float(v) for k, v in fit.metrics.items()},
                              learner=str(fit.learner), kept=False, error_configs=len(error_configs))
            if ks.consider(rec):
                # Saved before the state file says so: a crash in between redoes the round.
                rec.predictor_path = _save_fit(fit, ws.predictor_build / PREDICTORS_DIR / f"{p.kernel_type}_{rm}.pkl")
                ks.record(rec)
                result.fits[p.kernel_type] = fit
            ks.error_configs = error_configs
            kept_acc = ks.kept["metrics"]["acc10"]
            if round_no >= p.iteration:
                ks.done = f"ITERATION {p.iteration} reached"
            elif target_acc10 is not None and kept_acc >= target_acc10:
                ks.done = f"target +-10% accuracy {target_acc10:.0%} reached"
            elif not error_configs:
                ks.done = "no badly predicted configs to sample around"
        state.save()
        echo(_round_table(round_no, active, state))

    for p in plans:
        ks = state.kernel(p.kernel_type)
        result.kernels[p.kernel_type] = ks
        kept = ks.kept
        if p.kernel_type not in result.fits and kept and kept.get("predictor_path") \
                and os.path.exists(kept["predictor_path"]):
            result.fits[p.kernel_type] = _load_fit(kept["predictor_path"])
    state.save()
    result.elapsed_s = time.perf_counter() - started
    return result


def _round_table(round_no: int, active, state: BuildState) -> str:
    lines = [f"round {round_no} accuracy on each kernel's fixed held-out set:",
             f"  {'kernel':<16} {'train':>5} {'test':>4} {'rmspe':>7} {'+-10%':>6} {'kept':>4}  next"]
    for p in active:
        ks = state.kernel(p.kernel_type)
        rec = next((r for r in ks.rounds if r["round"] == round_no), None)
        if rec is None:
            lines.append(f"  {p.kernel_type:<16} {ks.done}")
            continue
        m = rec["metrics"]
        kept = "yes" if rec["kept"] else f"no (round {ks.kept_round} stays)"
        nxt = ks.done or f"{rec['error_configs']} configs to refine"
        lines.append(f"  {p.kernel_type:<16} {rec['n_train']:>5} {rec['n_test']:>4} {m['rmspe']:>7.3f} "
                     f"{m['acc10']:>6.1%} {kept:>4}  {nxt}")
    return "\n".join(lines)
