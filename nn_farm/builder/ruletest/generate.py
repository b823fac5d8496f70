"""Test cases -> farm jobs whose generator builds and converts the model as a Ray task.

    TestCase --testcase_jobs--> Job(generate=partial(build_and_convert, ...))
        --Farm.profile--> [Ray task: Keras/torch model -> .tflite/.onnx] --> device

Every model file's path is known before anything is built (the file name hashes
the description, see :func:`nn_farm.builder.convert.model_file_name`), so
``origin_testcases.json`` is written up front and a rerun reuses the files.

Job names carry that hash too: the farm recognises a finished generator job by
its name, so a changed config (another HW) must give new names, not old results.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from nn_farm.actors.jobs import Job
from nn_farm.builder import convert
from nn_farm.builder.ruletest.cases import BASIC, CUSTOM, MON, TestCase, model_config
from nn_farm.errors import BuilderError, ConfigError

__all__ = ["model_path", "job_name", "generator", "testcase_jobs", "build_custom_model"]


def _generator_name(case: TestCase, key: str) -> str:
    name = case.model_name(key)
    return f"{name}#{case.source}" if case.kind == CUSTOM and case.source else name


def model_path(case: TestCase, key: str, config: Mapping[str, Any], implement: str, fmt: str,
               out_dir: str | os.PathLike) -> str:
    """Where model ``key`` of ``case`` is (or will be) written."""
    name = convert.model_file_name("testcase", _generator_name(case, key), model_config(config),
                                   implement, fmt)
    return str(Path(out_dir) / name)


def job_name(case: TestCase, key: str, path: str) -> str:
    """``BF_conv_relu/block@<file hash>``: unique per model description."""
    digest = Path(path).stem.rsplit("_", 1)[-1]
    return f"{case.model_name(key)}@{digest}"


def generator(case: TestCase, key: str, config: Mapping[str, Any], implement: str, fmt: str,
              out_dir: str | os.PathLike):
    """A picklable ``() -> path`` that builds and converts one model of ``case``."""
    plain = model_config(config)
    if case.kind in (BASIC, MON):
        return functools.partial(convert.build_and_convert, "testcase", case.model_name(key), plain,
                                 implement, fmt, str(out_dir))
    return functools.partial(build_custom_model, case.name, key, plain, implement, fmt, str(out_dir),
                             case.source)


def testcase_jobs(testcases: Iterable[TestCase], config: Mapping[str, Any], implement: str, fmt: str,
                  out_dir: str | os.PathLike, only: Iterable[str] | None = None) -> list[Job]:
    """One generator job per model of every test case.

    Args:
        testcases: from :func:`~nn_farm.builder.ruletest.cases.load_testcases`.
        config: the rule-test config.
        implement, fmt: framework and file format (``tensorflow``/``tflite``, ...).
        out_dir: where the model files go.
        only: test case names to include (default all).

    Returns:
        Jobs named by :func:`job_name`, ``group`` the test case's name and
        ``meta`` ``{"testcase", "model", "path", "shapes"}``.
    """
    wanted = set(only) if only is not None else None
    jobs = []
    for case in testcases:
        if wanted is not None and case.name not in wanted:
            continue
        for key, shapes in case.models.items():
            path = model_path(case, key, config, implement, fmt, out_dir)
            jobs.append(Job(name=job_name(case, key, path),
                            generate=generator(case, key, config, implement, fmt, out_dir),
                            format=fmt, group=case.name,
                            meta={"testcase": case.name, "model": key, "path": path, "shapes": shapes}))
    return jobs


def build_custom_model(name: str, key: str, config: Mapping[str, Any], implement: str, fmt: str,
                       out_dir: str | os.PathLike, source: str = "") -> str:
    """Build model ``key`` of registered test case ``name`` and convert it (a Ray task body).

    ``block`` and keys with a ``_model_<key>`` method come from the class; any
    other key is that operator alone on the test case's input shape.

    Returns:
        The model file's path.

    Raises:
        ConfigError: the test case is not registered or no longer imports.
        BuilderError: building or converting failed (names the test case and model).
    """
    from nn_farm.builder.models import spec as spec_mod
    from nn_farm.builder.models import testcases as tc
    from nn_farm.builder.models.registry import normalize_implement
    from nn_farm.builder.ruletest.cases import load_custom_class

    implement = normalize_implement(implement)
    if convert.FORMATS.get(fmt) != implement:
        raise ConfigError(f"format {fmt!r} is not made from {implement} models", key="IMPLEMENT")
    generator_name = f"{name}/{key}#{source}" if source else f"{name}/{key}"
    out = Path(out_dir) / convert.model_file_name("testcase", generator_name, config, implement, fmt)
    if out.exists():
        return str(out)
    convert._seed(implement, 0)
    instance = load_custom_class(name)(dict(config))
    method = getattr(instance, f"_model_{key}", None)
    try:
        if method is not None:
            made = method()
        else:
            made = tc.operator_spec(key, list(instance.input_shape), config, implement,
                                    f"{name}_{key}")
        shapes = None
        if isinstance(made, tuple):
            made, shapes = made
        if isinstance(made, spec_mod.ModelSpec):
            shapes = [list(s) for s in made.input_shapes]
            made = spec_mod.build_model(made, implement)
    except (BuilderError, ConfigError):
        raise
    except Exception as exc:
        raise BuilderError(f"test case {name!r}: building model {key!r} failed: "
                           f"{type(exc).__name__}: {exc}") from exc
    if fmt == "tflite":
        return convert.to_tflite(made, out)
    if fmt == "onnx":
        return convert.to_onnx(made, shapes, out)
    onnx_path = convert.to_onnx(made, shapes, out.with_suffix(".onnx"))
    try:
        return convert.to_openvino_ir(onnx_path, out)
    finally:
        os.unlink(onnx_path)
