"""The MicroNAS paper's data sets from small files in their published layouts."""
import numpy as np
import pytest

from tinyhil.nas import data as datasets
from tinyhil.nas.har_data import SKODA_NULL, UCI_SIGNALS


def write_uci(root, part, subjects, rng):
    """`part` windows of 128 samples: signal i of window n is n + i/10 (checkable)."""
    folder = root / "UCI HAR Dataset" / part
    (folder / "Inertial Signals").mkdir(parents=True)
    n = len(subjects)
    for i, name in enumerate(UCI_SIGNALS):
        values = np.arange(n)[:, None] + i / 10 + np.zeros((n, 128))
        np.savetxt(folder / "Inertial Signals" / f"{name}_{part}.txt", values, fmt="%.4f")
    labels = rng.integers(1, 7, n)
    labels[:6] = np.arange(1, 7)  # every class present
    np.savetxt(folder / f"y_{part}.txt", labels, fmt="%d")
    np.savetxt(folder / f"subject_{part}.txt", subjects, fmt="%d")
    return labels


def test_uci_har_keeps_the_official_split_and_validates_on_whole_subjects(tmp_path):
    rng = np.random.default_rng(0)
    train_subjects = np.repeat([1, 3, 5, 6, 7], 8)  # last fifth of 5 subjects: subject 7
    write_uci(tmp_path, "train", train_subjects, rng)
    test_labels = write_uci(tmp_path, "test", np.repeat([2, 4], 6), rng)
    splits = datasets.load(f"uci_har:{tmp_path}")
    assert (splits.window, splits.channels, splits.classes) == (128, 9, 6)
    assert (len(splits.x_train), len(splits.x_val), len(splits.x_test)) == (32, 8, 12)
    assert splits.y_test.tolist() == (test_labels - 1).tolist()
    # channel order as published: body_acc xyz, body_gyro xyz, total_acc xyz (values n + i/10),
    # standardized with the training windows' statistics
    raw_train = np.arange(32)[:, None] + np.arange(9)[None, :] / 10
    centre, spread = raw_train.mean(axis=0), raw_train.std(axis=0)
    raw_val = np.arange(32, 40)[:, None] + np.arange(9)[None, :] / 10
    assert np.allclose(splits.x_val[:, 0, :], (raw_val - centre) / spread, atol=1e-4)


def test_uci_har_errors_name_the_missing_file(tmp_path):
    write_uci(tmp_path, "train", np.ones(6, int), np.random.default_rng(0))
    with pytest.raises(datasets.DataError, match="body_acc_x_test.txt: missing"):
        datasets.load(f"uci_har:{tmp_path}")


def write_skoda(path, labels, rng):
    from scipy.io import savemat

    rows = np.zeros((len(labels), 1 + 7 * 10))
    rows[:, 0] = labels
    for s in range(10):
        rows[:, 1 + s * 7] = s  # sensor id
        rows[:, 2 + s * 7: 5 + s * 7] = rng.normal(100 * s, 10, (len(labels), 3))  # calibrated
        rows[:, 5 + s * 7: 8 + s * 7] = -1  # raw: not used
    savemat(path, {"right_classall_clean": rows})


def test_skodar_mat_windows_split_in_time(tmp_path):
    rng = np.random.default_rng(0)
    # 3200 samples in blocks of 64: gestures 48..57 and the null class
    labels = np.repeat(np.resize(np.r_[48:58, SKODA_NULL], 50), 64)
    write_skoda(tmp_path / "right_classall_clean.mat", labels, rng)
    splits = datasets.load(f"skodar:{tmp_path}")
    assert (splits.window, splits.channels, splits.classes) == (64, 30, 11)
    # half-overlapping windows ((3200 - 64) / 32 + 1 = 99), minus the two that
    # straddle a split boundary (at samples 1920 and 2560)
    assert (len(splits.y_train), len(splits.y_val), len(splits.y_test)) == (59, 19, 19)
    no_null = datasets.load(f"skodar-no-null:{tmp_path / 'right_classall_clean.mat'}")
    assert no_null.classes == 10
    assert len(no_null.y_train) + len(no_null.y_val) + len(no_null.y_test) < 97
    assert abs(float(splits.x_train.mean())) < 1e-3  # standardized on the training windows
    assert np.all(splits.x_train.std(axis=(0, 1)) > 0.9)  # all 30 channels are calibrated signals


def test_skodar_npz_layout_and_its_errors(tmp_path):
    rng = np.random.default_rng(0)
    parts = {f"x_{p}": rng.normal(size=(n, 64, 30)) for p, n in (("train", 20), ("val", 6), ("test", 6))}
    parts |= {f"y_{p}": np.arange(n) % 4 for p, n in (("train", 20), ("val", 6), ("test", 6))}
    np.savez(tmp_path / "skoda.npz", **parts)
    splits = datasets.load(f"skodar:{tmp_path / 'skoda.npz'}")
    assert (len(splits.x_train), len(splits.x_val), splits.classes) == (20, 6, 4)
    del parts["y_val"]
    np.savez(tmp_path / "bad.npz", **parts)
    with pytest.raises(datasets.DataError, match=r"missing \['y_val'\]"):
        datasets.load(f"skodar:{tmp_path / 'bad.npz'}")
