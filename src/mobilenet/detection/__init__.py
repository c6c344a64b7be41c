"""Object detection over MobileNet v1: SSD MobileNet v1 as TF Object Detection API builds it.

A task above the classifier: the backbone is :class:`mobilenet.model.MobileNetV1`, and nothing
below this package knows about boxes. Modules, bottom-up: ``spec`` (layout, anchors and
post-processing as data, and the cost model), ``anchors`` (TF's multiple-grid generator),
``boxes`` (box code and NMS on torchvision.ops), ``model`` (the network), ``tflite_import``
(Google's TF Lite detectors), ``weights`` (our safetensors), ``data`` (COCO JSON, Pascal VOC),
``runtime`` (PyTorch or LiteRT), ``evaluate`` (COCO AP with pycocotools) and ``api`` (the journeys).
"""

from .api import convert_detector, detect, detect_files, evaluate_detector, is_detection_task, ssd_mobilenet_v1
from .model import SSDMobileNetV1
from .spec import COCO_NAMES, POSTPROCESSES, AnchorConfig, DetectorConfig, PostProcessConfig, detector_cost

__all__ = [
    "COCO_NAMES",
    "POSTPROCESSES",
    "AnchorConfig",
    "DetectorConfig",
    "PostProcessConfig",
    "SSDMobileNetV1",
    "convert_detector",
    "detect",
    "detect_files",
    "detector_cost",
    "evaluate_detector",
    "is_detection_task",
    "ssd_mobilenet_v1",
]
