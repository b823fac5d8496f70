"""LiteRT (TFLite) on the host CPU, through ``ai_edge_litert`` (never tensorflow).

Options: ``threads`` (default 1) and ``xnnpack`` (default True; False uses the
built-in kernels without any default delegate).
"""

from __future__ import annotations

from nn_farm.errors import DeviceUnavailable
from nn_farm.farm.runtimes.base import Runtime, RuntimeStatus, Session, validate
from nn_farm.farm.tensors import TensorSpec, random_array, resolve_inputs


class LiteRTSession(Session):
    def __init__(self, interpreter, inputs: list[TensorSpec], identity: dict) -> None:
        super().__init__(inputs, identity)
        self._interpreter = interpreter

    def run(self) -> None:
        self._interpreter.invoke()

    def close(self) -> None:
        self._interpreter = None


class LiteRTRuntime(Runtime):
    name = "litert"
    formats = ("tflite",)
    defaults = {"threads": 1, "xnnpack": True}

    def status(self, options: dict | None = None) -> RuntimeStatus:
        try:
            from ai_edge_litert import interpreter  # noqa: F401
            from importlib.metadata import version
        except ImportError as exc:
            return RuntimeStatus(False, "", f"ai-edge-litert is not installed: {exc}")
        return RuntimeStatus(True, version("ai-edge-litert"))

    def load(self, path, inputs=None, options=None) -> Session:
        opts = self.options(options)
        path = self.check_file(path)
        try:
            from ai_edge_litert import interpreter as lite
        except ImportError as exc:
            raise DeviceUnavailable(f"runtime 'litert' is not installed: {exc}") from exc
        resolver = (lite.OpResolverType.AUTO if opts["xnnpack"]
                    else lite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        try:
            interp = lite.Interpreter(model_path=path, num_threads=int(opts["threads"]),
                                      experimental_op_resolver_type=resolver)
            details = interp.get_input_details()
            model_inputs = [(d["name"], [int(x) for x in d["shape_signature"]], d["dtype"].__name__)
                            for d in details]
        except Exception as exc:
            raise self.invalid(path, exc) from exc
        specs = resolve_inputs(model_inputs, inputs, path)
        try:
            for d, spec in zip(details, specs):
                if tuple(d["shape"]) != spec.shape:
                    interp.resize_tensor_input(d["index"], list(spec.shape), strict=False)
            interp.allocate_tensors()
            for d, spec in zip(details, specs):
                interp.set_tensor(d["index"], random_array(spec))
        except Exception as exc:
            raise self.invalid(path, exc) from exc
        identity = {"threads": int(opts["threads"]), "delegate": "xnnpack" if opts["xnnpack"] else "none"}
        return validate(self, path, LiteRTSession(interp, specs, identity))
