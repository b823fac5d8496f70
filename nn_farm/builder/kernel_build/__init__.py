"""The kernel predictor build (rounds, profiling, state) behind :mod:`nn_farm.builder.kernel_builder`.

    state.py     per-kernel round records on disk: held-out test ids, each round's
                 accuracy, the kept round (keep-if-better), resumable
    profiling.py kernel records -> farm jobs (generated and converted as Ray tasks)
                 -> latencies, device-seconds
    engine.py    rounds over all kernels of a workspace: one farm run per round,
                 training in parallel, the predictor package
"""
