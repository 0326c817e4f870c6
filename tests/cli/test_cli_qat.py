"""``quanta qat``: ``--checkpoint``/``--resume`` give the uninterrupted run's bytes, and
``--nproc 2``: two ranks launched by torch's elastic launcher (gloo, CPU) on a tiny
MNIST directory, rank 0 writing the model once, against the same command in one process.

LeNet has dropout, whose masks each rank draws for its own share, so the two runs are not the
same computation, and Adam moves every weight by about the learning rate whatever the gradient's
size, so a gradient whose sign differs moves a weight by twice that. With 2 steps at 1e-6 the
stated tolerance is one int8 step on the weights (>= 95 % identical) and 10 % on the activation
scales. The exact equivalence without dropout is tested in
tests/qat/test_qat_ddp.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from conftest import write_mnist_dir
from quanta.cli.main import main
from quanta.models import LeNet, save_checkpoint
from quanta.runtime import make_session


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qat_nproc")
    write_mnist_dir(root, n_train=128, n_test=32)
    torch.manual_seed(0)
    save_checkpoint(LeNet(), root / "lenet.pt")
    return {"root": root, "ckpt": root / "lenet.pt"}


# The two runs below are each what several tests start from; they are made once per module.


@pytest.fixture(scope="module")
def plain(setup: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one-process model (no ``--nproc``) that the launched runs are compared with."""
    out = tmp_path_factory.mktemp("plain") / "plain.onnx"
    assert main(_qat(setup, out)) == 0
    return out


@pytest.fixture(scope="module")
def epoch1(setup: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The training state ``--checkpoint`` writes after one epoch (tests copy it: a resume
    replaces it)."""
    folder = tmp_path_factory.mktemp("epoch1")
    state = folder / "s.pt"
    assert main(_qat(setup, folder / "first.onnx", "--checkpoint", str(state))) == 0
    return state


def _qat(setup: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["qat", "--from-lenet", str(setup["ckpt"]), "--data", str(setup["root"]), "-o",
            str(out), "--epochs", "1", "--quant-delay", "1", "--learning-rate", "1e-6",
            *extra]  # fmt: skip


def _inits(path: Path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}


def test_two_ranks_write_one_model_close_to_one_process(
    setup: dict[str, Path], plain: Path, tmp_path: Path
) -> None:
    one, two = plain, tmp_path / "two.onnx"
    env_before = dict(os.environ)
    assert main(_qat(setup, two, "--nproc", "2")) == 0
    assert dict(os.environ) == env_before  # the launch leaves this process's environment alone
    # no temp files, from either run
    assert [p.name for p in tmp_path.iterdir()] == ["two.onnx"]
    assert [p.name for p in one.parent.iterdir()] == ["plain.onnx"]
    a, b = _inits(one), _inits(two)
    assert a.keys() == b.keys()
    for name, value in a.items():
        if value.dtype == np.int8 and value.size > 1:
            diff = np.abs(value.astype(np.int32) - b[name].astype(np.int32))
            assert diff.max() <= 1 and (diff == 0).mean() >= 0.95, name
        elif value.dtype == np.float32 and value.size == 1:
            np.testing.assert_allclose(b[name], value, rtol=0.1, err_msg=name)
    images = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    logits = make_session(two.read_bytes()).run(None, {"image": images})[0]
    assert logits.shape == (4, 10) and np.isfinite(logits).all()


def test_nproc_one_runs_in_this_process(
    setup: dict[str, Path], plain: Path, tmp_path: Path
) -> None:
    nproc1 = tmp_path / "nproc1.onnx"
    assert main(_qat(setup, nproc1, "--nproc", "1")) == 0
    assert plain.read_bytes() == nproc1.read_bytes()


@pytest.mark.parametrize(
    ("extra", "env", "message"),
    [
        (["--nproc", "0"], {}, "--nproc must be >= 1"),
        (["--nproc", "2"], {"WORLD_SIZE": "2"}, "under torchrun leave it out"),
    ],
)
def test_bad_nproc_is_one_line(
    setup: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(_qat(setup, tmp_path / "out.onnx", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not list(tmp_path.iterdir())


def test_resume_from_a_checkpoint_gives_the_same_model(
    setup: dict[str, Path], epoch1: Path, tmp_path: Path
) -> None:
    straight, resumed, state = (
        tmp_path / "straight.onnx",
        tmp_path / "resumed.onnx",
        tmp_path / "s.pt",
    )
    two_epochs = ["--epochs", "2"]
    assert main(_qat(setup, straight) + two_epochs) == 0
    shutil.copyfile(epoch1, state)  # what `--checkpoint s.pt` wrote after epoch 1
    assert main(_qat(setup, resumed, "--resume", str(state), "--checkpoint", str(state))
                + two_epochs) == 0  # fmt: skip
    assert resumed.read_bytes() == straight.read_bytes()


def test_bad_resume_is_one_line(
    setup: dict[str, Path], epoch1: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "s.pt"
    shutil.copyfile(epoch1, state)  # a checkpoint after epoch 1
    cases = {
        "already holds 1 epoch": ["--resume", str(state)],  # --epochs 1: nothing left
        "not a training checkpoint": ["--resume", str(setup["ckpt"]), "--epochs", "2"],
        "exists; pass --force": ["--checkpoint", str(state), "--epochs", "2"],
    }
    for message, extra in cases.items():
        out = tmp_path / "b.onnx"
        before = state.read_bytes()
        assert main(_qat(setup, out, *extra)) == 2, message
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
        assert not out.exists() and state.read_bytes() == before
