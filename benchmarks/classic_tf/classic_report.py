"""The pure parts of ``benchmarks/classic_tf.py``: rows, the acceptance bounds of issue 15
(quanta against TensorFlow's own file of the same variant) and the Markdown tables.

No TensorFlow, no LiteRT, no files: tested in ``tests/benchmarks/test_classic_tf.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Issue 15's acceptance, quanta's file against TensorFlow's of the same variant.
MAX_SIZE_RATIO = 1.02
MAX_LATENCY_RATIO = 1.05
MIN_ACCURACY_DIFF_PP = -0.1


@dataclass
class Row:
    """One ``.tflite`` variant: who made it, from what, and what LiteRT measured on it.

    ``status`` is ``"ok"`` or the one line that made the variant fail (the CLI's own error);
    a failed row has no figures.
    """

    name: str
    tool: str
    source: str
    status: str = "ok"
    size_bytes: int | None = None
    accuracy: float | None = None  # top-1, in [0, 1]
    latency_ms: dict[int, float] = field(default_factory=dict)  # batch -> p50 ms
    fidelity: dict[str, float] = field(default_factory=dict)  # output -> mean cosine
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["latency_ms"] = {str(k): v for k, v in sorted(self.latency_ms.items())}
        return d


@dataclass(frozen=True)
class Pair:
    """quanta's variant against TensorFlow's: ratios quanta / TensorFlow, and the bounds."""

    label: str
    ours: Row
    theirs: Row
    bounded: bool = True  # False where the weights differ (QAT): ratios shown, no verdict

    def size_ratio(self) -> float | None:
        if not (self.ours.ok and self.theirs.ok):
            return None
        return self.ours.size_bytes / self.theirs.size_bytes  # type: ignore[operator]

    def latency_ratio(self, batch: int) -> float | None:
        a, b = self.ours.latency_ms.get(batch), self.theirs.latency_ms.get(batch)
        if not (self.ours.ok and self.theirs.ok) or a is None or b is None:
            return None
        return a / b

    def accuracy_diff_pp(self) -> float | None:
        a, b = self.ours.accuracy, self.theirs.accuracy
        if not (self.ours.ok and self.theirs.ok) or a is None or b is None:
            return None
        return 100 * (a - b)

    def verdicts(self) -> tuple[str, str, str]:
        """(size, batch-1 latency, accuracy): "pass", "FAIL", "n/a" (unbounded) or "–"."""
        if not self.bounded:
            return ("n/a", "n/a", "n/a")
        size, lat, acc = self.size_ratio(), self.latency_ratio(1), self.accuracy_diff_pp()
        return (
            _verdict(size, lambda v: v <= MAX_SIZE_RATIO),
            _verdict(lat, lambda v: v <= MAX_LATENCY_RATIO),
            _verdict(acc, lambda v: v >= MIN_ACCURACY_DIFF_PP),
        )


def _verdict(value: float | None, good) -> str:  # type: ignore[no-untyped-def]
    if value is None:
        return "–"
    # NOTE: rounded first, so that 97.90 % against 98.00 % (-0.1 pp, -0.10000000000000009 in
    # floating point) is on the bound, not past it
    return "pass" if good(round(value, 9)) else "FAIL"


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _status(row: Row) -> str:
    return "ok" if row.ok else row.status.replace("|", "\\|")


def variants_table(rows: list[Row], batches: tuple[int, ...]) -> list[str]:
    """Table 1a: every variant with its figures (or why it has none)."""
    head = "| variant | made by | from | size | accuracy | " + " | ".join(
        f"batch {b} ms" for b in batches
    )
    lines = [head + " | status |", "|---|---|---|---:|---:|" + "---:|" * len(batches) + "---|"]
    for r in rows:
        acc = None if r.accuracy is None else 100 * r.accuracy
        size = "–" if r.size_bytes is None else f"{r.size_bytes:,} B"
        lats = " | ".join(_num(r.latency_ms.get(b), ".3f") for b in batches)
        note = f" ({r.note})" if r.note else ""
        lines.append(
            f"| {r.name}{note} | {r.tool} | {r.source} | {size} | {_num(acc, '.2f')} % | "
            f"{lats} | {_status(r)} |"
        )
    return lines


def pairs_table(pairs: list[Pair]) -> list[str]:
    """Table 1b: quanta / TensorFlow per variant, with issue 15's bounds as pass/fail."""
    lines = [
        "| variant | quanta | TensorFlow | size ratio | batch-1 latency ratio | "
        "batch-256 latency ratio | accuracy diff (pp) | size ≤ 1.02× | latency ≤ 1.05× | "
        "accuracy ≥ TF − 0.1 pp |",
        "|---|---|---|---:|---:|---:|---:|---|---|---|",
    ]
    for p in pairs:
        size_v, lat_v, acc_v = p.verdicts()
        lines.append(
            f"| {p.label} | {p.ours.name} | {p.theirs.name} | {_num(p.size_ratio(), '.3f')} | "
            f"{_num(p.latency_ratio(1), '.3f')} | {_num(p.latency_ratio(256), '.3f')} | "
            f"{_num(p.accuracy_diff_pp(), '+.2f')} | {size_v} | {lat_v} | {acc_v} |"
        )
    return lines


def real_table(models: dict[str, list[Row]]) -> list[str]:
    """Table 2: per real model, float and each int8 variant: fidelity to float, size, batch-1
    latency and the speed-up over float."""
    lines = [
        "| model | variant | size | size vs float | fidelity: mean cosine per output "
        "(worst) | batch-1 ms | speed-up vs float | status |",
        "|---|---|---:|---:|---|---:|---:|---|",
    ]
    for model, rows in models.items():
        base = rows[0]
        for r in rows:
            size = "–" if r.size_bytes is None else f"{r.size_bytes:,} B"
            shrink = (
                f"{base.size_bytes / r.size_bytes:.2f}× smaller"
                if r is not base and r.ok and base.ok and r.size_bytes and base.size_bytes
                else "–"
            )
            fid = "–"
            if r.fidelity:
                parts = ", ".join(f"{k} {v:.4f}" for k, v in r.fidelity.items())
                fid = f"{parts} (**{min(r.fidelity.values()):.4f}**)"
            lat = r.latency_ms.get(1)
            base_lat = base.latency_ms.get(1)
            speed = f"{base_lat / lat:.2f}×" if r.ok and lat and base_lat and r is not base else "–"
            lines.append(
                f"| {model} | {r.name} | {size} | {shrink} | {fid} | {_num(lat, '.3f')} | "
                f"{speed} | {_status(r)} |"
            )
    return lines


def failure_line(returncode: int, stderr: str) -> str:
    """The one line that says why a step failed: the CLI's ``quanta: error: ...`` line where
    there is one, else the last non-empty line of its stderr, with the exit code."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("quanta: error:")]
    text = errors[-1] if errors else (lines[-1] if lines else "no message")
    if len(text) > 300:
        text = text[:297] + "..."
    return f"exit {returncode}: {text}"
