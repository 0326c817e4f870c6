"""The seeded training loop, evaluation, and checkpoints that never unpickle code."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from quanta.errors import InputError, ModelError
from quanta.models import LeNet, TrainConfig, evaluate, load_checkpoint, save_checkpoint, train


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))  # (N, 10)


def _data(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 8, 8), dtype=np.float32), rng.integers(0, 10, n)


def _trained(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(123)  # same initial weights; the config's seed drives the rest
    model = _Tiny()
    images, labels = _data()
    return train(
        model, images, labels, TrainConfig(epochs=2, batch_size=16, seed=seed)
    ).state_dict()


def test_training_is_deterministic() -> None:
    a, b = _trained(seed=7), _trained(seed=7)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_another_seed_trains_differently() -> None:
    a, b = _trained(seed=7), _trained(seed=8)
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_train_reports_steps_and_returns_eval_mode() -> None:
    torch.manual_seed(0)
    model = _Tiny()
    images, labels = _data(n=40)
    seen: list[tuple[int, int]] = []
    calls: list[int] = []
    out = train(
        model, images, labels, TrainConfig(epochs=2, batch_size=16, shift=0),
        on_step=lambda s, n, loss: seen.append((s, n)), step_fn=lambda m, s: calls.append(s),
    )  # fmt: skip
    assert out is model and not model.training
    assert seen == [(s, 6) for s in range(1, 7)]  # ceil(40 / 16) = 3 steps per epoch
    assert calls == list(range(6))


def test_training_learns_a_separable_task() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 128)
    images = np.zeros((128, 1, 8, 8), np.float32)
    images[labels == 1, :, :, :4] = 1.0  # class 1: left half bright
    images[labels == 0, :, :, 4:] = 1.0  # class 0: right half bright
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    train(model, images, labels, TrainConfig(epochs=3, batch_size=16, learning_rate=1e-2, shift=0))
    assert evaluate(model, images, labels, batch_size=50) == 1.0


class _Fixed(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1)[:, :3]  # logits are the first three pixels


def test_evaluate_counts_top1() -> None:
    images = np.zeros((5, 1, 2, 2), np.float32)
    images.reshape(5, -1)[[0, 1, 2, 3, 4], [0, 1, 2, 0, 1]] = 1.0  # argmax 0, 1, 2, 0, 1
    labels = np.array([0, 1, 0, 0, 2])
    assert evaluate(_Fixed(), images, labels, batch_size=2) == pytest.approx(3 / 5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, "--epochs"),
        ({"batch_size": 0}, "batch size"),
        ({"learning_rate": 0.0}, "learning rate"),
        ({"shift": -1}, "shift"),
    ],
)
def test_train_config_rejects_bad_values(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(InputError, match=match):
        TrainConfig(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = LeNet()
    path = tmp_path / "lenet.pt"
    save_checkpoint(net, path)
    torch.manual_seed(1)
    other = LeNet()
    assert load_checkpoint(other, path) is other
    for k, v in net.state_dict().items():
        assert torch.equal(other.state_dict()[k], v), k
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.pt"]


def test_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tiny.pt"
    save_checkpoint(_Tiny(), path)
    with pytest.raises(ModelError, match="does not fit the model"):
        load_checkpoint(LeNet(), path)


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_checkpoint(_Tiny(), tmp_path / "nope.pt")


EXECUTED: list[str] = []


def _side_effect(tag: str) -> str:
    EXECUTED.append(tag)
    return tag


class _Payload:
    """Unpickling it would call ``_side_effect``: the classic malicious-pickle pattern."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_side_effect, ("unpickled",))


class _Plain:
    def __init__(self) -> None:
        self.w = torch.ones(2)


@pytest.mark.parametrize(
    "obj",
    [_Payload(), {"conv.weight": _Payload()}, _Plain(), {"w": torch.ones(1), "o": _Plain()}],
    ids=["reduce", "dict-with-reduce", "instance", "dict-with-instance"],
)
def test_pickled_objects_are_refused_without_running_code(tmp_path: Path, obj: object) -> None:
    path = tmp_path / "evil.pt"
    torch.save(obj, path)
    EXECUTED.clear()
    with pytest.raises(ModelError, match="not a weights-only PyTorch state dict"):
        load_checkpoint(_Tiny(), path)
    assert EXECUTED == []


def test_lambda_cannot_even_be_saved(tmp_path: Path) -> None:
    # a dict holding a lambda never reaches load_checkpoint: pickling it fails first
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        torch.save({"f": lambda: 0}, tmp_path / "lambda.pt")


def test_non_dict_tensor_container_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.ones(2)], path)
    with pytest.raises(ModelError, match="holds a list"):
        load_checkpoint(_Tiny(), path)


def test_garbage_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="not a weights-only"):
        load_checkpoint(_Tiny(), path)
