"""SHA-256 of the models quanta writes, to check that a refactoring changed no byte.

Trains LeNet once (1 epoch, seed 0) into ``--work`` (kept between runs, so "before" and "after"
quantize the same float model), then writes LeNet static, dynamic, QAT (1 epoch) and, when
``benchmarks/real_models/prepare.py`` has made it, MobileNetV2 static, each with default flags,
and their TFLite exports, and prints one hash per model. Run it on the commit before a change
and after it: equal hashes mean the change kept the behaviour. The hashes depend on the CPU
(``--weight-range auto``) and the ONNX Runtime version, so compare runs on one machine only.

    python benchmarks/model_hashes.py [--work DIR] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
QUANTA = [sys.executable, "-m", "quanta"]
REAL = Path(os.environ.get("QUANTA_REAL_MODELS", HERE / "real_models" / ".cache"))


def _quanta(*args: str) -> None:
    subprocess.run([*QUANTA, *args, "--force"], check=True, stdout=subprocess.DEVNULL)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/quanta-hashes"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    lenet = work / "lenet.onnx"
    if not lenet.exists():
        _quanta("train", "-o", str(lenet), "--epochs", "1")
    runs = {
        "lenet_static": ["quantize", str(lenet), "--mode", "static"],
        "lenet_dynamic": ["quantize", str(lenet), "--mode", "dynamic"],
        "lenet_qat": ["qat", "--from-lenet", str(work / "lenet.pt"), "--epochs", "1"],
    }
    mobilenet = REAL / "mobilenetv2.onnx"
    if mobilenet.exists():
        calib = str(REAL / "mobilenetv2_calib.npz")
        runs["mobilenetv2_static"] = ["quantize", str(mobilenet), "--calibration", calib]
    else:
        print(f"skipped MobileNetV2: {mobilenet} is missing (run real_models/prepare.py)")
    # TFLite exports of the int8 models: (source model, calibration for the float logits).
    exports = {"lenet_static": "mnist", "lenet_qat": "mnist"}
    if "mobilenetv2_static" in runs:
        exports["mobilenetv2_static"] = str(REAL / "mobilenetv2_calib.npz")
    hashes = {}
    for name, argv in runs.items():
        out = work / f"{name}.onnx"
        _quanta(*argv, "-o", str(out))
        hashes[name] = _sha(out)
        print(f"{name:24s} {hashes[name]}")
        if name in exports:
            tfl = work / f"{name}.tflite"
            _quanta("export-tflite", str(out), "-o", str(tfl), "--calibration", exports[name])
            hashes[f"{name}_tflite"] = _sha(tfl)
            print(f"{name + '_tflite':24s} {hashes[name + '_tflite']}")
    if args.json:
        args.json.write_text(json.dumps(hashes, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
