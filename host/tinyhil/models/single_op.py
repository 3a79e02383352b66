"""One op configuration -> a single-op int8 .tflite.

Two model makers: "direct" writes the flatbuffer from the op configuration
(models/tflite_writer.py, milliseconds a model, no TensorFlow), "converter"
builds the Keras layer and runs the TFLite converter (about half a second a
model, in worker processes); the converter's models are the reference the
direct writer is tested against. Models are cached by maker and op key in
.tinyhil/models/, so an op shared by several search spaces is generated
(and measured) once.
"""
from __future__ import annotations

import hashlib
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tinyhil.children import die_with_parent
from tinyhil.errors import TinyhilError
from tinyhil.files import atomic_write, checksum_problem, write_checksum
from tinyhil.project import cache_dir
from tinyhil.spaces import ops
from tinyhil.spaces.ops import OpConfig

if TYPE_CHECKING:
    from tinyhil.models.tflite_model import TfliteModel

# The builtin op each op type must convert to, alone.
BUILTIN = {
    ops.CONV: "CONV_2D",
    ops.DEPTHWISE: "DEPTHWISE_CONV_2D",
    ops.DENSE: "FULLY_CONNECTED",
    ops.ADD: "ADD",
    ops.MAX_POOL: "MAX_POOL_2D",
    ops.AVG_POOL: "AVERAGE_POOL_2D",
    ops.SOFTMAX: "SOFTMAX",
    ops.RESHAPE: "RESHAPE",
    ops.GLOBAL_AVG_POOL: "MEAN",
}
REPRESENTATIVE_SAMPLES = 16
DIRECT, CONVERTER = "direct", "converter"
MODEL_MAKERS = (DIRECT, CONVERTER)


def op_seed(op: OpConfig) -> int:
    return int.from_bytes(hashlib.sha256(op.key.encode()).digest()[:4], "little")


def check_model_maker(maker: str) -> str:
    if maker not in MODEL_MAKERS:
        raise TinyhilError(f"unknown model maker {maker!r}: one of {', '.join(MODEL_MAKERS)}")
    return maker


def model_path(key: str) -> Path:
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return cache_dir() / "models" / digest[:2] / f"{digest}.tflite"


def keras_layer(op: OpConfig, layers=None):
    """The Keras layer the op stands for (int8 conversion turns it into BUILTIN[op.op]).
    `layers`: the module to take it from (default Keras 3; tf_keras for QAT)."""
    if layers is None:
        import tensorflow as tf

        layers = tf.keras.layers
    activation = None if op.activation == "none" else op.activation
    if op.op == ops.CONV:
        return layers.Conv2D(op.filters, op.kernel, op.strides, op.padding, activation=activation)
    if op.op == ops.DEPTHWISE:
        return layers.DepthwiseConv2D(op.kernel, op.strides, op.padding, activation=activation)
    if op.op == ops.DENSE:
        return layers.Dense(op.filters, activation=activation)
    if op.op == ops.ADD:
        return layers.Add()
    if op.op == ops.MAX_POOL:
        return layers.MaxPooling2D(op.kernel, op.strides, op.padding)
    if op.op == ops.AVG_POOL:
        return layers.AveragePooling2D(op.kernel, op.strides, op.padding)
    if op.op == ops.SOFTMAX:
        return layers.Softmax()
    if op.op == ops.RESHAPE:
        return layers.Reshape(op.output_shape)
    if op.op == ops.GLOBAL_AVG_POOL:
        return layers.GlobalAveragePooling2D()
    raise TinyhilError(f"no Keras layer for op type {op.op}")  # pragma: no cover


def keras_model(op: OpConfig):
    """A Keras model holding exactly the layer the op stands for."""
    import tensorflow as tf

    from tinyhil.models.tflite_writer import input_names

    # A fixed batch of 1 keeps shapes static: Reshape stays one RESHAPE op.
    # an add gets two tensors, so two quantizations, as in a real network.
    # Named inputs: the converter orders the graph's inputs by their names'
    # fingerprints (see tflite_writer.input_names), and Keras' default names
    # count up over the process, so an ADD would read them swapped or not
    # depending on what the worker converted before.
    inputs = [tf.keras.layers.Input(op.input_shape, batch_size=1, name=name)
              for name in input_names(op.n_inputs)]
    x = keras_layer(op)(inputs if op.n_inputs > 1 else inputs[0])
    if tuple(x.shape[1:]) != tuple(op.output_shape):
        raise TinyhilError(f"{op.key}: Keras gives output {tuple(x.shape[1:])}, expected {op.output_shape}")
    return tf.keras.Model(inputs, x)


def representative_samples(op: OpConfig) -> list[np.ndarray]:
    """The calibration inputs of the op's model, one batch per input tensor
    (both makers calibrate on these)."""
    rng = np.random.default_rng(op_seed(op))
    shape = (REPRESENTATIVE_SAMPLES, *op.input_shape)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(op.n_inputs)]


def write_op(op: OpConfig) -> bytes:
    """The op's model written directly (see models/tflite_writer.py)."""
    from tinyhil.models.tflite_writer import write_op as write

    return write(op, representative_samples(op), op_seed(op))


def convert_op(op: OpConfig) -> bytes:
    """Keras layer -> full-integer int8 flatbuffer, checked to hold the one op."""
    import tensorflow as tf

    from tinyhil.models.convert import to_int8_tflite
    from tinyhil.models.kernel_path import operands_in_graph_order
    from tinyhil.models.tflite_model import TfliteModel

    tf.keras.utils.set_random_seed(op_seed(op) % (2**31))
    model = keras_model(op)
    samples = representative_samples(op)
    representative = [tuple(s[i] for s in samples) for i in range(REPRESENTATIVE_SAMPLES)]
    flatbuffer = to_int8_tflite(model, representative)
    found = TfliteModel.from_bytes(flatbuffer, op.key.replace("/", "_")).ops
    if found != (BUILTIN[op.op],):
        raise TinyhilError(f"{op.key}: converted to {found}, expected the single op {BUILTIN[op.op]}")
    if not operands_in_graph_order(flatbuffer):  # the direct writer and the LUTs assume this order
        raise TinyhilError(f"{op.key}: the converter ordered the model's inputs otherwise than the op "
                           "reads them (its order of input names changed? see tflite_writer.input_names)")
    return flatbuffer


def _generate(key: str, make: Callable, arg) -> tuple[str, str]:
    path = model_path(key)
    if not path.exists() or checksum_problem(path):
        flatbuffer = make(arg)
        write_checksum(path, flatbuffer)  # checked whenever the cached model is used again
        atomic_write(path, flatbuffer)  # a cached model is always whole
    return key, str(path)


def cached_models(keys, repaired: list[str] | None = None) -> dict[str, Path]:
    """The cached models of these keys that pass their check; one that fails it
    is removed (to be made again), its path named in `repaired`."""
    paths = {}
    for key in keys:
        path = model_path(key)
        if not path.exists():
            continue
        problem = checksum_problem(path) or _swapped_inputs(key, path)
        if problem is None:
            paths[key] = path
            continue
        if repaired is not None:
            repaired.append(f"cached model {path} failed its check ({problem}): made again")
        path.unlink(missing_ok=True)
    return paths


def _swapped_inputs(key: str, path: Path) -> str | None:
    """A two-input model converted before its inputs were named (see
    keras_model) may read them swapped: it is made again. Only those models
    are read, so a warm cache of thousands of models is not slowed down."""
    from tinyhil.models.kernel_path import operands_in_graph_order

    if not key.removeprefix(f"{DIRECT}/").startswith(f"{ops.ADD}/"):
        return None
    return None if operands_in_graph_order(path.read_bytes()) else "its inputs are read swapped"


def _quiet_worker(parent_pid: int | None = None) -> None:
    """Workers convert in silence (the converter prints a lot); their
    exceptions still reach the parent. They die with it, even if it is killed."""
    die_with_parent(parent_pid)
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    import warnings

    warnings.filterwarnings("ignore")
    import tensorflow as tf  # noqa: F401  (imported once per worker)


def _cache_key(key: str, maker: str) -> str:
    # converter models keep the keys they were cached under before the direct writer
    return key if maker == CONVERTER else f"{DIRECT}/{key}"


def generate_models(op_list: Iterable[OpConfig], workers: int | None = None,
                    on_done: Callable[[OpConfig], None] | None = None,
                    maker: str = DIRECT, repaired: list[str] | None = None) -> dict[str, Path]:
    """Makes (or finds cached) single-op models; returns op key -> .tflite path.
    A cached model that fails its check is made again and named in `repaired`."""
    check_model_maker(maker)
    op_list = list(op_list)
    result: dict[str, Path] = {}
    for used in MODEL_MAKERS:  # an op type the writer lacks is converted, whatever `maker` says
        group = [op for op in op_list if model_maker_for(op, maker) == used]
        if not group:
            continue
        make = {DIRECT: write_op, CONVERTER: convert_op}[used]
        jobs = {_cache_key(op.key, used): (make, op) for op in group}
        paths = _run_jobs(jobs, workers, on_done, in_process=used == DIRECT, repaired=repaired)
        result.update({jobs[key][1].key: path for key, path in paths.items()})
    return result


def model_maker_for(op: OpConfig, maker: str) -> str:
    """`maker`, unless the direct writer does not know the op's type (then the converter)."""
    from tinyhil.models.tflite_writer import WRITTEN_OPS

    return DIRECT if maker == DIRECT and op.op in WRITTEN_OPS else CONVERTER


@dataclass(frozen=True)
class PreparedModel:
    """An op's model, read and checked, with the host interpreter's output for
    the op's seeded input: all a measurement needs from the host beforehand."""

    op: OpConfig
    path: Path
    model: TfliteModel
    reference: bytes  # the host interpreter's output for seeded_bytes(op_seed(op), ...)


def prepare_model(op: OpConfig, maker: str = DIRECT) -> PreparedModel:
    """The op's model made (or found cached), read, and run on the host."""
    from tinyhil.models.tflite_model import TfliteModel
    from tinyhil.protocol import seeded_bytes

    used = model_maker_for(op, maker)
    make = write_op if used == DIRECT else convert_op
    path = Path(_generate(_cache_key(op.key, used), make, op)[1])
    model = TfliteModel.from_bytes(path.read_bytes(), op.key)
    return PreparedModel(op, path, model, model.reference_output(seeded_bytes(op_seed(op), model.input_bytes)))


def _prepare_chunk(op_list: list[OpConfig]) -> tuple[list[PreparedModel], float]:
    """In a worker: the chunk's models prepared, and the seconds it took."""
    import time

    started = time.monotonic()
    return [prepare_model(op) for op in op_list], time.monotonic() - started


def _preparing_worker(parent_pid: int) -> None:
    """A worker that makes direct models: dies with tinyhil, one BLAS thread
    (small matrices: more threads cost more in hand-over than they save).

    Not by PR_SET_PDEATHSIG: the kernel sends that signal when the *thread*
    that started the process ends, and these workers start from whichever
    thread takes the first models (the runner's packing thread, which ends
    before tinyhil does). A worker killed so, in the middle of handing back a
    result or of saying it is done, held the pool's result lock for ever and
    tinyhil hung at exit. A watcher thread ends the worker once its parent
    process is gone instead."""
    import threading

    from threadpoolctl import threadpool_limits

    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=_end_with_parent, args=(parent_pid,), name="tinyhil-parent-watch",
                     daemon=True).start()
    global _blas_limit
    _blas_limit = threadpool_limits(limits=1, user_api="blas")


def _end_with_parent(parent_pid: int, every_s: float = 0.2) -> None:
    import time

    while os.getppid() == parent_pid:
        time.sleep(every_s)
    os._exit(1)


_blas_limit = None  # a worker's BLAS limit, held for its life


PREPARE_WORKERS = 2  # processes; each keeps the models of CHUNK_OPS ops a task
CHUNK_OPS = 8


def prepare_direct_models(op_list: Iterable[OpConfig], workers: int = PREPARE_WORKERS,
                          on_seconds: Callable[[float], None] | None = None) -> Iterator[PreparedModel]:
    """The ops' models prepared (prepare_model) in worker processes, yielded in
    the ops' order as they come: the making, the reading and the host
    interpreter's run take no time from the process that measures (nor its
    GIL). A few chunks per worker are made ahead, no more (a caller that takes
    them slowly holds few in memory). `on_seconds` hears the seconds each
    chunk took in its worker. workers=0 prepares them here, one at a time."""
    op_list = list(op_list)
    chunks = [op_list[i:i + CHUNK_OPS] for i in range(0, len(op_list), CHUNK_OPS)]
    if workers <= 0 or len(chunks) <= 1:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            for chunk in chunks:
                prepared, seconds = _prepare_chunk(chunk)
                if on_seconds:
                    on_seconds(seconds)
                yield from prepared
        return
    from collections import deque

    context = multiprocessing.get_context("spawn")  # a converter fallback may import TF: no fork
    pending: deque = deque()
    remaining = iter(chunks)
    ahead = 3 * workers

    def submit_ahead() -> None:
        while len(pending) < ahead and (chunk := next(remaining, None)) is not None:
            pending.append(pool.submit(_prepare_chunk, chunk))

    with _script_not_rerun():  # the workers start with the first tasks
        pool = ProcessPoolExecutor(min(workers, len(chunks)), mp_context=context,
                                   initializer=_preparing_worker, initargs=(os.getpid(),))
        submit_ahead()
    try:
        while True:
            submit_ahead()
            if not pending:
                return
            prepared, seconds = pending.popleft().result()
            if on_seconds:
                on_seconds(seconds)
            yield from prepared
    except BaseException:  # failed, or the caller stopped taking them (Ctrl-C): no new chunk starts
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)  # all taken: the workers are idle and end at once


def generate_chain_models(lengths: Iterable[int], maker: str = DIRECT,
                          repaired: list[str] | None = None) -> dict[int, Path]:
    """The overhead chains (see chain_model), cached like the op models."""
    make = {DIRECT: write_chain, CONVERTER: chain_model}[check_model_maker(maker)]
    jobs = {_cache_key(f"chain/{n}", maker): (make, n) for n in lengths}
    paths = _run_jobs(jobs, None, None, in_process=maker == DIRECT, repaired=repaired)
    return {jobs[key][1]: path for key, path in paths.items()}


def _run_jobs(jobs: dict[str, tuple[Callable, object]], workers: int | None,
              on_done: Callable | None, in_process: bool = False,
              repaired: list[str] | None = None) -> dict[str, Path]:
    paths = cached_models(jobs, repaired)
    if on_done:
        for key in paths:
            on_done(jobs[key][1])
    todo = [key for key in jobs if key not in paths]
    if not todo:
        return paths
    if in_process:  # milliseconds a model: a process pool would only add its start-up
        from threadpoolctl import threadpool_limits

        # Small matrices: BLAS threads cost more in hand-over than they save (4x on 2 cores)
        with threadpool_limits(limits=1, user_api="blas"):
            for key in todo:
                paths[key] = Path(_generate(key, *jobs[key])[1])
                if on_done:
                    on_done(jobs[key][1])
        return paths
    workers = workers or max(1, min(len(todo), os.cpu_count() or 1))
    context = multiprocessing.get_context("spawn")  # TF must not be forked
    with _script_not_rerun(), ProcessPoolExecutor(workers, mp_context=context, initializer=_quiet_worker,
                                                  initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(_generate, key, *jobs[key]): key for key in todo}
        for future in as_completed(futures):
            key, path = future.result()
            paths[key] = Path(path)
            if on_done:
                on_done(jobs[key][1])
    return paths


@contextmanager
def _script_not_rerun():
    """A spawned worker re-runs the parent's __main__ script unless it is guarded
    by `if __name__ == "__main__"`; the seeds' walk-throughs are plain scripts
    (a search that measures ops on demand would start itself again in every
    worker). The workers need only tinyhil's functions, so the script's path
    is hidden from multiprocessing while they start."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def chain_samples(length: int) -> np.ndarray:
    return np.random.default_rng(length).standard_normal(
        (REPRESENTATIVE_SAMPLES, 1, 1, 1)).astype(np.float32)


def write_chain(length: int) -> bytes:
    """The chain of chain_model written directly."""
    from tinyhil.models.tflite_writer import write_chain as write

    return write(length, chain_samples(length), length)


def chain_model(length: int) -> bytes:
    """`length` tiny 1x1 convolutions in a row: their totals, less their
    profiled kernels, give the interpreter's per-invoke and per-op overheads."""
    import tensorflow as tf

    from tinyhil.models.convert import to_int8_tflite

    tf.keras.utils.set_random_seed(length)
    layers = tf.keras.layers
    inputs = layers.Input((1, 1, 1), batch_size=1)
    x = inputs
    for _ in range(length):
        x = layers.Conv2D(1, 1)(x)
    return to_int8_tflite(tf.keras.Model(inputs, x), list(chain_samples(length)))
