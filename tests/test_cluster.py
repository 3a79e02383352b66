"""A lab on Dask, on loopback: a scheduler and `tinyhil worker`s as processes of
their own (each with its own working directory, image cache and emulated
board), the test process as the client and only writer. Every process is
started and stopped here (LoopbackCluster), bounded in time."""
import ipaddress
import json
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT
from tinyhil.board_catalog import get_board
from tinyhil.execute.security import ClusterError, TlsFiles, check_address, loopback, tls_files
from tinyhil.spaces import make_space

pytestmark = pytest.mark.timeout(1500)

SPACE = ("micronas", 29, 12, 9)  # MicroNAS on JapaneseVowels' shape: 415 ops


def test_addresses_are_closed_by_default(tmp_path):
    assert check_address("tcp://127.0.0.1:8786", None) == "tcp://127.0.0.1:8786"
    assert check_address("localhost:8786", None) == "tcp://localhost:8786"
    assert loopback("::1") and loopback("127.3.2.1") and not loopback("10.0.0.5") and not loopback("lab")
    with pytest.raises(ClusterError, match="refusing the unencrypted scheduler address tcp://10.0.0.5:8786.*tls://"):
        check_address("tcp://10.0.0.5:8786", None)
    assert check_address("tcp://10.0.0.5:8786", None, insecure=True) == "tcp://10.0.0.5:8786"
    with pytest.raises(ClusterError, match="tls:// needs --tls-ca-file"):
        check_address("tls://lab:8786", None)
    files = [tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem")]
    for f in files:
        f.write_text("x")
    tls = tls_files(*files)
    assert check_address("tls://lab:8786", tls) == "tls://lab:8786"
    with pytest.raises(ClusterError, match="use tls://lab:8786"):
        check_address("tcp://lab:8786", tls)
    with pytest.raises(ClusterError, match="all three"):
        tls_files(files[0], None, files[2])
    with pytest.raises(ClusterError, match="no such file"):
        tls_files(files[0], files[1], tmp_path / "missing.pem")


def test_worker_refuses_an_open_address_before_anything_starts():
    from typer.testing import CliRunner

    from tinyhil.cli import app

    result = CliRunner().invoke(app, ["worker", "--scheduler", "tcp://192.0.2.7:8786", "--boards", "qemu-m4=1"])
    assert result.exit_code == 2 and "refusing the unencrypted" in result.output


# ---- on emulated boards ------------------------------------------------------------

def characterize(luts: Path, executor=None, limit=None, per_image=100):
    from tinyhil.measure.characterize import Characterizer

    space, window, channels, classes = SPACE
    return Characterizer(get_board("qemu-m4"), luts, max_per_image=per_image, executor=executor).run(
        space, window, channels, classes, limit)


def store_keys(luts: Path) -> list[str]:
    import csv

    with open(luts / "qemu-m4" / "ops.csv") as f:
        return [row["key"] for row in csv.DictReader(f)]


def table_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.fixture(scope="module")
def local_lut(tmp_path_factory):
    """The whole space measured on one local board: what every cluster run must equal."""
    luts = tmp_path_factory.mktemp("local") / "luts"
    result = characterize(luts)
    assert result.measured_now == 415 and not result.timing.skipped
    return result.lut_path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from tinyhil.execute.cluster import DaskExecutor
    from tinyhil.execute.loopback import LoopbackCluster

    with LoopbackCluster(tmp_path_factory.mktemp("lab")) as lab:
        lab.start_scheduler()
        lab.add_worker("w1")
        lab.add_worker("w2")
        with DaskExecutor(lab.address) as executor:
            yield lab, executor


@pytest.mark.device
@pytest.mark.slow
def test_a_whole_lut_on_two_workers_is_byte_identical_to_a_local_run(tmp_path, local_lut, cluster):
    lab, executor = cluster
    result = characterize(tmp_path / "luts", executor)
    assert result.measured_now == 415 and not result.timing.skipped and not result.timing.flagged
    assert result.lut_path.read_bytes() == local_lut.read_bytes()  # rows, order and every figure
    meta = {k: v for k, v in json.loads(result.lut_path.with_suffix(".meta.json").read_text()).items()
            if k != "created"}
    local_meta = json.loads(local_lut.with_suffix(".meta.json").read_text())
    assert meta == {k: v for k, v in local_meta.items() if k != "created"}  # overheads and firmware too
    boards = set(executor.stats.jobs_by_board)
    assert boards == {"w1/qemu-m4-0", "w2/qemu-m4-0"}, boards  # both workers measured
    assert sorted(store_keys(tmp_path / "luts")) == sorted(set(store_keys(tmp_path / "luts")))


@pytest.mark.device
@pytest.mark.slow
def test_regress_on_the_cluster_gives_the_local_verdicts_and_history(tmp_path, local_lut, cluster):
    from tinyhil.execute.inventory import emulated_farm
    from tinyhil.regress.nightly import regress
    from tinyhil.regress.suite import parse_suite

    lab, executor = cluster
    baseline = tmp_path / "baseline"
    (baseline / "qemu-m4").mkdir(parents=True)
    for suffix in (".csv", ".meta.json"):
        shutil.copy(local_lut.with_suffix(suffix), baseline / "qemu-m4")
    suite = parse_suite({"name": "cluster", "repeats": 1, "per_image": 3, "lut_sample": 10,
                         "deployments": ""}, "suite")
    local = regress(emulated_farm("qemu-m4", 2), suite, baseline, tmp_path / "local", trend=False)
    remote = regress(executor.farm_boards(), suite, baseline, tmp_path / "remote", trend=False,
                     executor=executor)
    columns = ["environment", "case", "kind", "metric", "baseline", "measured", "tolerance", "verdict", "detail"]

    def figures(result):
        return sorted(map(tuple, result.rows[columns].astype(str).to_numpy()))

    assert set(local.rows["verdict"]) == {"pass"} and not local.failed
    assert figures(remote) == figures(local) and not remote.failed
    assert len(remote.rows) == 20  # 10 cases, cycles and arena each
    assert set(remote.rows["farm_board"]) <= {"w1/qemu-m4-0", "w2/qemu-m4-0"}


@pytest.mark.device
def test_an_item_delivered_twice_is_recorded_once(tmp_path, cluster):
    """The same ops in two jobs (as when a job is run again elsewhere): one row each."""
    from tinyhil.measure.characterize import Characterizer
    from tinyhil.measure.runner import Item
    from tinyhil.models.single_op import op_seed, prepare_direct_models
    from tinyhil.models.tflite_model import TfliteModel

    lab, executor = cluster
    ops = make_space(*SPACE).op_configs()[:3]
    items = [Item(f"op-{n}", TfliteModel.from_bytes(path.read_bytes(), op.key), op_seed(op), op)
             for n, (op, path) in enumerate(((m.op, m.path) for m in prepare_direct_models(ops, workers=0)))]
    characterizer = Characterizer(get_board("qemu-m4"), tmp_path / "luts", max_per_image=3, executor=executor)
    characterizer.measure_items(items + [Item(f"again-{i.name}", i.model, i.seed, i.subject) for i in items])
    assert sum(executor.stats.cases_by_board.values()) == 6  # both jobs delivered ...
    assert sorted(store_keys(tmp_path / "luts")) == sorted(op.key for op in ops)  # ... each op written once


@pytest.mark.device
@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(tmp_path, local_lut):
    from tinyhil.execute.cluster import DaskExecutor
    from tinyhil.execute.loopback import LoopbackCluster

    limit = 200
    with LoopbackCluster(tmp_path / "lab") as lab:
        lab.start_scheduler()
        lab.add_worker("w1")
        lab.add_worker("w2")
        with DaskExecutor(lab.address) as executor:
            killed = []

            def kill_a_busy_worker() -> None:
                """SIGKILL the worker of a job under way, once the first rows are written."""
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline and not killed:
                    store = tmp_path / "luts" / "qemu-m4" / "ops.csv"
                    if store.is_file() and len(store.read_text().splitlines()) > 2:
                        names = {a: w["name"] for a, w in executor.client.scheduler_info()["workers"].items()}
                        busy = [names[a] for a, keys in executor.client.processing().items() if keys]
                        if busy:
                            lab.kill_worker(busy[0])
                            killed.append(busy[0])
                            return
                    time.sleep(0.2)

            watcher = threading.Thread(target=kill_a_busy_worker)
            watcher.start()
            result = characterize(tmp_path / "luts", executor, limit=limit, per_image=25)
            watcher.join()
    assert killed, "no worker was busy to kill"
    survivor = {"w1", "w2"} - set(killed)
    keys = store_keys(tmp_path / "luts")
    assert len(keys) == len(set(keys)) == limit  # nothing lost, nothing twice
    assert result.measured_now == limit and not result.timing.skipped
    # the killed worker's job was run again by the other one; every row as a local run measures it
    assert any(board.startswith(next(iter(survivor))) for board in executor.stats.jobs_by_board)
    assert set(table_lines(result.lut_path)) <= set(table_lines(local_lut))


@pytest.mark.device
@pytest.mark.slow
def test_the_scheduler_going_away_ends_the_run_keeping_what_was_measured(tmp_path, local_lut):
    from tinyhil.execute.cluster import DaskExecutor
    from tinyhil.execute.loopback import LoopbackCluster

    limit = 150
    with LoopbackCluster(tmp_path / "lab") as lab:
        lab.start_scheduler()
        lab.add_worker("w1")
        with DaskExecutor(lab.address) as executor:
            def stop_the_scheduler() -> None:
                store = tmp_path / "luts" / "qemu-m4" / "ops.csv"
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline:
                    if store.is_file() and len(store.read_text().splitlines()) > 2:
                        lab.stop_scheduler(signal.SIGKILL)
                        return
                    time.sleep(0.1)

            watcher = threading.Thread(target=stop_the_scheduler)
            watcher.start()
            with pytest.raises(ClusterError, match="scheduler at tcp://127.0.0.1:\\d+ went away.*kept.*again"):
                characterize(tmp_path / "luts", executor, limit=limit, per_image=20)
            watcher.join()
    kept = store_keys(tmp_path / "luts")
    assert 0 < len(kept) < limit
    result = characterize(tmp_path / "luts", limit=limit, per_image=20)  # resumed here, without a cluster
    assert result.already_measured == len(kept) and result.measured_now == limit - len(kept)
    keys = store_keys(tmp_path / "luts")
    assert len(keys) == len(set(keys)) == limit
    assert set(table_lines(result.lut_path)) <= set(table_lines(local_lut))


def _project_copy_with_another_flag(dest: Path) -> Path:
    for part in ("firmware", "boards", "host/tinyhil/image/templates"):
        shutil.copytree(ROOT / part, dest / part, symlinks=True)
    (dest / ".pio").mkdir()
    (dest / ".pio" / "core").symlink_to(ROOT / ".pio" / "core")  # PlatformIO's packages, as installed here
    text = (ROOT / "platformio.ini").read_text()
    assert "-DTINYHIL_ARENA_BYTES=3145728" in text
    (dest / "platformio.ini").write_text(text.replace("-DTINYHIL_ARENA_BYTES=3145728", "-DTINYHIL_ARENA_BYTES=3145600"))
    return dest


@pytest.mark.device  # the workers fingerprint the TFLM tree
def test_a_lane_whose_workers_build_different_firmware_is_refused(tmp_path):
    from tinyhil.execute.cluster import DaskExecutor
    from tinyhil.execute.loopback import LoopbackCluster
    from tinyhil.image.firmware import tflm_dir

    other = _project_copy_with_another_flag(tmp_path / "other-checkout")
    with LoopbackCluster(tmp_path / "lab") as lab:
        lab.start_scheduler()
        lab.add_worker("same")
        lab.add_worker("changed", env={"TINYHIL_PROJECT_DIR": str(other), "TINYHIL_TFLM_DIR": str(tflm_dir())})
        with DaskExecutor(lab.address) as executor:
            with pytest.raises(ClusterError, match="workers of qemu-m4 would build different firmware: "
                                                   "changed [0-9a-f]{16}, same [0-9a-f]{16}"):
                characterize(tmp_path / "luts", executor, limit=4)
    assert not (tmp_path / "luts" / "qemu-m4" / "ops.csv").exists()  # nothing measured, nothing written


def _make_tls(directory: Path) -> tuple[TlsFiles, TlsFiles]:
    """A lab CA and two certificates it signs (scheduler, worker+client), as the README's lab section does."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem, key, cert):
        (directory / f"{stem}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("tinyhil lab CA")).issuer_name(name("tinyhil lab CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    write("ca", ca_key, ca)
    out = []
    for stem in ("scheduler", "member"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(stem)).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        write(stem, key, cert)
        out.append(TlsFiles(directory / "ca.pem", directory / f"{stem}.pem", directory / f"{stem}.key"))
    return out[0], out[1]


@pytest.mark.device
def test_a_tls_cluster_measures_and_refuses_clients_without_the_labs_certificate(tmp_path):
    from tinyhil.execute.cluster import DaskExecutor
    from tinyhil.execute.loopback import LoopbackCluster

    (tmp_path / "pki").mkdir()
    scheduler_tls, member_tls = _make_tls(tmp_path / "pki")
    with LoopbackCluster(tmp_path / "lab") as lab:
        address = lab.start_scheduler(scheduler_tls)
        assert address.startswith("tls://127.0.0.1:")
        lab.add_worker("w1", tls=member_tls)
        with pytest.raises(ClusterError, match="tls:// needs"):
            DaskExecutor(address)
        with pytest.raises(ClusterError, match="cannot reach the Dask scheduler"):
            DaskExecutor(address.replace("tls://", "tcp://"), connect_s=5)  # it speaks TLS only
        with DaskExecutor(address, member_tls) as executor:
            result = characterize(tmp_path / "luts", executor, limit=6)
    assert result.measured_now == 6
    assert sorted(store_keys(tmp_path / "luts")) == sorted(op.key for op in make_space(*SPACE).op_configs()[:6])


@pytest.mark.device
@pytest.mark.slow
def test_the_commands_run_on_the_cluster(tmp_path, local_lut, cluster):
    """characterize, regress and validate with --cluster: the local figures, written here."""
    import pandas as pd
    import yaml
    from typer.testing import CliRunner

    from tinyhil.cli import app

    lab, _ = cluster
    run = CliRunner().invoke
    space = ["--space", "micronas", "--input", "29x12"]
    result = run(app, ["characterize", *space, "--classes", "9", "--luts", str(tmp_path / "luts"),
                       "--limit", "40", "--per-image", "10", "--cluster", lab.address])
    assert result.exit_code == 0, result.output
    lut = tmp_path / "luts" / "qemu-m4" / "micronas-29x12-c9.csv"
    assert len(table_lines(lut)) == 41 and set(table_lines(lut)) <= set(table_lines(local_lut))

    (tmp_path / "suite.yaml").write_text(yaml.safe_dump({"name": "cli", "repeats": 1, "per_image": 2,
                                                         "lut_sample": 4, "deployments": ""}))
    result = run(app, ["regress", "--suite", str(tmp_path / "suite.yaml"), "--baseline", str(local_lut.parent.parent),
                       "--out", str(tmp_path / "regress"), "--cluster", lab.address])
    assert result.exit_code == 0, result.output
    history = pd.read_csv(tmp_path / "regress" / "history.csv")
    assert set(history["verdict"]) == {"pass"} and len(history) == 8
    assert set(history["farm_board"]) <= {"w1/qemu-m4-0", "w2/qemu-m4-0"}

    tables = {}
    for where, extra in (("local", []), ("cluster", ["--cluster", lab.address])):
        result = run(app, ["validate", *space, "--classes", "9", "--n", "2", "--luts", str(local_lut.parent.parent),
                           "--out", str(tmp_path / where), *extra])
        assert result.exit_code == 0, result.output
        tables[where] = pd.read_csv(tmp_path / where / "validation-micronas-29x12-c9-qemu-m4.csv")
    columns = ["arch_id", "status", "measured_cycles", "arena_used", "est_lut_cycles"]
    assert tables["cluster"][columns].equals(tables["local"][columns])


@pytest.mark.device
def test_images_built_by_the_client_run_on_the_workers(tmp_path, local_lut, cluster):
    """--build-here: the client builds each image and ships it; a worker whose firmware
    is the same installs it and boots it, building nothing."""
    from tinyhil.execute.cluster import DaskExecutor

    lab, _ = cluster
    started = time.time()
    with DaskExecutor(lab.address, build_here=True) as executor:
        result = characterize(tmp_path / "luts", executor, limit=12, per_image=5)
        jobs = len(executor.stats.reports)
    assert result.measured_now == 12 and set(table_lines(result.lut_path)) <= set(table_lines(local_lut))
    arrived = [elf.parent for w in ("w1", "w2") for elf in (lab.work_dir / w / "cache" / "images").rglob("firmware.elf")
               if elf.stat().st_mtime >= started]
    assert len(arrived) == jobs  # one shipped image per job (the chains' and three of ops) ...
    built = [d for d in arrived if (d / "build.log").exists() and (d / "build.log").stat().st_mtime >= started]
    assert not built  # ... none of them built by a worker (an image built by an earlier test keeps its log)


@pytest.mark.device
@pytest.mark.slow
def test_a_lane_whose_last_worker_died_ends_the_run_keeping_what_was_measured(tmp_path, local_lut):
    from tinyhil.execute.cluster import DaskExecutor
    from tinyhil.execute.loopback import LoopbackCluster

    with LoopbackCluster(tmp_path / "lab") as lab:
        lab.start_scheduler()
        lab.add_worker("only")
        with DaskExecutor(lab.address, workers_wait_s=5) as executor:
            def kill_it() -> None:
                store = tmp_path / "luts" / "qemu-m4" / "ops.csv"
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline:
                    if store.is_file() and len(store.read_text().splitlines()) > 2:
                        lab.kill_worker("only")
                        return
                    time.sleep(0.1)

            watcher = threading.Thread(target=kill_it)
            watcher.start()
            with pytest.raises(ClusterError, match="no worker with a board of qemu-m4 is left in the cluster at "
                                                   "tcp://127.0.0.1:\\d+ \\(none joined within 5 s\\).*kept"):
                characterize(tmp_path / "luts", executor, limit=120, per_image=20)
            watcher.join()
    kept = store_keys(tmp_path / "luts")
    assert 0 < len(kept) < 120 and len(kept) == len(set(kept))
    assert set(table_lines(characterize(tmp_path / "luts", limit=120, per_image=20).lut_path)) <= set(
        table_lines(local_lut))  # and a local run completes it
