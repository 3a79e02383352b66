"""`tinyhil worker` (a Dask worker owning this host's boards), and the
`--cluster` options the measuring commands share."""
from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import typer

from tinyhil.cli import app, console, err_console, options, reports_errors

CLUSTER = typer.Option(None, "--cluster", help="run the jobs on a Dask cluster of `tinyhil worker`s, e.g. "
                       "tls://lab:8786 (tcp:// on loopback only, unless --insecure); default: this host")
TLS_CA = typer.Option(None, "--tls-ca-file", help="the lab's CA certificate (PEM), for tls:// addresses")
TLS_CERT = typer.Option(None, "--tls-cert", help="this party's certificate (PEM, signed by the CA)")
TLS_KEY = typer.Option(None, "--tls-key", help="its private key (PEM)")
INSECURE = typer.Option(False, "--insecure", help="allow an unencrypted tcp:// address beyond loopback")
BUILD_HERE = typer.Option(False, "--build-here", help="with --cluster: build the images on this host and "
                          "ship them to the workers (same firmware fingerprint required)")


@contextlib.contextmanager
def cluster_executor(address: str | None, ca: Path | None, cert: Path | None, key: Path | None,
                     insecure: bool = False, build_here: bool = False):
    """The Dask executor of `--cluster ADDRESS` (closed on exit), or None: this host."""
    from tinyhil.execute.security import tls_files

    tls = tls_files(ca, cert, key)
    if not address:
        if tls or insecure or build_here:
            raise typer.BadParameter("TLS files, --insecure and --build-here go with --cluster")
        yield None
        return
    from tinyhil.execute.cluster import DaskExecutor

    with DaskExecutor(address, tls, insecure, build_here=build_here) as executor:
        yield executor


@app.command()
@reports_errors
def worker(
    scheduler: str = typer.Option(..., help="the Dask scheduler, e.g. tls://lab:8786 or tcp://127.0.0.1:8786"),
    inventory: Path = typer.Option(None, help="this host's boards (YAML, as `tinyhil regress --inventory`)"),
    boards: str = typer.Option(None, help="emulated boards instead of an inventory, e.g. qemu-m4=2,qemu-m33=1"),
    name: str = typer.Option(None, help="the worker's name [default: HOST-PID]"),
    tls_ca_file: Path = TLS_CA, tls_cert: Path = TLS_CERT, tls_key: Path = TLS_KEY, insecure: bool = INSECURE,
    checks: bool = typer.Option(True, help="check the tools the boards need first (`tinyhil doctor "
                                "--no-probe --no-tflm` for them)"),
    timeout: str = options.timeout(),
    local_directory: Path = typer.Option(None, help="Dask's scratch directory [default: Dask's]"),
    wait: str = options.wait(),
) -> None:
    """Join a Dask cluster as a worker that owns this host's boards (one Dask
    resource per board: qemu-m4=2, nucleo_f446re=1) and measures the jobs sent to it."""
    import os

    from tinyhil.execute.inventory import board_counts, load_inventory, with_wait
    from tinyhil.execute.security import check_address, security, tls_files
    from tinyhil.execute.worker import serve

    if bool(inventory) == bool(boards):
        raise typer.BadParameter("give either --inventory lab.yaml or --boards ENV=COUNT")
    tls = tls_files(tls_ca_file, tls_cert, tls_key)
    address = check_address(scheduler, tls, insecure)
    timeout_s = options.seconds(timeout, "--timeout")
    wait_s = options.seconds(wait, "--wait", allow_zero=True)
    farm = with_wait(load_inventory(inventory), wait_s) if inventory else board_counts(boards)
    if checks:
        from tinyhil.doctor import failed, run_checks

        configs = list({b.config.name: b.config for b in farm}.values())
        bad = failed(list(run_checks(configs, probe=False, tflm=False)))
        if bad:
            err_console.print("[bold red]this host cannot run its boards:[/] " + "; ".join(
                f"{c.what}: {c.fix}" for c in bad), highlight=False)
            raise typer.Exit(1)
    name = name or f"{socket.gethostname()}-{os.getpid()}"

    def ready(worker_address: str, description: dict) -> None:
        lanes = {}
        for b in description["boards"]:
            lanes[b["lane"]] = lanes.get(b["lane"], 0) + 1
        console.print(f"worker {name} at {worker_address} joined {address}: "
                      + ", ".join(f"{lane}={n}" for lane, n in sorted(lanes.items()))
                      + "; firmware " + ", ".join(f"{env} {fp}" for env, fp in sorted(description["firmware"].items())),
                      highlight=False)

    serve(address, farm, name, security(tls, "worker"), local_directory, timeout_s, ready)
