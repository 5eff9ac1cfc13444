"""A real coturn (Debian's ``turnserver``) for a test: TURN REST credentials
from a shared secret, listening on TCP and on TLS (a certificate from a CA
made for the test), relaying from ports below the kernel's ephemeral range so
that a firewall rule can tell its relayed traffic apart. Stopped on exit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import ipaddress
import secrets
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

TURNSERVER = "/usr/bin/turnserver"
RELAY_PORTS = (20000, 20199)  # coturn's relayed addresses: outside 32768-60999


@dataclass
class Coturn:
    secret: str
    host: str
    tcp_port: int
    tls_port: int
    log: collections.deque[str]
    ca_certificate: Path  # the CA that signed its TLS certificate

    @property
    def tcp_url(self) -> str:
        return f"turn:{self.host}:{self.tcp_port}?transport=tcp"

    @property
    def tls_url(self) -> str:
        return f"turns:{self.host}:{self.tls_port}?transport=tcp"


def _free_tcp_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _certificates(folder: Path, host: str) -> tuple[Path, Path, Path]:
    """A test CA (as an intranet's own) and the TURN server's certificate
    signed by it for ``host``: (CA certificate, server certificate, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(tz=datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Zhixing test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.crt", folder / "turn.crt", folder / "turn.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def require_coturn() -> None:
    if shutil.which(TURNSERVER) is None:
        raise RuntimeError(f"{TURNSERVER} is missing: run scripts/install-system-deps "
                           "(Debian's coturn package)")


@contextlib.asynccontextmanager
async def coturn(folder: Path, host: str = "127.0.0.1") -> AsyncIterator[Coturn]:
    require_coturn()
    ca, cert, key = _certificates(folder, host)
    secret = secrets.token_urlsafe(24)
    tcp_port, tls_port = _free_tcp_port(host), _free_tcp_port(host)
    process = await asyncio.create_subprocess_exec(
        TURNSERVER, "-n", "--no-cli", "--log-file", "stdout", "--simple-log",
        "--verbose", "--use-auth-secret", "--static-auth-secret", secret, "--realm", "zhixing.test",
        "--listening-ip", host, "--relay-ip", host,
        "--listening-port", str(tcp_port), "--tls-listening-port", str(tls_port),
        "--cert", str(cert), "--pkey", str(key),
        "--min-port", str(RELAY_PORTS[0]), "--max-port", str(RELAY_PORTS[1]),
        "--allow-loopback-peers", "--no-multicast-peers", "--no-dtls",
        "--pidfile", str(folder / "turnserver.pid"), "--userdb", str(folder / "turndb"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    log: collections.deque[str] = collections.deque(maxlen=200)
    server = Coturn(secret, host, tcp_port, tls_port, log, ca)

    async def read() -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            log.append(raw.decode(errors="replace").rstrip())

    reader = asyncio.create_task(read())
    try:
        for port in (tcp_port, tls_port):
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                try:
                    _, writer = await asyncio.open_connection(host, port)
                except OSError:
                    if process.returncode is not None or \
                            asyncio.get_running_loop().time() > deadline:
                        raise RuntimeError("coturn did not start:\n" + "\n".join(log)) from None
                    await asyncio.sleep(0.1)
                    continue
                writer.close()
                await writer.wait_closed()
                break
        yield server
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
