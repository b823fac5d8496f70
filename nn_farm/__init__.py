"""nn-farm: profile neural-network latency on a farm of real devices, learn one
latency predictor per device, and serve predictions to NAS code.

Layers (imports point down or sideways, never up):
    nn_farm.farm       the device side: runtimes, measurement policy, gRPC agent, client
    nn_farm.actors     the Ray side: device actors, scheduler, result store
    nn_farm.predictor  model -> IR -> kernels -> latency (usable without Ray)
    nn_farm.builder    fusion-rule tester and predictor builder on the farm
"""

__version__ = "0.1.0"

import os as _os

# gRPC logs an INFO line ("skipping fork() handlers") whenever a process with gRPC
# threads forks, and the farm forks converter and Ray workers all the time: in a
# build's output those lines buried the errors. Set before anything loads grpc.
_os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
