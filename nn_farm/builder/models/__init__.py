"""Model generators of the builder: operators, fusion test cases and kernel models,
in Keras and torch, from nn-Meter's configs (NHWC shapes without batch).

    operator names ──► ModelSpec (framework-free DAG) ──► Keras model / torch module
    kernel config  ──►                                     ──► convert.py: .tflite / .onnx

Importing this package imports neither tensorflow nor torch; building a model
imports the one framework it needs.
"""

from nn_farm.builder.models.base import BaseOperator, from_torch_shape, to_torch_shape
from nn_farm.builder.models.kernels import (
    KERNEL_RECIPES,
    KERNEL_TYPES,
    build_kernel_model,
    kernel_input_shapes,
    kernel_spec,
    register_kernel,
    unregister_kernel,
)
from nn_farm.builder.models.registry import (
    BUILTIN_OPERATORS,
    IMPLEMENTS,
    get_operator,
    list_operators,
    normalize_implement,
    register_operator,
    unregister_operator,
)
from nn_farm.builder.models.spec import ModelSpec, Node, build_model, resolve
from nn_farm.builder.models.testcases import (
    MON_CASES,
    MON_DEPS,
    MON_TRUE_CASE,
    basic_fusion_specs,
    build_mon_models,
    build_testcase_models,
    mon_specs,
    operator_spec,
    testcase_input_shape,
)

__all__ = [
    "BaseOperator",
    "BUILTIN_OPERATORS",
    "IMPLEMENTS",
    "KERNEL_RECIPES",
    "KERNEL_TYPES",
    "MON_CASES",
    "MON_DEPS",
    "MON_TRUE_CASE",
    "ModelSpec",
    "Node",
    "basic_fusion_specs",
    "build_kernel_model",
    "build_model",
    "build_mon_models",
    "build_testcase_models",
    "from_torch_shape",
    "get_operator",
    "kernel_input_shapes",
    "kernel_spec",
    "list_operators",
    "mon_specs",
    "normalize_implement",
    "operator_spec",
    "register_kernel",
    "register_operator",
    "resolve",
    "testcase_input_shape",
    "to_torch_shape",
    "unregister_kernel",
    "unregister_operator",
]
