"""Bearer-token auth, TLS, and client input never reaching the filesystem, on a real agent."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress

import grpc
import pytest

from nn_farm import errors
from nn_farm.farm._proto import farm_pb2 as pb
from nn_farm.farm._proto import farm_pb2_grpc as pb_grpc
from nn_farm.farm.agent import start_agent
from nn_farm.farm.client import AgentClient
from nn_farm.farm.devices import AgentConfig, DeviceConfig

TOKEN = "s3cret-token-for-tests"
DEVICES = (DeviceConfig("cpu/ort", "cpu-ort", "onnxruntime"),)


def self_signed(directory, name: str):
    """A self-signed certificate for localhost and 127.0.0.1; returns (cert_path, key_path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    return {"agent": self_signed(d, "agent"), "other": self_signed(d, "other")}


@pytest.fixture(scope="module")
def tls_agent(tmp_path_factory, certs):
    cert, key = certs["agent"]
    config = AgentConfig(port=0, cache_dir=str(tmp_path_factory.mktemp("cache")), devices=DEVICES,
                         token=TOKEN, tls_cert=str(cert), tls_key=str(key))
    running = start_agent(config)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def token_agent(tmp_path_factory):
    config = AgentConfig(port=0, cache_dir=str(tmp_path_factory.mktemp("cache")), devices=DEVICES, token=TOKEN)
    running = start_agent(config)
    yield running
    running.stop()


def test_right_token_is_served(token_agent):
    with AgentClient(token_agent.address, token=TOKEN, timeout_s=30) as c:
        assert [d.id for d in c.list_devices()] == ["cpu/ort"]
        assert c.health()["status"] == "SERVING"


@pytest.mark.parametrize("token", ["wrong", ""])
def test_wrong_or_missing_token_is_unauthenticated(token_agent, token):
    with AgentClient(token_agent.address, token=token, timeout_s=30) as c:
        with pytest.raises(errors.AuthenticationError) as info:
            c.list_devices()
        assert info.value.__cause__.code() == grpc.StatusCode.UNAUTHENTICATED
        # Streaming upload is refused too, before a byte is stored.
        with pytest.raises(errors.AuthenticationError):
            c.put_model(b"\x08\x01", format="onnx")
    assert len(token_agent.agent.cache) == 0


def test_token_from_the_environment(token_agent, monkeypatch):
    monkeypatch.setenv("NN_FARM_TOKEN", TOKEN)
    with AgentClient(token_agent.address, timeout_s=30) as c:
        assert c.list_devices()


def test_tls_with_the_right_root_certificate(tls_agent, certs):
    address = f"localhost:{tls_agent.port}"
    with AgentClient(address, token=TOKEN, root_cert=certs["agent"][0], timeout_s=30) as c:
        assert [d.id for d in c.list_devices()] == ["cpu/ort"]
    with AgentClient(tls_agent.address, token=TOKEN, root_cert=certs["agent"][0].read_bytes(), timeout_s=30) as c:
        assert c.has_model(hashlib.sha256(b"x").hexdigest()) is False


def test_tls_with_a_wrong_root_certificate_fails_the_handshake(tls_agent, certs):
    with AgentClient(tls_agent.address, token=TOKEN, root_cert=certs["other"][0], timeout_s=10) as c:
        with pytest.raises(errors.AgentUnavailable) as info:
            c.list_devices()
    assert tls_agent.address in str(info.value)


def test_plaintext_client_cannot_talk_to_a_tls_agent(tls_agent):
    with AgentClient(tls_agent.address, token=TOKEN, timeout_s=10) as c:
        with pytest.raises(errors.AgentUnavailable):
            c.list_devices()


def test_tls_still_checks_the_token(tls_agent, certs):
    with AgentClient(tls_agent.address, token="wrong", root_cert=certs["agent"][0], timeout_s=30) as c:
        with pytest.raises(errors.AuthenticationError):
            c.list_devices()


@pytest.mark.parametrize("digest, fmt", [
    ("../../../../tmp/evil", "onnx"),
    ("0" * 64 + "/../x", "onnx"),
    ("A" * 64, "onnx"),                        # upper case is not how digests are spelled here
    (hashlib.sha256(b"m").hexdigest(), "../onnx"),
    (hashlib.sha256(b"m").hexdigest(), "sh"),
])
def test_client_strings_never_become_paths(token_agent, tmp_path, digest, fmt):
    before = sorted(p.name for p in token_agent.agent.cache.root.iterdir())
    channel = grpc.insecure_channel(token_agent.address)
    stub = pb_grpc.ProfilerStub(channel)
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    with pytest.raises(grpc.RpcError) as raw:
        stub.PutModel(iter([pb.ModelChunk(digest=digest, format=fmt, total_size=1, data=b"m")]), metadata=metadata)
    assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as raw:
        stub.Profile(pb.ProfileRequest(model_digest=digest, device_id="cpu/ort"), metadata=metadata)
    assert raw.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    channel.close()
    assert sorted(p.name for p in token_agent.agent.cache.root.iterdir()) == before
    assert not (tmp_path.parent / "evil").exists()
