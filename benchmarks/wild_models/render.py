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


def document(
    sentences: list[str],
    photos: list[np.ndarray],
    rng: np.random.Generator,
    size: tuple[int, int],
) -> np.ndarray:
    """A (H, W, 3) uint8 document page as a layout analyser meets it: a title, paragraphs in
    one or two columns, and figures (photos) and tables (ruled grids of words), each with a
    caption below."""
    h, w = size
    img = Image.new("RGB", (w, h), _paper(rng))
    draw = ImageDraw.Draw(img)
    margin = int(w * rng.uniform(0.06, 0.1))
    title = _font(rng, int(rng.integers(30, 44)))
    y = margin
    draw.text((margin, y), " ".join(fragments(sentences, rng, 2)), font=title, fill=_ink(rng))
    y += int(title.size * 2)
    columns = int(rng.integers(1, 3))
    col_w = (w - 2 * margin - (columns - 1) * 24) // columns
    body, ink = _font(rng, int(rng.integers(14, 20))), _ink(rng)
    for col in range(columns):
        x0, cy = margin + col * (col_w + 24), y
        while cy < h - margin - 40:
            block = rng.random()
            if block < 0.25 and cy < h - margin - 220:  # a figure or a table, with a caption
                bh = int(rng.integers(120, 200))
                if rng.random() < 0.5 and photos:
                    photo = photos[int(rng.integers(len(photos)))]
                    img.paste(Image.fromarray(photo).resize((col_w, bh), Image.BILINEAR), (x0, cy))
                else:
                    rows, cols = int(rng.integers(3, 7)), int(rng.integers(2, 5))
                    for r in range(rows + 1):
                        ry = cy + r * bh // rows
                        draw.line([(x0, ry), (x0 + col_w, ry)], fill=ink)
                    for c in range(cols + 1):
                        cx = x0 + c * col_w // cols
                        draw.line([(cx, cy), (cx, cy + bh)], fill=ink)
                    for r in range(rows):
                        for c, word in enumerate(fragments(sentences, rng, cols)):
                            pos = (x0 + c * col_w // cols + 4, cy + r * bh // rows + 4)
                            draw.text(pos, word[: max(3, col_w // cols // 9)], font=body, fill=ink)
                cy += bh + 6
                caption = "Figure" if rng.random() < 0.5 else "Table"
                text = f"{caption} {int(rng.integers(1, 9))}. " + fragments(sentences, rng, 1)[0]
                draw.text((x0, cy), text, font=body, fill=ink)
                cy += int(body.size * 2.5)
            else:  # a paragraph: lines of words filling the column
                for _ in range(int(rng.integers(3, 9))):
                    line = ""
                    for word in " ".join(fragments(sentences, rng, 6)).split():
                        if body.getlength(f"{line} {word}") > col_w:
                            break
                        line = f"{line} {word}".strip()
                    draw.text((x0, cy), line, font=body, fill=ink)
                    cy += int(body.size * 1.4)
                    if cy >= h - margin - 20:
                        break
                cy += int(body.size * 1.2)
    return np.asarray(img)
