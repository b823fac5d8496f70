"""IR graph -> kernels: the maximal fused units a backend runs, named as nn-Meter names them.

    load_fusion_rules(path_or_dict=None) -> FusionRules     rules.py
    detect_kernels(ir, fusion_rules=None) -> list[dict]      detector.py (blocks.py inside)

Pure Python over the IR dicts: no framework, no Ray, no builder.

Example:
    >>> from nn_farm.predictor.ir import model_to_ir
    >>> from nn_farm.predictor.kernels import detect_kernels
    >>> kernels = detect_kernels(model_to_ir("resnet18", "torchvision"))   # doctest: +SKIP
    >>> kernels[0]["op"], kernels[0]["cout"]                                # doctest: +SKIP
    ('conv-relu', 64)
"""

from nn_farm.predictor.kernels.detector import KERNEL_NAMES, detect_kernels
from nn_farm.predictor.kernels.rules import DEFAULT_RULES, FusionRules, load_fusion_rules

__all__ = ["DEFAULT_RULES", "FusionRules", "KERNEL_NAMES", "detect_kernels", "load_fusion_rules"]
