"""Realistic images for the OCR models: text lines, document pages, click-CAPTCHA photos.

Text comes from standard-library docstrings, glyphs from matplotlib's DejaVu fonts, backgrounds
from the sample photos; every choice is drawn from a seeded generator.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from sources import fonts


def _font(rng: np.random.Generator, size: int) -> ImageFont.FreeTypeFont:
    all_fonts = fonts()
    return ImageFont.truetype(str(all_fonts[int(rng.integers(len(all_fonts)))]), size)


def _ink(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 90, 3))  # type: ignore[return-value]


def _paper(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(200, 256, 3))  # type: ignore[return-value]


def fragments(sentences: list[str], rng: np.random.Generator, count: int) -> list[str]:
    """``count`` runs of 1-4 consecutive words (4-28 characters) cut from ``sentences``."""
    out: list[str] = []
    while len(out) < count:
        words = sentences[int(rng.integers(len(sentences)))].split()
        n = int(rng.integers(1, 5))
        start = int(rng.integers(max(1, len(words) - n + 1)))
        text = " ".join(words[start : start + n])
        if 4 <= len(text) <= 28:
            out.append(text)
    return out


def text_line(text: str, rng: np.random.Generator) -> np.ndarray:
    """A tight crop (RGB uint8) of one line of text, as a text detector would cut it out."""
    font = _font(rng, int(rng.integers(20, 44)))
    left, top, right, bottom = font.getbbox(text)
    pad_x, pad_y = int(rng.integers(2, 10)), int(rng.integers(2, 8))
    img = Image.new("RGB", (right - left + 2 * pad_x, bottom - top + 2 * pad_y), _paper(rng))
    ImageDraw.Draw(img).text((pad_x - left, pad_y - top), text, font=font, fill=_ink(rng))
    return np.asarray(img)


def page(
    sentences: list[str],
    photos: list[np.ndarray],
    rng: np.random.Generator,
    size: tuple[int, int],
) -> np.ndarray:
    """A (H, W, 3) uint8 page: lines of text on paper or on a photo (scene text)."""
    h, w = size
    if photos and rng.random() < 0.5:
        photo = photos[int(rng.integers(len(photos)))]
        ph, pw, _ = photo.shape
        side = min(ph, pw)
        y, x = int(rng.integers(ph - side + 1)), int(rng.integers(pw - side + 1))
        crop = Image.fromarray(photo[y : y + side, x : x + side]).resize((w, h), Image.BILINEAR)
        img = Image.blend(crop, Image.new("RGB", (w, h), (255, 255, 255)), 0.5)
    else:
        img = Image.new("RGB", (w, h), _paper(rng))
    draw = ImageDraw.Draw(img)
    y = int(rng.integers(8, 40))
    while y < h - 40:
        font = _font(rng, int(rng.integers(16, 40)))
        text = " ".join(fragments(sentences, rng, 2))
        x = int(rng.integers(8, max(9, w // 4)))
        draw.text((x, y), text, font=font, fill=_ink(rng))
        y += int(font.size * rng.uniform(1.3, 2.5))
    return np.asarray(img)


def click_captcha(
    photo: np.ndarray, rng: np.random.Generator, size: int = 320
) -> tuple[np.ndarray, int]:
    """A photo crop with 3-6 large glyphs scattered on it, as click CAPTCHAs draw them."""
    ph, pw, _ = photo.shape
    side = min(ph, pw)
    y, x = int(rng.integers(ph - side + 1)), int(rng.integers(pw - side + 1))
    img = Image.fromarray(photo[y : y + side, x : x + side]).resize((size, size), Image.BILINEAR)
    count = int(rng.integers(3, 7))
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabdefghkmnqrt2345678&#@%"
    for _ in range(count):
        glyph = alphabet[int(rng.integers(len(alphabet)))]
        font = _font(rng, int(rng.integers(28, 48)))
        tile = Image.new("RGBA", (font.size * 2, font.size * 2), (0, 0, 0, 0))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3)) + (255,)
        ImageDraw.Draw(tile).text(
            (font.size // 2, font.size // 4), glyph, font=font, fill=colour, stroke_width=1
        )
        tile = tile.rotate(float(rng.uniform(-40, 40)), resample=Image.BILINEAR)
        pos = (int(rng.integers(0, size - tile.width)), int(rng.integers(0, size - tile.height)))
        img.paste(tile, pos, tile)
    return np.asarray(img), count
