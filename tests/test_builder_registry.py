"""Register / unregister / list customized builder modules through the real CLI."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from nn_farm import cli
from nn_farm.builder import registry
from nn_farm.builder.sampling import finegrained_configs, sample_kernel_configs
from nn_farm.builder.workspace import create_workspace
from nn_farm.errors import ConfigError

PACKAGE = {
    "my_ops/__init__.py": "",
    "my_ops/layers.py": """
        class Mish:
            def __init__(self, input_shape, config=None):
                self.input_shape = input_shape
            def get_model(self):
                return None
            def get_output_shape(self):
                return list(self.input_shape)
            def get_is_two_inputs(self):
                return False
    """,
    "my_ops/cases.py": "class MishRelu:\n    pass\n",
    "my_ops/kernels.py": """
        import random

        class MishKernel:
            def __init__(self, config):
                self.config = config
            def get_model(self):
                return None

        class MishSampler:
            def prior_config_sampling(self, sample_num):
                return [{"HW": random.choice([7, 14]), "CIN": random.randint(8, 64)}
                        for _ in range(sample_num)]

            def finegrained_config_sampling(self, configs, sample_num):
                return [dict(c, CIN=c["CIN"] + i) for c in configs for i in range(sample_num)]

        class MishParser:
            pass
    """,
    "my_ops/backend.py": "class MyBoardBackend:\n    pass\n",
    "my_ops/board.yaml": "SERIAL: abc123\nTHREADS: 4\n",
}


@pytest.fixture()
def package(tmp_path, monkeypatch):
    monkeypatch.setenv("NN_FARM_HOME", str(tmp_path / "home"))
    root = tmp_path / "pkg"
    for rel, text in PACKAGE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


def _meta(tmp_path, name, **keys):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(keys))
    return path


def _metas(tmp_path, package):
    common = {"package_location": str(package)}
    return {
        "operator": _meta(tmp_path, "op", builtin_name="mish", implement="tensorflow",
                          class_module="my_ops.layers", class_name="Mish", **common),
        "testcase": _meta(tmp_path, "case", builtin_name="mish_relu",
                          class_module="my_ops.cases", class_name="MishRelu", **common),
        "kernel": _meta(tmp_path, "kernel", builtin_name="mish-kernel", implement="torch",
                        class_module="my_ops.kernels", class_name="MishKernel",
                        sampler_module="my_ops.kernels", sampler_name="MishSampler",
                        parser_module="my_ops.kernels", parser_name="MishParser", **common),
        "backend": _meta(tmp_path, "backend", builtin_name="my-board",
                         class_module="my_ops.backend", class_name="MyBoardBackend",
                         defaultConfigFile=str(package / "my_ops" / "board.yaml"), **common),
    }


NAMES = {"operator": "mish", "testcase": "mish_relu", "kernel": "mish-kernel",
         "backend": "my-board"}


def _listed(capsys, kind):
    assert cli.main([f"--list-{kind}s"]) == 0
    return capsys.readouterr().out.splitlines()


def test_register_list_unregister_round_trip(tmp_path, package, capsys):
    metas = _metas(tmp_path, package)
    for kind, meta in metas.items():
        assert cli.main(["register", f"--{kind}", str(meta)]) == 0, capsys.readouterr().err
        assert NAMES[kind] in capsys.readouterr().out

    for kind, name in NAMES.items():
        lines = _listed(capsys, kind)
        assert f"* {name}" in lines
        builtin = registry.builtin_names(kind)
        assert f"  {builtin[0]}" in lines  # builtin ones listed unmarked
        assert sum(line.startswith("* ") for line in lines) == 1
    assert "  conv" in _listed(capsys, "operator")
    assert "  dwconv-bn-hswish" in _listed(capsys, "kernel")
    assert "  host-cpu-litert" in _listed(capsys, "backend")
    assert len(registry.builtin_names("kernel")) == 30

    # The registry is a file under NN_FARM_HOME, readable by another process.
    stored = yaml.safe_load(registry.registry_path().read_text())
    assert stored["kernels"]["mish-kernel"]["sampler_name"] == "MishSampler"
    assert registry.registry_path().parent == tmp_path / "home"

    for kind, name in NAMES.items():
        assert cli.main(["unregister", f"--{kind}", name]) == 0
        assert f"unregistered {kind}" in capsys.readouterr().out
        assert name not in "\n".join(_listed(capsys, kind))
    assert cli.main(["unregister", "--kernel", "mish-kernel"]) == 1
    assert "mish-kernel" in capsys.readouterr().err


def test_registered_modules_are_usable(tmp_path, package):
    metas = _metas(tmp_path, package)
    for kind in ("operator", "kernel", "backend"):
        registry.register(kind, metas[kind])

    # A customized kernel samples through its registered sampler, deduplicated.
    configs = sample_kernel_configs("mish-kernel", 40, seed=3)
    assert 0 < len(configs) <= 40
    assert len({tuple(sorted(c.items())) for c in configs}) == len(configs)
    assert all(c["HW"] in (7, 14) and 8 <= c["CIN"] <= 64 for c in configs)
    assert sample_kernel_configs("mish-kernel", 40, seed=3) == configs
    fine = finegrained_configs("mish-kernel", [{"HW": 7, "CIN": 10}], 3, seed=0)
    assert fine == [{"HW": 7, "CIN": 11}, {"HW": 7, "CIN": 12}]  # CIN+0 is the given config

    # A customized operator reaches the operator registry the generators use.
    from nn_farm.builder.models.kernels import _CUSTOM_KERNELS, unregister_kernel
    from nn_farm.builder.models.registry import get_operator, unregister_operator

    assert registry.activate() == {"operator": ["mish"], "kernel": ["mish-kernel"]}
    try:
        assert get_operator("mish", "tensorflow").__name__ == "Mish"
        assert _CUSTOM_KERNELS[("mish-kernel", "torch")].__name__ == "MishKernel"
    finally:
        # The generators' registries are process-wide: leave them as found.
        unregister_operator("mish", "tensorflow")
        unregister_kernel("mish-kernel", "torch")

    # A customized backend can back a workspace; its default config lands in PARAMS.
    ws = create_workspace(tmp_path / "ws", backend="my-board", farm=tmp_path / "farm.yaml")
    backend = yaml.safe_load(ws.backend_config.read_text())
    assert backend["BACKEND"] == "my-board"
    assert backend["PARAMS"] == {"SERIAL": "abc123", "THREADS": 4}


def test_corrupt_meta_yaml_names_the_file(tmp_path, package, capsys):
    meta = tmp_path / "broken.yaml"
    meta.write_text("builtin_name: mish\nclass_module: [my_ops.layers\n")
    with pytest.raises(ConfigError) as info:
        registry.register("operator", meta)
    assert str(meta) in str(info.value) and "malformed YAML" in str(info.value)
    assert cli.main(["register", "--operator", str(meta)]) == 1
    assert str(meta) in capsys.readouterr().err
    assert not registry.registry_path().exists()  # nothing half-registered


def test_missing_package_names_the_module(tmp_path, package):
    meta = _meta(tmp_path, "op", builtin_name="ghost", implement="torch",
                 package_location=str(package), class_module="no_such_pkg.layers",
                 class_name="Ghost")
    with pytest.raises(ConfigError) as info:
        registry.register("operator", meta)
    message = str(info.value)
    assert "no_such_pkg.layers" in message and str(meta) in message
    assert info.value.key == "class_module"
    assert "ghost" not in registry.names("operator")


@pytest.mark.parametrize("change, key", [
    ({"class_name": "NoSuchClass"}, "class_name"),
    ({"sampler_name": "NoSampler"}, "sampler_name"),
    ({"parser_module": "my_ops.nowhere"}, "parser_module"),
    ({"package_location": "/no/such/dir"}, "package_location"),
    ({"builtin_name": "conv-bn-relu"}, "builtin_name"),  # a builtin kernel
    ({"implement": "caffe"}, "implement"),
    ({"colour": "red"}, "colour"),
])
def test_bad_kernel_meta_names_the_key(tmp_path, package, change, key):
    keys = dict(builtin_name="k", implement="torch", package_location=str(package),
                class_module="my_ops.kernels", class_name="MishKernel",
                sampler_module="my_ops.kernels", sampler_name="MishSampler",
                parser_module="my_ops.kernels", parser_name="MishParser")
    keys.update(change)
    meta = _meta(tmp_path, "kernel", **keys)
    with pytest.raises(ConfigError) as info:
        registry.register("kernel", meta)
    assert info.value.key == key
    assert str(meta) in str(info.value)


def test_missing_required_key(tmp_path, package):
    meta = _meta(tmp_path, "kernel", builtin_name="k", package_location=str(package),
                 class_module="my_ops.kernels", class_name="MishKernel", implement="torch")
    with pytest.raises(ConfigError) as info:
        registry.register("kernel", meta)
    assert info.value.key == "sampler_module"


def test_relative_package_location_is_taken_from_the_meta_file(tmp_path, package):
    meta = package.parent / "rel.yaml"
    meta.write_text(yaml.safe_dump({"builtin_name": "rel_case", "package_location": "pkg",
                                    "class_module": "my_ops.cases", "class_name": "MishRelu"}))
    registry.register("testcase", meta)
    assert registry.get_meta("testcase", "rel_case")["package_location"] == str(package)
    assert registry.load_class("testcase", "rel_case").__name__ == "MishRelu"


def test_builtins_cannot_be_unregistered(tmp_path, package):
    with pytest.raises(ConfigError, match="builtin"):
        registry.unregister("backend", "host-cpu-litert")
