"""Import order fixes for the tested set of native libraries.

tensorflow >= 2.20 loads its own LLVM; if triton (pulled in by torchvision or
torch._dynamo) loads after it, the process segfaults. Loading torch and
torchvision first is safe, so every tensorflow import in nn-farm goes through
:func:`import_tensorflow`. Work that needs only one of them can also run in its
own process (conversion workers do).
"""

from __future__ import annotations

import os
import sys


def import_tensorflow():
    """Return the tensorflow module, loading torch and torchvision first when installed."""
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            import torch  # noqa: F401
            import torchvision  # noqa: F401  (brings triton in before TF's LLVM)
        except ImportError:
            pass
    import tensorflow

    return tensorflow
