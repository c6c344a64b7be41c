"""mobilenet: the reference MobileNet v1 (Howard et al., 2017) for PyTorch.

>>> import mobilenet
>>> model = mobilenet.mobilenet_v1(width_mult=0.5, num_classes=10)
>>> mobilenet.model_cost(width_mult=1.0, resolution=224).mult_adds
568740352
"""

from typing import TYPE_CHECKING

from .extras import lazy_names

__version__ = "0.1.0"

__all__ = [
    "TABLE1",
    "CostReport",
    "FeatureExtractor",
    "LayerCost",
    "MobileNetConfig",
    "MobileNetV1",
    "build_blocks",
    "build_layers",
    "conv_defs",
    "export_model",
    "mobilenet_v1",
    "model_cost",
    "scaled_depth",
    "separable_conv_cost",
    "separable_cost_ratio",
    "ssd_mobilenet_v1",
    "standard_conv_cost",
]

#: Where each public name lives. They load on first use (PEP 562), so ``import mobilenet`` and the
#: CLI's start do not pay for torchvision, the detection package or the exporters they do not use.
_HOMES = {
    "TABLE1": "spec",
    "MobileNetConfig": "spec",
    "build_blocks": "spec",
    "build_layers": "spec",
    "conv_defs": "spec",
    "scaled_depth": "spec",
    "CostReport": "cost",
    "LayerCost": "cost",
    "model_cost": "cost",
    "separable_conv_cost": "cost",
    "separable_cost_ratio": "cost",
    "standard_conv_cost": "cost",
    "FeatureExtractor": "model",
    "MobileNetV1": "model",
    "mobilenet_v1": "builder",
    "export_model": "commands",
    "ssd_mobilenet_v1": "detection",
}


__getattr__, __dir__ = lazy_names(__name__, _HOMES)


if TYPE_CHECKING:
    from .builder import mobilenet_v1
    from .commands import export_model
    from .cost import CostReport, LayerCost, model_cost, separable_conv_cost, separable_cost_ratio, standard_conv_cost
    from .detection import ssd_mobilenet_v1
    from .model import FeatureExtractor, MobileNetV1
    from .spec import TABLE1, MobileNetConfig, build_blocks, build_layers, conv_defs, scaled_depth
