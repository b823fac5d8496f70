"""Session-wide test set-up.

torch and torchvision are imported before anything can import tensorflow:
tensorflow >= 2.20 followed by triton segfaults (see nn_farm/_compat.py).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import torch  # noqa: E402,F401
import torchvision  # noqa: E402,F401
