"""A cluster is closed by default: a worker runs whatever its scheduler sends.

Addresses are Dask's: `tls://HOST:PORT` with a CA, a certificate and its key
(PEM files, as `distributed.Security` takes them: every party's certificate
signed by the lab's CA, and each checks the others'), or `tcp://HOST:PORT`,
unencrypted and unauthenticated, which tinyhil accepts only on the loopback
interface unless told `--insecure`.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from tinyhil.errors import TinyhilError


class ClusterError(TinyhilError):
    """The cluster cannot be used: its address, its security, its workers, or its scheduler went away."""


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the lab's CA certificate
    cert: Path  # this party's certificate (signed by the CA)
    key: Path  # its private key

    def check(self) -> None:
        for what, path in (("CA certificate", self.ca), ("certificate", self.cert), ("key", self.key)):
            if not Path(path).is_file():
                raise ClusterError(f"TLS {what} {path}: no such file")


def tls_files(ca: Path | None, cert: Path | None, key: Path | None) -> TlsFiles | None:
    """The three files given together, or none of them."""
    given = [x for x in (ca, cert, key) if x]
    if not given:
        return None
    if len(given) != 3:
        raise ClusterError("TLS needs all three of --tls-ca-file, --tls-cert and --tls-key")
    files = TlsFiles(Path(ca), Path(cert), Path(key))
    files.check()
    return files


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_address(address: str, tls: TlsFiles | None, insecure: bool = False, what: str = "scheduler") -> str:
    """The address as Dask takes it; refused where it would be open to the network."""
    scheme, _, rest = address.rpartition("://")
    scheme = scheme or "tcp"
    if scheme not in ("tcp", "tls"):
        raise ClusterError(f"{what} address {address!r}: use tls://HOST:PORT (or tcp:// on loopback)")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"{what} address {address!r}: expected {scheme}://HOST:PORT")
    if scheme == "tls" and tls is None:
        raise ClusterError(f"{what} address {address}: tls:// needs --tls-ca-file, --tls-cert and --tls-key")
    if scheme == "tcp" and tls is not None:
        raise ClusterError(f"{what} address {address}: TLS files were given, use tls://{rest}")
    if scheme == "tcp" and not loopback(host) and not insecure:
        raise ClusterError(
            f"refusing the unencrypted {what} address {address}: a worker runs whatever the scheduler "
            f"sends, so a cluster beyond this host is closed by default: use tls://{rest} with "
            "--tls-ca-file, --tls-cert and --tls-key (see the README's lab section), or pass --insecure "
            "on a network you trust")
    return f"{scheme}://{rest}"


def security(tls: TlsFiles | None, role: str):
    """distributed.Security for a client or a worker (None: plain tcp on loopback)."""
    if tls is None:
        return None
    from distributed import Security

    if role == "client":
        return Security(tls_ca_file=str(tls.ca), tls_client_cert=str(tls.cert), tls_client_key=str(tls.key),
                        require_encryption=True)
    if role == "worker":
        return Security(tls_ca_file=str(tls.ca), tls_worker_cert=str(tls.cert), tls_worker_key=str(tls.key),
                        require_encryption=True)
    raise ValueError(role)
