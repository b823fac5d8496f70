"""torch on the host CPU: TorchScript (.pt) and torch.export programs (.pt2).

Option ``threads`` (default 1; sets torch's intra-op threads for this process).
Runs under ``torch.inference_mode()``. A TorchScript file carries no input
shapes; nn-farm's own files store them in an extra file ``inputs.json``
(a list of TensorSpec dicts), otherwise the caller gives ``inputs``.
"""

from __future__ import annotations

import json
import warnings

from nn_farm.errors import DeviceUnavailable
from nn_farm.farm.runtimes.base import Runtime, RuntimeStatus, Session, validate
from nn_farm.farm.tensors import TensorSpec, random_array, resolve_inputs

INPUTS_EXTRA_FILE = "inputs.json"


class TorchSession(Session):
    def __init__(self, module, args: tuple, inputs: list[TensorSpec], identity: dict) -> None:
        super().__init__(inputs, identity)
        self._module, self._args = module, args

    def run(self) -> None:
        import torch

        with torch.inference_mode():
            self._module(*self._args)

    def close(self) -> None:
        self._module = self._args = None


class TorchRuntime(Runtime):
    name = "torch"
    formats = ("pt", "pt2")
    defaults = {"threads": 1}

    def status(self, options: dict | None = None) -> RuntimeStatus:
        try:
            import torch
        except ImportError as exc:
            return RuntimeStatus(False, "", f"torch is not installed: {exc}")
        return RuntimeStatus(True, torch.__version__)

    def load(self, path, inputs=None, options=None) -> Session:
        from nn_farm.farm.runtimes import format_of

        opts = self.options(options)
        path = self.check_file(path)
        try:
            import torch
        except ImportError as exc:
            raise DeviceUnavailable(f"runtime 'torch' is not installed: {exc}") from exc
        torch.set_num_threads(int(opts["threads"]))
        try:
            if format_of(path) == "pt2":
                module, model_inputs = _load_exported(torch, path)
            else:
                module, model_inputs = _load_script(torch, path)
        except Exception as exc:
            raise self.invalid(path, exc) from exc
        specs = resolve_inputs(model_inputs, inputs, path)
        args = tuple(torch.from_numpy(random_array(s)) for s in specs)
        identity = {"threads": int(opts["threads"]), "delegate": "cpu"}
        return validate(self, path, TorchSession(module, args, specs, identity))


def _load_script(torch, path: str):
    extra = {INPUTS_EXTRA_FILE: ""}
    with warnings.catch_warnings():
        # TorchScript is deprecated in favour of torch.export, yet it is what users have.
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(path, map_location="cpu", _extra_files=extra).eval()
    if extra[INPUTS_EXTRA_FILE]:
        specs = [TensorSpec.from_dict(d) for d in json.loads(extra[INPUTS_EXTRA_FILE])]
        return module, [(s.name, list(s.shape), s.dtype) for s in specs]
    # Without stored shapes every input is dynamic; the caller must give them.
    names = [a.name for a in module.forward.schema.arguments[1:]]
    return module, [(name, [None], "float32") for name in names]


def _load_exported(torch, path: str):
    program = torch.export.load(path)
    user_inputs = set(program.graph_signature.user_inputs)
    model_inputs = []
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            val = node.meta.get("val")
            shape = [d if isinstance(d, int) else None for d in val.shape]
            model_inputs.append((node.name, shape, str(val.dtype).removeprefix("torch.")))
    return program.module(), model_inputs
