"""Our tflite-int8 SSD against Google's detect.tflite, side by side in one run.

1. COCO AP on coco128 (pycocotools): Google's file and our int8 export of it (the ranges Google's
   file was trained with), each under its own TFLite_Detection_PostProcess op in LiteRT, and under
   our `coco` post-processing of the raw outputs.
2. Latency of one invoke (batch 1, uint8 300x300 input, post-processing op included) at 1 and 2
   threads, the files interleaved round by round; medians and our/Google ratio.
3. Per photo end to end (decode the photo, resize, run, post-process): `mobilenet detect`'s path
   (`mobilenet.detection.detect`) with our PyTorch model and with our int8 file in LiteRT, against
   LiteRT running Google's file with the same photo decoding; interleaved, medians.

    python benchmarks/detector_export.py [--rounds 30] [--photos 32]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _common import REFERENCE, SHARED

from mobilenet.bench import cpu_description
from mobilenet.detection import detect, evaluate_detector
from mobilenet.detection.data import load_input, read_coco
from mobilenet.detection.export import export_detector
from mobilenet.detection.runtime import LiteRTDetector, TorchDetector
from mobilenet.detection.weights import load_detector

DETECT = REFERENCE / "detection" / "detect.tflite"
COCO = SHARED / "data" / "coco128" / "annotations" / "instances_train2017.json"


def accuracy(files: dict[str, Path]) -> None:
    for pp in ("tflite", "coco"):
        for name, path in files.items():
            r = evaluate_detector(LiteRTDetector(path, threads=2), COCO, postprocess=pp)
            print(f"AP  {pp:<6} {name:<22} AP {r['map']:.4f}  AP50 {r['map_50']:.4f}  AP75 {r['map_75']:.4f}")


def invoke_latency(files: dict[str, Path], rounds: int) -> None:
    from ai_edge_litert.interpreter import Interpreter

    image = load_input(REFERENCE / "detection" / "pets.jpg", 300)[0].permute(1, 2, 0).numpy()[None].copy()
    for threads in (1, 2):
        interpreters = {}
        for name, path in files.items():
            it = Interpreter(model_path=str(path), num_threads=threads)
            it.allocate_tensors()
            it.set_tensor(it.get_input_details()[0]["index"], image)
            it.invoke()  # warm-up
            interpreters[name] = it
        times: dict[str, list[float]] = {name: [] for name in files}
        for _ in range(rounds):
            for name, it in interpreters.items():
                start = time.perf_counter()
                it.invoke()
                times[name].append(time.perf_counter() - start)
        med = {name: statistics.median(t) * 1e3 for name, t in times.items()}
        google = med["Google detect.tflite"]
        print(
            f"invoke, {threads} thread(s): " + "; ".join(f"{name} {ms:.1f} ms ({ms / google:.2f}x)" for name, ms in med.items())
        )


def end_to_end(ours_int8: Path, photos: list[Path], rounds: int) -> None:
    from ai_edge_litert.interpreter import Interpreter

    torch.set_num_threads(2)
    torch_runner = TorchDetector(load_detector(DETECT))
    lite_runner = LiteRTDetector(ours_int8, threads=2)
    google = Interpreter(model_path=str(DETECT), num_threads=2)
    google.allocate_tensors()
    index = google.get_input_details()[0]["index"]
    outputs = [d["index"] for d in google.get_output_details()]

    def google_end_to_end(photo: Path) -> None:
        pixels, _ = load_input(photo, 300)
        google.set_tensor(index, pixels.permute(1, 2, 0).numpy()[None].copy())
        google.invoke()
        [google.get_tensor(i) for i in outputs]

    runs = {
        "Google's file, LiteRT": google_end_to_end,
        "mobilenet detect, ours int8 LiteRT": lambda p: detect(lite_runner, [p], postprocess="tflite"),
        "mobilenet detect, PyTorch": lambda p: detect(torch_runner, [p]),
    }
    for run in runs.values():
        run(photos[0])  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(max(1, rounds // 10)):
        for photo in photos:
            for name, run in runs.items():
                start = time.perf_counter()
                run(photo)
                times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    base = med["Google's file, LiteRT"]
    print(
        f"per photo end to end, 2 threads, {len(photos)} photos: "
        + "; ".join(f"{name} {ms:.1f} ms ({ms / base:.2f}x)" for name, ms in med.items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--photos", type=int, default=32)
    args = parser.parse_args()
    print(f"cpu: {cpu_description()}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}")
    with tempfile.TemporaryDirectory() as tmp:
        ours, summary = export_detector(DETECT, Path(tmp) / "detect.int8.tflite", "tflite-int8")
        print(summary)
        files = {"Google detect.tflite": DETECT, "ours tflite-int8": ours}
        accuracy(files)
        invoke_latency(files, args.rounds)
        photos = read_coco(COCO).files[: args.photos]
        end_to_end(ours, photos, args.rounds)


if __name__ == "__main__":
    main()
