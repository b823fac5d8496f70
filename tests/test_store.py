"""The result store: keyed, durable per result, rerun-aware, exportable; calibration on top."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap

from nn_farm.actors.calibration import Calibrator
from nn_farm.actors.config import CalibrationConfig
from nn_farm.actors.jobs import ErrorKind, JobResult, policy_hash
from nn_farm.actors.store import ResultStore
from nn_farm.farm.measurement import Measurement
from nn_farm.farm.policy import MeasurePolicy

CLASS = "pixel4-cpu"


def _measurement(digest: str, samples=(1.0, 1.2, 1.1), version="2.3.0", device="d0") -> Measurement:
    return Measurement(model_digest=digest, device_id=device, device_class=CLASS, runtime="litert",
                       runtime_version=version, samples_ms=list(samples)).compute_stats()


def _result(name: str, digest: str, **kw) -> JobResult:
    return JobResult(name, CLASS, digest, measurement=_measurement(digest, **kw), attempts=1, device_id="d0",
                     group="conv-bn-relu")


def test_policy_hash_is_stable_and_tells_policies_apart():
    a, b = MeasurePolicy(), MeasurePolicy(min_runs=50)
    assert policy_hash(a) == policy_hash(MeasurePolicy()) and len(policy_hash(a)) == 16
    assert policy_hash(a) != policy_hash(b)


def test_results_are_keyed_and_never_overwritten(tmp_path):
    ph = policy_hash(MeasurePolicy())
    with ResultStore(tmp_path / "r.db") as store:
        assert store.add_result(_result("k1", "aa" * 32), ph)
        # The same key again (a retried in-flight job): the first result stays.
        assert not store.add_result(_result("k1-again", "aa" * 32, samples=(9.0, 9.0)), ph)
        assert store.is_done(CLASS, "aa" * 32, ph, ["2.3.0"])
        assert not store.is_done(CLASS, "aa" * 32, ph, ["2.4.0"])      # another runtime version
        assert not store.is_done(CLASS, "aa" * 32, "0" * 16, ["2.3.0"])  # another policy
        assert not store.is_done("other-class", "aa" * 32, ph, ["2.3.0"])
        m = store.measurement(CLASS, "aa" * 32, ph)
        assert m.samples_ms == [1.0, 1.2, 1.1]  # raw samples kept
        assert store.count() == 1


def test_wal_mode_and_every_result_survives_sigkill(tmp_path):
    path = tmp_path / "r.db"
    script = textwrap.dedent(f"""
        import os, signal
        from nn_farm.actors.jobs import JobResult
        from nn_farm.actors.store import ResultStore
        from nn_farm.farm.measurement import Measurement
        store = ResultStore({str(path)!r})
        for i in range(25):
            m = Measurement(model_digest=f"{{i:064x}}", device_id="d0", device_class="c", runtime="r",
                            runtime_version="1", samples_ms=[1.0, 2.0]).compute_stats()
            store.add_result(JobResult(f"job{{i}}", "c", f"{{i:064x}}", measurement=m), "p" * 16)
        print("stored", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL and "stored" in proc.stdout
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 25
    db.close()


def test_failures_are_recorded_and_only_model_errors_are_final_for_reruns(tmp_path):
    ph = "p" * 16
    with ResultStore(tmp_path / "r.db") as store:
        bad = JobResult("bad", CLASS, "bb" * 32, error_kind=ErrorKind.INVALID_MODEL,
                        error="InvalidModel: truncated protobuf", attempts=1, device_id="d0")
        store.add_failure(bad, ph, final=True)
        lost = JobResult("lost", CLASS, "cc" * 32, error_kind=ErrorKind.NO_DEVICE, error="no device", attempts=3)
        store.add_failure(lost, ph, final=True)
        assert store.finally_failed(CLASS, "bb" * 32, ph) == (int(ErrorKind.INVALID_MODEL),
                                                              "InvalidModel: truncated protobuf")
        assert store.finally_failed(CLASS, "cc" * 32, ph) is None  # a device problem: rerun retries it
        rows = store.rows("failures")
        assert [(r["job_name"], r["error_name"], r["final"]) for r in rows] == [
            ("bad", "INVALID_MODEL", 1), ("lost", "NO_DEVICE", 1)]


def test_export_is_nnmeter_profiled_json(tmp_path):
    ph = "p" * 16
    with ResultStore(tmp_path / "r.db") as store:
        store.add_result(_result("conv-bn-relu_0", "aa" * 32, samples=(1.0, 3.0)), ph,
                         meta={"config": {"HW": 28, "CIN": 16}})
        store.add_result(_result("conv-bn-relu_1", "dd" * 32, samples=(2.0, 2.0)), ph)
        out = store.export_nnmeter(tmp_path / "profiled.json")
    assert json.loads((tmp_path / "profiled.json").read_text()) == out
    first = out["conv-bn-relu"]["conv-bn-relu_0"]
    mean, std = (float(x) for x in first["latency"].split(" +- "))
    assert mean == 2.0 and abs(std - 2 ** 0.5) < 1e-9
    assert first["config"] == {"HW": 28, "CIN": 16}
    assert out["conv-bn-relu"]["conv-bn-relu_1"]["latency"] == "2.0 +- 0.0"


def test_generator_job_names_map_to_digests(tmp_path):
    with ResultStore(tmp_path / "r.db") as store:
        assert store.digest_for_name("k", CLASS, "p" * 16) is None
        store.remember_name("k", CLASS, "p" * 16, "ee" * 32)
        assert store.digest_for_name("k", CLASS, "p" * 16) == "ee" * 32


def test_calibration_drift_flags_the_device_and_its_recent_results(tmp_path):
    ph = "p" * 16
    with ResultStore(tmp_path / "r.db") as store:
        cal = Calibrator(CalibrationConfig(every_jobs=2, drift_threshold=0.1), store)
        assert cal.due("d0")
        cal.record("d0", CLASS, "2.3.0", 1.00)
        cal.record("d1", CLASS, "2.3.0", 1.20)
        assert not cal.due("d0")
        store.add_result(_result("a", "aa" * 32), ph)
        cal.count_job("d0")
        cal.count_job("d0")
        assert cal.due("d0")
        state = cal.record("d0", CLASS, "2.3.0", 1.25)  # 25% slower than at start
        assert state.flagged and abs(state.drift - 0.25) < 1e-9
        assert "drift" in store.rows()[0]["flag"]
        assert cal.flag_for("d0") and not cal.flag_for("d1")
        assert abs(cal.speed_factor("d1") - 1.2 / 1.1) < 1e-9  # vs the class median baseline
        cal.record("d0", CLASS, "2.3.0", 1.02)  # back to normal
        assert not cal.devices["d0"].flagged and cal.flag_for("d0") is None
        rows = store.rows("calibrations")
        assert [r["flagged"] for r in rows] == [0, 0, 1, 0]
        stats = {s["device_id"]: s for s in store.device_stats()}
        assert stats["d0"]["results"] == 1


def test_a_device_whose_reference_fails_is_not_calibrated_again(tmp_path):
    cal = Calibrator(CalibrationConfig())
    cal.failed("d0", CLASS, "InvalidModel: no such op")
    assert not cal.due("d0") and cal.due("d1")
