"""Running a detector: ours in PyTorch, a TF Lite SSD file in LiteRT, an exported ``.onnx`` in ONNX
Runtime or a ``.pte`` in ExecuTorch, behind one interface.

All take uint8 images (N, 3, S, S), the bytes :func:`mobilenet.detection.data.load_input` makes,
so that a comparison between them starts from identical inputs. ``raw`` gives the outputs before
post-processing (box codes and class logits); ``detections`` gives torchvision-style dicts with
normalized [x0, y0, x1, y1] boxes, decoded and NMS'd by the same code for every runtime. LiteRT's
raw outputs are the inputs of the file's ``TFLite_Detection_PostProcess`` op (the logits: the input
of the sigmoid before it), read with ``experimental_preserve_all_tensors``; ``own=True`` returns the
op's own detections instead. ONNX and ExecuTorch files end at the raw outputs.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .anchors import ssd_anchors
from .boxes import decode_boxes, postprocess
from .model import SSDMobileNetV1, postprocess_config
from .spec import DetectorConfig, PostProcessConfig

__all__ = ["ExecuTorchDetector", "LiteRTDetector", "OnnxDetector", "TorchDetector", "open_detector"]


class RawOutputDetector:
    """A runtime that gives raw outputs (``raw``); decoding and post-processing are ours."""

    config: DetectorConfig
    anchors: Tensor

    def raw(self, images: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def scale(self, images: Tensor) -> Tensor:
        return ((images.float() - self.config.mean) / self.config.std).contiguous()

    def detections(self, images: Tensor, pp: str | PostProcessConfig | None = None) -> list[dict[str, Tensor]]:
        config = postprocess_config(pp, self.config)
        codes, logits = self.raw(images)
        boxes = decode_boxes(codes, self.anchors, self.config.box_scales)
        return [postprocess(b, torch.sigmoid(s), config) for b, s in zip(boxes, logits)]


def _exported_config(path: Path, text: str | None) -> DetectorConfig:
    import json

    from ..checkpoint import WeightsFileError

    if text is None:
        raise WeightsFileError(f"{path} carries no detector config; export detectors with `mobilenet export`")
    try:
        return DetectorConfig.from_dict(json.loads(text))
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
        raise WeightsFileError(f"{path}: its detector config is unreadable ({exc})") from None


class OnnxDetector(RawOutputDetector):
    """An ``.onnx`` detector of ours (``mobilenet export --format onnx``) in ONNX Runtime."""

    backend = "onnxruntime"

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        from ..checkpoint import DETECTOR_CONFIG_KEY
        from ..extras import require

        require("onnxruntime", "onnx", purpose="running an ONNX detector")
        import onnx
        import onnxruntime as ort

        self.path = Path(path)
        meta = {p.key: p.value for p in onnx.load(str(self.path), load_external_data=False).metadata_props}
        self.config = _exported_config(self.path, meta.get(DETECTOR_CONFIG_KEY))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name
        self.anchors = ssd_anchors(self.config.anchors, self.config.feature_sizes())

    def raw(self, images: Tensor) -> tuple[Tensor, Tensor]:
        codes, logits = self.session.run(None, {self._input: self.scale(images).numpy()})
        return torch.from_numpy(codes), torch.from_numpy(logits)


class ExecuTorchDetector(RawOutputDetector):
    """A ``.pte`` detector of ours (``mobilenet export --format pte``) in ExecuTorch, one image per call."""

    backend = "executorch"

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        from ..checkpoint import DETECTOR_CONFIG_KEY
        from ..runtimes.executorch import load_pte_method, pte_constant

        self.path = Path(path)
        self.config = _exported_config(self.path, pte_constant(self.path, DETECTOR_CONFIG_KEY))
        self._method = load_pte_method(self.path, threads=threads)
        self.anchors = ssd_anchors(self.config.anchors, self.config.feature_sizes())

    def raw(self, images: Tensor) -> tuple[Tensor, Tensor]:
        outs = [self._method.execute([image]) for image in self.scale(images).split(1)]
        return torch.cat([o[0] for o in outs]).float(), torch.cat([o[1] for o in outs]).float()


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
        with _threads_for(self.model):
            return self.model(self.scale(images))

    @torch.inference_mode()
    def detections(self, images: Tensor, pp: str | PostProcessConfig | None = None) -> list[dict[str, Tensor]]:
        with _threads_for(self.model):
            return self.model.predict(self.scale(images), pp)


@contextmanager
def _threads_for(model: torch.nn.Module) -> Iterator[None]:
    """PyTorch's threads for one call, as ``predict`` picks them (:func:`mobilenet.predict.predict_threads`):
    one on a machine whose cores are all busy, where OpenMP's threads wait on each other at every
    layer (measured on 2 loaded cores: this detector's forward pass 83-97 ms on one thread, 873-956 ms
    on two); PyTorch's own choice otherwise. The caller's setting is restored after."""
    from ..predict import predict_threads

    threads, before = predict_threads(model), torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LiteRTDetector(RawOutputDetector):
    """A TF Lite SSD file (Google's detect.tflite) in LiteRT, one image per invoke."""

    backend = "litert"

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        from ..extras import require
        from ..weights.tflite import DETECTION_POSTPROCESS, read_tflite
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
        return self.own(images) if own else super().detections(images, pp)


#: The runners of exported detectors by file format; our weights and TF Lite files also load into PyTorch.
_EXPORTED = {"onnx": OnnxDetector, "pte": ExecuTorchDetector}


def open_detector(weights: Any, runtime: str = "torch", *, postprocess: str | None = None, threads: int | None = None) -> Any:
    """A detector to run: ``runtime="torch"`` loads weights into our model (a .tflite is imported);
    ``"litert"`` runs a TF Lite file itself in LiteRT. An exported ``.onnx`` or ``.pte`` runs in
    its own runtime (ONNX Runtime, ExecuTorch) whatever ``runtime`` says."""
    from ..formats import check_model_file, format_of

    paths = [weights] if isinstance(weights, (str, os.PathLike)) else list(weights)
    kind = format_of(paths[0]) if len(paths) == 1 else None
    if kind is not None and kind.name in _EXPORTED:
        check_model_file(paths[0])
        return _EXPORTED[kind.name](paths[0], threads=threads)
    if runtime == "litert":
        if kind is None or kind.name != "tflite":
            raise ValueError(f"--runtime litert runs one TF Lite detector file; got {' '.join(map(str, paths))}")
        from .tflite_import import is_tflite_detector

        check_model_file(paths[0])
        if not is_tflite_detector(paths[0]):
            raise ValueError(f"{paths[0]} is not an object detector (no TFLite_Detection_PostProcess op): a classifier?")
        return LiteRTDetector(paths[0], threads=threads)
    if runtime != "torch":
        raise ValueError(f"runtime={runtime!r} is not supported for detection; choose 'torch' or 'litert'")
    from .weights import load_detector

    return TorchDetector(load_detector(weights))
