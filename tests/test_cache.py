"""The content-addressed model cache: atomic, digest-checked, LRU-capped; and eviction through a real agent."""

from __future__ import annotations

import hashlib
import os
import tarfile
import time

import pytest

from nn_farm import errors
from nn_farm.farm.agent import start_agent
from nn_farm.farm.cache import ModelCache, pack_openvino_ir
from nn_farm.farm.client import AgentClient
from nn_farm.farm.devices import AgentConfig, DeviceConfig
from test_agent import QUICK, make_onnx


def put(cache: ModelCache, data: bytes, fmt: str = "onnx") -> str:
    digest = hashlib.sha256(data).hexdigest()
    with cache.upload(digest, fmt, len(data)) as up:
        for i in range(0, len(data), 100):
            up.write(data[i:i + 100])
    return digest


def test_stored_under_digest_and_format_only(tmp_path):
    cache = ModelCache(tmp_path, max_bytes=10_000)
    digest = put(cache, b"a" * 500)
    model = cache.get(digest)
    assert model.path == tmp_path / f"{digest}.onnx"
    assert model.path.read_bytes() == b"a" * 500
    assert (model.size, model.format, len(cache), cache.total_bytes) == (500, "onnx", 1, 500)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{digest}.onnx"]


def test_mismatched_bytes_never_become_visible(tmp_path):
    cache = ModelCache(tmp_path, max_bytes=10_000)
    claimed = hashlib.sha256(b"good").hexdigest()
    with pytest.raises(errors.InvalidModel, match="sha256"):
        with cache.upload(claimed, "onnx", 3) as up:
            up.write(b"bad")
    with pytest.raises(errors.InvalidModel, match="announced"):
        with cache.upload(claimed, "onnx", 10) as up:
            up.write(b"good")
    assert not cache.has(claimed)
    assert list(tmp_path.iterdir()) == []  # the temporary files are gone too


def test_least_recently_used_goes_first(tmp_path):
    cache = ModelCache(tmp_path, max_bytes=1000)
    a, b = put(cache, b"a" * 400), put(cache, b"b" * 400)
    cache.get(a)  # a is now more recent than b
    c = put(cache, b"c" * 400)
    assert cache.has(a) and cache.has(c) and not cache.has(b)
    assert not (tmp_path / f"{b}.onnx").exists()
    assert cache.total_bytes == 800
    with pytest.raises(errors.ModelNotFound) as info:
        cache.get(b)
    assert info.value.digest == b


def test_a_pinned_model_survives_eviction(tmp_path):
    cache = ModelCache(tmp_path, max_bytes=1000)
    a = put(cache, b"a" * 400)
    with cache.pinned(a):
        put(cache, b"b" * 400)
        put(cache, b"c" * 400)
        assert cache.has(a)
    assert cache.has(a)


def test_upload_limit(tmp_path):
    cache = ModelCache(tmp_path, max_bytes=10_000)
    with pytest.raises(errors.ModelTooLarge):
        cache.upload(hashlib.sha256(b"x").hexdigest(), "onnx", 600, max_upload_bytes=500)
    data = b"x" * 600
    with pytest.raises(errors.ModelTooLarge):  # announced small, sent big
        with cache.upload(hashlib.sha256(data).hexdigest(), "onnx", 10, max_upload_bytes=500) as up:
            up.write(data)
    assert list(tmp_path.iterdir()) == []


def test_restart_keeps_models_and_their_order_and_drops_leftovers(tmp_path):
    cache = ModelCache(tmp_path, max_bytes=1000)
    a, b = put(cache, b"a" * 400), put(cache, b"b" * 400)
    old = time.time() - 100
    os.utime(tmp_path / f"{b}.onnx", (old, old))  # b was used long ago
    (tmp_path / ".tmp-crashed-upload").write_bytes(b"half")
    (tmp_path / ".tmp-crashed-unpack").mkdir()
    (tmp_path / "notes.txt").write_text("not a model")
    reopened = ModelCache(tmp_path, max_bytes=1000)
    assert reopened.has(a) and reopened.has(b) and len(reopened) == 2
    assert not (tmp_path / ".tmp-crashed-upload").exists() and not (tmp_path / ".tmp-crashed-unpack").exists()
    put(reopened, b"c" * 400)
    assert reopened.has(a) and not reopened.has(b)


def test_openvino_ir_is_one_deterministic_tar(tmp_path):
    (tmp_path / "m.xml").write_text("<net/>")
    (tmp_path / "m.bin").write_bytes(b"\x00" * 16)
    packed = pack_openvino_ir(tmp_path / "m.xml")
    assert packed == pack_openvino_ir(tmp_path / "m.xml")
    cache = ModelCache(tmp_path / "cache", max_bytes=100_000)
    digest = put(cache, packed, "irtar")
    xml = cache.get(digest).path
    assert xml.name == "model.xml" and xml.read_text() == "<net/>"
    assert xml.with_suffix(".bin").read_bytes() == b"\x00" * 16
    assert cache.evict(digest) and not xml.parent.exists()
    (tmp_path / "m.bin").unlink()
    with pytest.raises(errors.InvalidModel, match="m.bin"):
        pack_openvino_ir(tmp_path / "m.xml")


def test_a_tar_with_other_members_is_rejected(tmp_path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        (tmp_path / "x").write_text("x")
        tar.add(tmp_path / "x", arcname="../../escape.xml")
    cache = ModelCache(tmp_path / "cache", max_bytes=100_000)
    digest = put(cache, evil.read_bytes(), "irtar")
    with pytest.raises(errors.InvalidModel, match="exactly one"):
        cache.get(digest)
    assert not (tmp_path / "escape.xml").exists() and not (tmp_path.parent / "escape.xml").exists()


def test_agent_evicts_then_a_reupload_works(tmp_path):
    first, second = make_onnx(tmp_path / "a.onnx", seed=1), make_onnx(tmp_path / "b.onnx", seed=2)
    size = max(first.stat().st_size, second.stat().st_size)
    config = AgentConfig(port=0, cache_dir=str(tmp_path / "cache"), cache_max_bytes=int(size * 1.5),
                         max_upload_bytes=size * 2, devices=(DeviceConfig("ort", "ort", "onnxruntime"),))
    with start_agent(config) as running, AgentClient(running.address, token="", timeout_s=60) as c:
        a = c.put_model(first)
        assert c.profile(a, "ort", policy=QUICK).runs == 20
        b = c.put_model(second)
        assert c.has_model(b) and not c.has_model(a)  # a was least recently used
        with pytest.raises(errors.ModelNotFound):
            c.profile(a, "ort", policy=QUICK)
        assert c.put_model(first) == a  # uploaded again, since the agent no longer has it
        assert c.has_model(a) and not c.has_model(b)
        assert c.profile(a, "ort", policy=QUICK).model_digest == a
