"""One module per runtime: what writes its files, runs them and reads the config inside.

- :mod:`.torch`: PyTorch (eager, compiled, bf16), TorchScript and ``torch.export`` (.pt2) files;
- :mod:`.onnxruntime`: ONNX export, its int8 (QDQ) quantization, ONNX Runtime;
- :mod:`.openvino`: OpenVINO running the ONNX export;
- :mod:`.litert`: the TF Lite writer (fp32, full-integer int8) and LiteRT;
- :mod:`.executorch`: the ExecuTorch export (XNNPACK, PT2E int8) and runtime;
- :mod:`.common`: the config an export carries and the :class:`~.common.Predictor` interface.

The format table (:mod:`mobilenet.formats`) names each format's hooks here.
"""
