"""The farm's sub-commands: ``agent``, ``devices``, ``profile`` and ``runtimes``.

    nn-farm agent [--config agent.yaml] [--host H] [--port P]
    nn-farm devices --agent HOST:PORT [--json]
    nn-farm profile MODEL --agent HOST:PORT --device ID [--runs N] [--json]
    nn-farm runtimes     (the builder's ``nn-farm demo`` is the main job)

Clients take the token from ``--token-file`` or ``NN_FARM_TOKEN`` and trust the
agent's TLS certificate through ``--tls-root-cert``. Nothing heavy is imported
until a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("agent", help="serve this host's devices over gRPC",
                              description="Serve the devices in agent.yaml (default: this host's CPU "
                                          "on every runtime) to nn-farm clients.")
    p.add_argument("--config", metavar="YAML", help="agent.yaml: devices, cache, token_file, TLS")
    p.add_argument("--host", help="address to listen on (default from config, else 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (0 = any free port; default 50051)")
    p.set_defaults(func=cmd_agent)

    p = subparsers.add_parser("devices", help="list an agent's devices")
    _client_flags(p)
    p.add_argument("--json", action="store_true", help="print the devices as JSON")
    p.set_defaults(func=cmd_devices)

    p = subparsers.add_parser("profile", help="measure a model file on one device of an agent",
                              description="Upload MODEL once (content-addressed) and measure it.")
    p.add_argument("model", metavar="MODEL", help="model file: .tflite, .onnx, .xml (+.bin), .pt")
    _client_flags(p)
    p.add_argument("--device", required=True, metavar="ID", help="device id (see `nn-farm devices`)")
    p.add_argument("--runs", type=int, metavar="N", help="time exactly N runs (default: the policy's)")
    p.add_argument("--timeout-s", type=float, help="per-measurement timeout in seconds")
    p.add_argument("--json", action="store_true", help="print the full measurement as JSON")
    p.set_defaults(func=cmd_profile)

    p = subparsers.add_parser("runtimes", help="profile a bundled model on every runtime of this host",
                              description="Start an in-process agent for this host's CPU and profile "
                                          "the bundled tiny conv network on every installed runtime.")
    p.set_defaults(func=cmd_demo)


def _client_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agent", required=True, metavar="HOST:PORT", help="the agent's address")
    p.add_argument("--token-file", metavar="PATH", help="bearer token file (default: $NN_FARM_TOKEN)")
    p.add_argument("--tls-root-cert", metavar="PEM", help="CA certificate to trust; enables TLS")


def _client(args):
    from nn_farm.farm.auth import read_token
    from nn_farm.farm.client import AgentClient

    return AgentClient(args.agent, token=read_token(args.token_file) or "", root_cert=args.tls_root_cert,
                       timeout_s=30.0)


def cmd_agent(args) -> int:
    from nn_farm.farm.agent import serve
    from nn_farm.farm.devices import load_config

    serve(load_config(args.config, host=args.host, port=args.port))
    return 0


def cmd_devices(args) -> int:
    import dataclasses

    with _client(args) as client:
        devices = client.list_devices()
    if args.json:
        print(json.dumps([dataclasses.asdict(d) for d in devices], indent=2))
        return 0
    for d in devices:
        state = (f"{d.runtime} {d.runtime_version}" if d.available
                 else f"{d.runtime} unavailable: {d.unavailable_reason}")
        print(f"{d.id:<28} {d.device_class:<24} {state}  formats={','.join(d.formats)} queue={d.queue_length}")
    return 0


def cmd_profile(args) -> int:
    from nn_farm.farm.policy import MeasurePolicy

    changes = {}
    if args.runs:
        changes["runs_exact"] = args.runs
    if args.timeout_s:
        changes["timeout_s"] = args.timeout_s
    policy = MeasurePolicy(**changes)
    with _client(args) as client:
        digest, uploaded = client.ensure_model(args.model)  # uploads only if the agent lacks it
        m = client.profile(digest, args.device, policy=policy)
    if args.json:
        print(json.dumps(m.to_dict(), indent=2))
        return 0
    print(f"{args.model} on {m.device_id} [{m.runtime} {m.runtime_version}, {m.device.get('cpu_model', '')}, "
          f"threads {m.device.get('threads', 0)}, delegate {m.device.get('delegate') or '-'}]"
          f"{' (uploaded)' if uploaded else ' (already on the agent)'}")
    print(f"  {m.summary()}")
    print(f"  digest {digest}")
    return 0


def cmd_demo(args) -> int:
    from nn_farm.farm.demo import run_demo

    lines = run_demo(out=sys.stdout)
    return 0 if any(line.measurement is not None for line in lines) else 1
