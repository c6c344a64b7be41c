"""mobilenet: the reference MobileNet v1 (Howard et al., 2017) for PyTorch.

>>> import mobilenet
>>> model = mobilenet.mobilenet_v1(width_mult=0.5, num_classes=10)
>>> mobilenet.model_cost(width_mult=1.0, resolution=224).mult_adds
568740352
"""

from .builder import mobilenet_v1
from .commands import export_model
from .cost import CostReport, LayerCost, model_cost, separable_conv_cost, separable_cost_ratio, standard_conv_cost
from .detection import ssd_mobilenet_v1
from .model import FeatureExtractor, MobileNetV1
from .spec import TABLE1, MobileNetConfig, build_blocks, build_layers, conv_defs, scaled_depth

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
