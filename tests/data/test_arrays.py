"""load_npz: the good file, and one DataError per way an npz can be wrong."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from quanta.data import load_npz
from quanta.errors import DataError


def save(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)


def test_good_file_with_labels(tmp_path: Path, x: np.ndarray) -> None:
    path = save(tmp_path / "c.npz", image=x, labels=np.array([3, 1, 4, 1], np.uint8))
    inputs, labels = load_npz(path, input_names=["image"])
    assert list(inputs) == ["image"]
    np.testing.assert_array_equal(inputs["image"], x)
    assert inputs["image"].dtype == np.float32
    assert labels is not None and labels.dtype == np.int64
    assert labels.tolist() == [3, 1, 4, 1]


def test_good_file_without_labels_and_names(tmp_path: Path, x: np.ndarray) -> None:
    mask = np.ones((4, 7), np.int64)
    inputs, labels = load_npz(str(save(tmp_path / "c.npz", b=x, a=mask)))
    assert list(inputs) == ["b", "a"]  # file order
    assert labels is None


def test_input_names_order_is_kept(tmp_path: Path, x: np.ndarray) -> None:
    path = save(tmp_path / "c.npz", a=x, b=x[:, 0])
    inputs, _ = load_npz(path, input_names=("b", "a"))
    assert list(inputs) == ["b", "a"]


def test_missing_input_names_missing_and_present(tmp_path: Path, x: np.ndarray) -> None:
    path = save(tmp_path / "c.npz", img=x, mask=x, labels=np.zeros(4, np.int64))
    with pytest.raises(DataError, match=r"lacks the model input\(s\) \['image'\]; it holds \["):
        load_npz(path, input_names=["image"])
    with pytest.raises(DataError, match=r"\['img', 'mask'\].*'labels'"):
        load_npz(path, input_names=["image"])


def test_one_input_takes_the_only_array_whatever_its_key(tmp_path: Path, x: np.ndarray) -> None:
    path = save(tmp_path / "c.npz", arr_0=x, labels=np.zeros(4, np.int64))
    notes: list[str] = []
    inputs, labels = load_npz(path, input_names=["image"], on_note=notes.append)
    assert list(inputs) == ["image"] and np.array_equal(inputs["image"], x)
    assert labels is not None
    assert notes == [
        f"{str(path)!r} holds one array, 'arr_0': fed to the model's only input 'image'"
    ]
    # with two inputs, which array feeds which is not known: still an error
    with pytest.raises(DataError, match=r"lacks the model input\(s\) \['a', 'b'\]"):
        load_npz(path, input_names=["a", "b"])


def test_extra_key(tmp_path: Path, x: np.ndarray) -> None:
    path = save(tmp_path / "c.npz", image=x, scale=np.ones(4, np.float32))
    with pytest.raises(DataError, match=r"unexpected key\(s\) \['scale'\]"):
        load_npz(path, input_names=["image"])


def test_nan_and_inf_are_counted(tmp_path: Path, x: np.ndarray) -> None:
    x = x.copy()
    x[0, 0, 0, :3] = np.nan
    x[1, 0, 5, 5] = -np.inf
    with pytest.raises(DataError, match=r"'image' holds 4 NaN or Inf value\(s\) out of 3136"):
        load_npz(save(tmp_path / "c.npz", image=x))


def test_mismatched_sample_counts(tmp_path: Path, x: np.ndarray) -> None:
    path = save(tmp_path / "c.npz", image=x, extra=np.zeros((3, 2), np.float32))
    with pytest.raises(DataError, match=r"disagree .*'image': 4, 'extra': 3"):
        load_npz(path)
    path = save(tmp_path / "d.npz", image=x, labels=np.zeros(5, np.int64))
    with pytest.raises(DataError, match=r"'image': 4, 'labels': 5"):
        load_npz(path)


def test_zero_samples(tmp_path: Path) -> None:
    path = save(tmp_path / "c.npz", image=np.zeros((0, 1, 28, 28), np.float32))
    with pytest.raises(DataError, match=r"hold 0 samples; expected at least 1"):
        load_npz(path)


def test_no_input_arrays(tmp_path: Path) -> None:
    path = save(tmp_path / "c.npz", labels=np.zeros(3, np.int64))
    with pytest.raises(DataError, match=r"holds no input array"):
        load_npz(path)


def test_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    path.write_text("image,label\n0.1,3\n")
    with pytest.raises(DataError, match=r"is not a valid pickle-free \.npz"):
        load_npz(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"is not a valid pickle-free \.npz"):
        load_npz(path)


def test_npy_instead_of_npz(tmp_path: Path, x: np.ndarray) -> None:
    path = tmp_path / "c.npy"
    np.save(path, x)
    with pytest.raises(DataError, match=r"is a single \.npy array; expected an \.npz"):
        load_npz(path)


def test_pickled_arrays_are_refused(tmp_path: Path) -> None:
    obj = np.array([{"a": 1}, None], dtype=object)
    path = save(tmp_path / "c.npz", image=obj)
    with pytest.raises(DataError, match=r"pickle"):
        load_npz(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"'.*nope\.npz' does not exist"):
        load_npz(tmp_path / "nope.npz")


def test_scalar_and_non_numeric_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"'image' is a scalar; expected .* \(N, \.\.\.\)"):
        load_npz(save(tmp_path / "a.npz", image=np.float32(1.0)))
    with pytest.raises(DataError, match=r"'image' has dtype <U1; expected a numeric"):
        load_npz(save(tmp_path / "b.npz", image=np.array(["a", "b"])))


def test_bad_labels(tmp_path: Path, x: np.ndarray) -> None:
    path = save(tmp_path / "c.npz", image=x, labels=np.zeros(4, np.float32))
    with pytest.raises(DataError, match=r"'labels' is a float32 array .*expected integer labels"):
        load_npz(path)
    path = save(tmp_path / "d.npz", image=x, labels=np.zeros((4, 1), np.int64))
    with pytest.raises(DataError, match=r"shape \(4, 1\); expected integer labels of shape \(N,\)"):
        load_npz(path)


def test_input_named_labels_is_an_input(tmp_path: Path) -> None:
    path = save(tmp_path / "c.npz", labels=np.ones((2, 3), np.float32))
    inputs, labels = load_npz(path, input_names=["labels"])
    assert list(inputs) == ["labels"] and labels is None


def test_zip_member_that_is_not_npy(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("image", b"not an array")
    with pytest.raises(DataError, match=r"member\(s\) \['image'\] are not \.npy arrays"):
        load_npz(path)


def test_stream_reads_the_same_arrays_a_slice_at_a_time(tmp_path: Path) -> None:
    from quanta.data.arrays import NpyMember

    x = np.random.default_rng(0).random((50, 3, 4), dtype=np.float32)
    ids = np.arange(100, dtype=np.int64).reshape(50, 2)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, ids=ids, labels=np.arange(50))
    inputs, labels = load_npz(path, stream=True)
    assert isinstance(inputs["x"], NpyMember) and isinstance(inputs["ids"], NpyMember)
    assert inputs["x"].shape == x.shape and inputs["x"].dtype == x.dtype and len(inputs["x"]) == 50
    np.testing.assert_array_equal(inputs["x"][7:19], x[7:19])
    np.testing.assert_array_equal(inputs["ids"][45:60], ids[45:])
    np.testing.assert_array_equal(np.asarray(inputs["x"]), x)
    assert labels is not None and labels.tolist() == list(range(50))


def test_stream_still_refuses_nan_and_loads_compressed_whole(tmp_path: Path) -> None:
    from quanta.data.arrays import NpyMember

    x = np.ones((3000, 8), np.float32)
    x[2999, 7] = np.nan  # in the last chunk
    path = tmp_path / "d.npz"
    np.savez(path, x=x)
    with pytest.raises(DataError, match="1 NaN or Inf"):
        load_npz(path, stream=True)
    packed = tmp_path / "z.npz"
    np.savez_compressed(packed, x=np.ones((4, 2), np.float32))
    inputs, _ = load_npz(packed, stream=True)
    assert not isinstance(inputs["x"], NpyMember)
