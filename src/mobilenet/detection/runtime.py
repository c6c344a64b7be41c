"""Running a detector: ours in PyTorch, or a TF Lite SSD file in LiteRT, behind one interface.

Both take uint8 images (N, 3, S, S), the bytes :func:`mobilenet.detection.data.load_input` makes,
so that a comparison between them starts from identical inputs. ``raw`` gives the outputs before
post-processing (box codes and class logits); ``detections`` gives torchvision-style dicts with
normalized [x0, y0, x1, y1] boxes. LiteRT's raw outputs are the inputs of the file's
``TFLite_Detection_PostProcess`` op (the logits: the input of the sigmoid before it), read with
``experimental_preserve_all_tensors``; ``own=True`` returns the op's own detections instead.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .boxes import decode_boxes, postprocess
from .model import SSDMobileNetV1, postprocess_config
from .spec import DetectorConfig, PostProcessConfig

__all__ = ["LiteRTDetector", "TorchDetector", "open_detector"]


class TorchDetector:
    """Our :class:`SSDMobileNetV1` on uint8 inputs."""

    backend = "torch"

    def __init__(self, model: SSDMobileNetV1) -> None:
        from ..model import fold_batchnorm

        # BN folded into the convs and channels-last memory: the same function, about twice as fast on CPU.
        self.model = fold_batchnorm(model).to(memory_format=torch.channels_last)  # type: ignore[arg-type]
        self.config: DetectorConfig = model.config

    def scale(self, images: Tensor) -> Tensor:
        x = (images.float() - self.config.mean) / self.config.std
        return x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def raw(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.model(self.scale(images))

    @torch.inference_mode()
    def detections(self, images: Tensor, pp: str | PostProcessConfig | None = None) -> list[dict[str, Tensor]]:
        return self.model.predict(self.scale(images), pp)


class LiteRTDetector:
    """A TF Lite SSD file (Google's detect.tflite) in LiteRT, one image per invoke."""

    backend = "litert"

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        from ..extras import require
        from ..weights.tflite import DETECTION_POSTPROCESS, read_tflite
        from .anchors import ssd_anchors
        from .tflite_import import load_detector_tflite, sigmoid_input

        require("ai_edge_litert", purpose="running a TF Lite detector")
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        _, self.config = load_detector_tflite(self.path)
        graph = read_tflite(self.path)
        post = next(op for op in graph.custom_ops if op[0] == DETECTION_POSTPROCESS)
        self._codes_index, scores_index = post[1][0], post[1][1]
        with warnings.catch_warnings():  # LiteRT warns that preserving tensors is for debugging: it is what we want
            warnings.simplefilter("ignore")
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads, experimental_preserve_all_tensors=True)
        self.interpreter.allocate_tensors()
        logits = sigmoid_input(self.path, scores_index)
        # Without a sigmoid op before it, the post-processing reads scores: logits are their inverse.
        self._logits_index, self._sigmoid = (scores_index, True) if logits is None else (logits, False)
        self._details = {d["index"]: d for d in self.interpreter.get_tensor_details()}
        self._input = self.interpreter.get_input_details()[0]
        self.anchors = ssd_anchors(self.config.anchors, self.config.feature_sizes())

    def _tensor(self, index: int) -> np.ndarray:
        detail = self._details[index]
        value = self.interpreter.get_tensor(index)
        scale, zero = detail["quantization"]
        if value.dtype != np.float32 and scale:
            return (value.astype(np.float32) - zero) * scale
        return value.astype(np.float32)

    def _invoke(self, image: Tensor) -> None:
        x = image.permute(1, 2, 0).contiguous().numpy()[None]
        if self._input["dtype"] == np.float32:
            x = ((x.astype(np.float32) - self.config.mean) / self.config.std).astype(np.float32)
        self.interpreter.set_tensor(self._input["index"], x.astype(self._input["dtype"]))
        self.interpreter.invoke()

    def raw(self, images: Tensor) -> tuple[Tensor, Tensor]:
        codes, logits = [], []
        for image in images:
            self._invoke(image)
            codes.append(torch.from_numpy(self._tensor(self._codes_index).reshape(-1, 4)))
            value = torch.from_numpy(self._tensor(self._logits_index).reshape(codes[-1].shape[0], -1))
            logits.append(torch.logit(value.clamp(1e-6, 1 - 1e-6)) if self._sigmoid else value)
        return torch.stack(codes), torch.stack(logits)

    def own(self, images: Tensor) -> list[dict[str, Tensor]]:
        """The file's own post-processing (TFLite_Detection_PostProcess), as torchvision-style dicts."""
        out = []
        for image in images:
            self._invoke(image)
            boxes, classes, scores, count = (
                self.interpreter.get_tensor(d["index"]) for d in self.interpreter.get_output_details()
            )
            n = int(count.reshape(-1)[0])
            yx = torch.from_numpy(boxes.reshape(-1, 4)[:n].astype(np.float32))
            out.append(
                {
                    "boxes": yx[:, [1, 0, 3, 2]],
                    "scores": torch.from_numpy(scores.reshape(-1)[:n].astype(np.float32)),
                    "labels": torch.from_numpy(classes.reshape(-1)[:n].astype(np.int64)) + 1,  # the op's classes skip background
                }
            )
        return out

    def detections(
        self, images: Tensor, pp: str | PostProcessConfig | None = None, *, own: bool = False
    ) -> list[dict[str, Tensor]]:
        if own:
            return self.own(images)
        config = postprocess_config(pp, self.config)
        codes, logits = self.raw(images)
        boxes = decode_boxes(codes, self.anchors, self.config.box_scales)
        return [postprocess(b, torch.sigmoid(s), config) for b, s in zip(boxes, logits)]


def open_detector(weights: Any, runtime: str = "torch", *, postprocess: str | None = None, threads: int | None = None) -> Any:
    """A detector to run: ``runtime="torch"`` loads weights into our model (a .tflite is imported);
    ``"litert"`` runs a .tflite file itself in LiteRT."""
    if runtime == "litert":
        paths = [weights] if isinstance(weights, (str, os.PathLike)) else list(weights)
        if len(paths) != 1 or Path(paths[0]).suffix.lower() != ".tflite":
            raise ValueError(f"--runtime litert runs one .tflite detector; got {' '.join(map(str, paths))}")
        from ..weights.loader import check_model_file
        from .tflite_import import is_tflite_detector

        check_model_file(paths[0])
        if not is_tflite_detector(paths[0]):
            raise ValueError(f"{paths[0]} is not an object detector (no TFLite_Detection_PostProcess op): a classifier?")
        return LiteRTDetector(paths[0], threads=threads)
    if runtime != "torch":
        raise ValueError(f"runtime={runtime!r} is not supported for detection; choose 'torch' or 'litert'")
    from .weights import load_detector

    return TorchDetector(load_detector(weights))
