"""Bearer-token auth and TLS credentials for the agent and its client.

Every call carries ``authorization: Bearer <token>`` metadata; a server
interceptor refuses any other call with ``UNAUTHENTICATED`` before a servicer
method runs. The token comes from ``NN_FARM_TOKEN`` or a file, never from the
command line (where ``ps`` would show it). Tokens are compared in constant time.

Tokens travel in metadata rather than gRPC call credentials so that the same
code works on a plain loopback channel; use TLS whenever the agent listens
beyond loopback.
"""

from __future__ import annotations

import hmac
import os
import pathlib

import grpc

from nn_farm.errors import ConfigError
from nn_farm.farm.devices import TOKEN_ENV, read_token  # noqa: F401  (re-exported for clients)

_HEADER = "authorization"


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The call metadata that carries ``token`` (empty without one)."""
    return ((_HEADER, f"Bearer {token}"),) if token else ()


def read_bytes(value: str | os.PathLike | bytes | None, what: str) -> bytes | None:
    """PEM bytes from a path or bytes; None stays None.

    Raises:
        ConfigError: the file cannot be read.
    """
    if value is None or isinstance(value, bytes):
        return value
    try:
        return pathlib.Path(value).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror}", path=str(value)) from exc


def server_credentials(cert: str | os.PathLike | bytes, key: str | os.PathLike | bytes):
    """TLS credentials for the agent from a PEM certificate chain and private key."""
    return grpc.ssl_server_credentials([(read_bytes(key, "TLS key"), read_bytes(cert, "TLS certificate"))])


def channel_credentials(root_cert: str | os.PathLike | bytes):
    """TLS credentials for a client that trusts ``root_cert`` (PEM path or bytes)."""
    return grpc.ssl_channel_credentials(root_certificates=read_bytes(root_cert, "TLS root certificate"))


class TokenInterceptor(grpc.ServerInterceptor):
    """Refuse every call whose metadata lacks ``authorization: Bearer <token>``.

    Args:
        token: the one accepted token.
    """

    def __init__(self, token: str):
        if not token:
            raise ConfigError("an empty token would let anyone in", key="token")
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation, handler_call_details):
        sent = dict(handler_call_details.invocation_metadata or ()).get(_HEADER, "")
        if hmac.compare_digest(sent.encode(), self._expected):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return _refusal(handler, handler_call_details.method)


def _refusal(handler, method: str):
    def deny(request_or_iterator, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED,
                      f"{method}: missing or wrong bearer token (authorization metadata)")

    # The refusal must have the same streaming shape as the method it replaces.
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)
