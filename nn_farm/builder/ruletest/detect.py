"""Decide each test case from its measurements, with the measurement noise in view.

Basic pair (nn-Meter's rule): op1 and op2 are fused when

    margin = T1 + T2 - T12 - alpha * min(T1, T2) > 0

MON and registered test cases: the case whose summed latency is closest to the
block's wins; the declared ``true_case`` wins ties (nn-Meter's test).

Noise: every latency T comes with an uncertainty u(T) built from its measurement
(see :func:`estimate`): the trimmed mean of the kept runs; its standard error,
the largest of the i.i.d. one (from the p10-p90 width, robust to stalled runs),
the batch-means one (the spread of the means of ten consecutive stretches of
runs, which shows a slow phase covering part of the measurement) and half the
median's gap above the minimum when that gap passes 25% (a whole session in a
slow mode: memory-bound microsecond ops here ran some sessions at twice the
floor that the next session found again); plus a floor for drift between
sessions that no spread can show: 2% of T when the speed gate kept only fast
runs, the measured slow-down (at least 10%) when the gate gave up ("slow"), 8%
when the runs were not gated. Those floors are what
benchmarks/measure_stability.py shows for two passes over the same models.

A verdict's confidence is P(the sign of the margin is right) with the margin's
error taken as Student-t with 3 degrees of freedom, scaled by u(margin): most
sessions sit within the floor, but one in a few dozen on a shared VM lands
10-20% off (CI saw a 20 us dwconv block 20% slow in an otherwise calm run, and a
normal model called that wrong verdict 99.85% sure). A verdict below the
asked-for confidence is *uncertain*: the runner re-measures its models with
more runs and pools the sessions (inverse-variance weights; sessions that
disagree beyond their uncertainties widen the pooled one by Birge's ratio, and
three or more such take their median instead of the mean, so one bad session
cannot carry the verdict).

A verdict below the required confidence does not take the measurement's lean:
the margin may be inside the noise, so its sign a coin toss between runs, while
either answer prices the same within that noise. It keeps a prior instead, the
same for every run. One leaning against its prior is measured again in every
round, whatever the rounds show on the way, and is judged once, on all of its
sessions, against a lower bar (CONFIDENCE_AFTER_ROUNDS). A pair whose margin is
a steady few percent of a microsecond block (bn_relu: about -1 us of 14.5 us,
the same sign in every session, each session's margin off by 0.45 us) seldom
reaches 99% in a few sessions; when rounds stopped at the first crossing, it
came out one way or the other by when it crossed (2 of 4 runs each). Pooled
over four sessions it cleared 95% in both runs of benchmarks/ruletest_cost.py.

The prior is nn-farm's default rule for the pair when it has one (BN and ReLU
fold into the conv before them on every runtime we know), else "not fused"
(nn-Meter's null: a fusion has to show its saving); a registered test case keeps
its ``true_case``. ``prior`` says so, and ``measured`` keeps the lean.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Any, Collection, Iterable, Mapping, Sequence

from nn_farm.builder.ruletest.cases import BASIC, TestCase

__all__ = [
    "CONFIDENCE_REQUIRED",
    "CONFIDENCE_AFTER_ROUNDS",
    "DRIFT_REL",
    "SLOW_REL",
    "UNGATED_REL",
    "Estimate",
    "Verdict",
    "estimate",
    "latency_string",
    "basic_verdict",
    "case_verdict",
    "analyze",
    "prior_obey",
]

#: Session-to-session drift floors, relative to the latency (see the module doc).
DRIFT_REL = 0.02
SLOW_REL = 0.10
UNGATED_REL = 0.08
_P10_P90_SIGMAS = 2.5631  # width of the 10-90% interval of a normal, in sigmas
#: Degrees of freedom of the margin's error model (heavy tails: see the module doc).
TAIL_DOF = 3
#: The confidence a verdict needs to be left alone (99% is |margin| >= 4.54 u).
CONFIDENCE_REQUIRED = 0.99
#: The confidence a verdict leaning against its prior needs after every re-measurement
#: round (95% is |margin| >= 2.35 u, over the pooled sessions).
CONFIDENCE_AFTER_ROUNDS = 0.95
_BATCHES = 10
#: A median this far above the session's minimum marks a slow-mode session (see _mode_gap).
MODE_GAP = 0.25


@dataclass(frozen=True)
class Estimate:
    """One model's latency from one or more measurements.

    Attributes:
        mean_ms: the (pooled) trimmed mean of kept runs (the policy's trim_fraction).
        std_ms: the run-to-run std (what nn-Meter's "avg +- std" shows).
        u_ms: the uncertainty of ``mean_ms`` (standard error + drift floor).
        runs: kept runs over all measurements.
        rounds: measurements pooled.
        slow: some measurement was taken while the host stayed slow.
    """

    mean_ms: float
    std_ms: float
    u_ms: float
    runs: int
    rounds: int
    slow: bool = False


def _one(m) -> Estimate:
    n = max(int(m.kept_runs or m.runs or 1), 1)
    std = m.std_ms if math.isfinite(m.std_ms) else 0.0
    # The trimmed mean and the p10-p90 width: a few stalled runs (an interrupt, a
    # page fault) move a microsecond model's mean and std by more than the
    # fusion being tested.
    center = m.trimmed_mean_ms if math.isfinite(m.trimmed_mean_ms) and m.trimmed_mean_ms > 0 else m.mean_ms
    spread = std
    if math.isfinite(m.p10_ms) and math.isfinite(m.p90_ms):
        spread = (m.p90_ms - m.p10_ms) / _P10_P90_SIGMAS
    sem = max(spread / math.sqrt(n), _batch_sem(m), _mode_gap(m))
    if m.speed_state == "slow":
        floor = max(SLOW_REL, float(m.speed_factor) - 1.0)
    elif m.speed_state == "ungated":
        floor = UNGATED_REL
    else:
        floor = DRIFT_REL
    u = math.hypot(sem, floor * center)
    return Estimate(center, std, u, n, 1, m.speed_state == "slow")


def _mode_gap(m) -> float:
    """Half the gap between median and minimum when a session ran in a slow mode.

    A memory-bound microsecond op (a 400 KB reshape, a concat) can run a whole
    session at up to twice its floor and the next one at the floor, on the same
    core with the same bytes; the minimum stays put. A median more than
    MODE_GAP above the session's own minimum is such a session: its centre is
    uncertain by the gap. (0.0 otherwise.)
    """
    if not (math.isfinite(m.min_ms) and m.min_ms > 0 and math.isfinite(m.median_ms)):
        return 0.0
    if m.median_ms <= (1.0 + MODE_GAP) * m.min_ms:
        return 0.0
    return (m.median_ms - m.min_ms) / 2.0


def _batch_sem(m) -> float:
    """The standard error from the means of consecutive stretches of kept runs.

    Runs are not independent when the host drifts during a measurement: a slow
    phase over a third of the runs moves the mean far more than the i.i.d.
    standard error admits. Stretch means see it (0.0 with too few runs).
    """
    runs = [x for x, keep in zip(m.samples_ms, m.kept) if keep] if m.kept else list(m.samples_ms)
    size = len(runs) // _BATCHES
    if size < 2:
        return 0.0
    means = []
    for i in range(_BATCHES):
        part = sorted(runs[i * size:(i + 1) * size])
        cut = size // 10  # 10% off each end, as the policy's default trimmed mean, for stalled runs
        means.append(statistics.fmean(part[cut:size - cut]))
    return statistics.stdev(means) / math.sqrt(_BATCHES)


def estimate(measurements: Sequence) -> Estimate:
    """Pool measurements of one model (farm :class:`~nn_farm.farm.measurement.Measurement` s).

    Raises:
        ValueError: no measurement.
    """
    parts = [_one(m) for m in measurements]
    if not parts:
        raise ValueError("no measurement to estimate from")
    if len(parts) == 1:
        return parts[0]
    weights = [1.0 / max(p.u_ms, 1e-12) ** 2 for p in parts]
    total = sum(weights)
    mean = sum(w * p.mean_ms for w, p in zip(weights, parts)) / total
    u = 1.0 / math.sqrt(total)
    chi2 = sum(w * (p.mean_ms - mean) ** 2 for w, p in zip(weights, parts))
    birge = math.sqrt(chi2 / (len(parts) - 1))
    if birge > 1.0 and len(parts) >= 3:
        mean = statistics.median(p.mean_ms for p in parts)
    runs = sum(p.runs for p in parts)
    spread = math.sqrt(sum(p.runs * p.std_ms ** 2 for p in parts) / runs)
    return Estimate(mean, spread, u * max(1.0, birge), runs, len(parts), any(p.slow for p in parts))


def latency_string(avg: float, std: float) -> str:
    """nn-Meter's ``"avg +- std"``."""
    return f"{avg} +- {std}"


def _confidence(z: float) -> float:
    """P(a margin |margin| = z * u away from 0 has the right sign), heavy-tailed."""
    from scipy.stats import t

    return float(t.cdf(z, TAIL_DOF))


@dataclass(frozen=True)
class Verdict:
    """What one test case says.

    Attributes:
        obey: basic pairs: fused or not; others: the winning case name; None
            when it could not be decided (a model failed).
        confidence: P(the measurement's verdict is right) under the noise model,
            0.5..1 (Student-t, see the module doc); with ``prior`` it is that of
            ``measured``.
        z: |margin| / u(margin) (basic), or the gap between the best and the
            second-best case in units of its uncertainty.
        margin_ms, uncertainty_ms: the margin (basic: the rule's left side minus
            the right; others: the gap) and its uncertainty.
        latency: nn-Meter's latency strings (``block``, the models, ``ops``/cases).
        note: why a case was skipped or undecided.
        prior: ``obey`` is the prior's, the measurement staying below the
            required confidence; ``measured`` is what the measurement leaned to.
    """

    obey: Any
    confidence: float
    z: float
    margin_ms: float = float("nan")
    uncertainty_ms: float = float("nan")
    latency: dict | None = None
    note: str = ""
    prior: bool = False
    measured: Any = None


def basic_verdict(case: TestCase, est: Mapping[str, Estimate], alpha: float) -> Verdict:
    """nn-Meter's BasicFusion rule with the margin's uncertainty."""
    k1, k2 = case.cases["ops"]
    t1, t2, tb = est[k1], est[k2], est["block"]
    # margin = (T1 + T2 - T12) - alpha * min(T1, T2): the min's uncertainty is its own
    # term's, so it enters once with weight (1 - alpha).
    w1, w2 = (1.0 - alpha, 1.0) if t1.mean_ms <= t2.mean_ms else (1.0, 1.0 - alpha)
    margin = t1.mean_ms + t2.mean_ms - tb.mean_ms - alpha * min(t1.mean_ms, t2.mean_ms)
    u = math.sqrt((w1 * t1.u_ms) ** 2 + (w2 * t2.u_ms) ** 2 + tb.u_ms ** 2)
    z = abs(margin) / u if u > 0 else math.inf
    ops_avg = t1.mean_ms + t2.mean_ms
    latency = {
        "block": latency_string(tb.mean_ms, tb.std_ms),
        k1: latency_string(t1.mean_ms, t1.std_ms),
        k2: latency_string(t2.mean_ms, t2.std_ms),
        "ops": latency_string(ops_avg, math.hypot(t1.std_ms, t2.std_ms)),
    }
    return Verdict(bool(margin > 0), _confidence(z), z, margin, u, latency)


def case_verdict(case: TestCase, est: Mapping[str, Estimate]) -> Verdict:
    """MON / registered test cases: the case whose sum is closest to the block."""
    tb = est["block"]
    latency = {"block": latency_string(tb.mean_ms, tb.std_ms)}
    gaps = {}
    for name, keys in case.cases.items():
        avg = sum(est[k].mean_ms for k in keys)
        std = math.sqrt(sum(est[k].std_ms ** 2 for k in keys))
        u = math.sqrt(sum(est[k].u_ms ** 2 for k in keys))
        for k in keys:
            latency.setdefault(k, latency_string(est[k].mean_ms, est[k].std_ms))
        latency[name] = latency_string(avg, std)
        gaps[name] = (abs(avg - tb.mean_ms), u)
    # nn-Meter keeps the true case unless another is strictly closer.
    order = sorted(gaps, key=lambda n: (gaps[n][0], n != case.true_case))
    best = order[0]
    if len(order) == 1:
        return Verdict(best, 1.0, math.inf, latency=latency)
    second = order[1]
    gap = gaps[second][0] - gaps[best][0]
    u = math.sqrt(gaps[best][1] ** 2 + gaps[second][1] ** 2 + tb.u_ms ** 2)
    z = gap / u if u > 0 else math.inf
    return Verdict(best, _confidence(z), z, gap, u, latency)


def prior_obey(case: TestCase) -> Any:
    """What a test case says when its measurement cannot tell (see the module doc)."""
    if case.kind == BASIC:
        from nn_farm.predictor.kernels.rules import DEFAULT_RULES

        return bool(DEFAULT_RULES.get(case.name, {}).get("obey", False))
    return case.true_case


def analyze(testcases: Iterable[TestCase], estimates: Mapping[str, Mapping[str, Estimate]],
            alpha: float, *, errors: Mapping[str, str] | None = None,
            required: float | None = None, all_rounds: Collection[str] = ()) -> dict[str, Verdict]:
    """Verdicts of every test case, in the given (dependency) order.

    A test case whose dependency came out other than expected is not tested
    (``obey`` False, as nn-Meter does); its confidence is the dependency's.

    Args:
        testcases: in dependency order.
        estimates: test case -> model key -> :class:`Estimate`.
        alpha: EMP_ALPHA.
        errors: test case -> why a model of it has no measurement.
        required: the confidence a verdict needs to stand; one below it keeps
            :func:`prior_obey` (None: every verdict takes the measurement's sign).
        all_rounds: test cases measured in every re-measurement round: their bar
            is :data:`CONFIDENCE_AFTER_ROUNDS` (when ``required`` is set).

    Returns:
        test case name -> :class:`Verdict`.
    """
    errors = errors or {}
    verdicts: dict[str, Verdict] = {}
    for case in testcases:
        unmet = [(d, want) for d, want in case.deps.items()
                 if d in verdicts and verdicts[d].obey != want]
        undecided = [d for d in case.deps if d in verdicts and verdicts[d].obey is None]
        if case.name in errors:
            verdicts[case.name] = Verdict(None, 0.0, 0.0, note=errors[case.name])
        elif undecided:
            verdicts[case.name] = Verdict(None, 0.0, 0.0, note=f"dependency {undecided[0]} undecided")
        elif unmet:
            dep, want = unmet[0]
            verdicts[case.name] = Verdict(False, verdicts[dep].confidence, verdicts[dep].z,
                                          note=f"dependency {dep} is not {want!r}")
        else:
            v = (basic_verdict(case, estimates[case.name], alpha) if case.kind == BASIC
                 else case_verdict(case, estimates[case.name]))
            bar = None if required is None else (
                min(required, CONFIDENCE_AFTER_ROUNDS) if case.name in all_rounds else required)
            if bar is not None and v.confidence < bar:
                v = dataclasses.replace(v, obey=prior_obey(case), prior=True, measured=v.obey)
            verdicts[case.name] = v
    return verdicts
