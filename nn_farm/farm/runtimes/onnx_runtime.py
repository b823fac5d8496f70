"""ONNX Runtime on the host CPU.

Options: ``intra_op_threads`` and ``inter_op_threads`` (default 1 each); nodes
run sequentially, with every graph optimisation on.
"""

from __future__ import annotations

from nn_farm.errors import DeviceUnavailable
from nn_farm.farm.runtimes.base import Runtime, RuntimeStatus, Session, validate
from nn_farm.farm.tensors import TensorSpec, random_array, resolve_inputs

# ONNX Runtime's type strings -> numpy dtype names.
_DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
           "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
           "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


class OnnxRuntimeSession(Session):
    def __init__(self, session, feeds: dict, inputs: list[TensorSpec], identity: dict) -> None:
        super().__init__(inputs, identity)
        self._session, self._feeds = session, feeds

    def run(self) -> None:
        self._session.run(None, self._feeds)

    def close(self) -> None:
        self._session = None


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    formats = ("onnx",)
    defaults = {"intra_op_threads": 1, "inter_op_threads": 1}

    def status(self, options: dict | None = None) -> RuntimeStatus:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            return RuntimeStatus(False, "", f"onnxruntime is not installed: {exc}")
        return RuntimeStatus(True, ort.__version__)

    def load(self, path, inputs=None, options=None) -> Session:
        opts = self.options(options)
        path = self.check_file(path)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise DeviceUnavailable(f"runtime 'onnxruntime' is not installed: {exc}") from exc
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(opts["intra_op_threads"])
        so.inter_op_num_threads = int(opts["inter_op_threads"])
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        try:
            session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            model_inputs = [(i.name, list(i.shape), _DTYPES.get(i.type, i.type)) for i in session.get_inputs()]
        except Exception as exc:
            raise self.invalid(path, exc) from exc
        specs = resolve_inputs(model_inputs, inputs, path)
        feeds = {s.name: random_array(s) for s in specs}
        identity = {"threads": int(opts["intra_op_threads"]), "delegate": "cpu",
                    "inter_op_threads": int(opts["inter_op_threads"])}
        return validate(self, path, OnnxRuntimeSession(session, feeds, specs, identity))
