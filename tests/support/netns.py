"""The test run's network namespace, shaped for a test: a LAN address, UDP
cut off. scripts/run-tests gives the suite a namespace of its own (loopback
only), so nothing here touches the host; each helper undoes itself on exit.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
from collections.abc import Iterator, Sequence

_names = itertools.count()


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()} (run the suite with "
                           "scripts/run-tests, which gives it a network namespace)")


@contextlib.contextmanager
def lan_address() -> Iterator[str]:
    """A non-loopback address of this network namespace (a veth pair), for
    peers that never use loopback, as a real machine has a LAN address."""
    n = next(_names)
    here, there = f"zxg{os.getpid() % 100000}a{n}", f"zxg{os.getpid() % 100000}b{n}"
    address = f"10.{77 + n % 100}.{os.getpid() % 250}.1"
    _run("ip", "link", "add", here, "type", "veth", "peer", "name", there)
    try:
        _run("ip", "addr", "add", f"{address}/24", "dev", here)
        _run("ip", "link", "set", here, "up")
        _run("ip", "link", "set", there, "up")
        yield address
    finally:
        subprocess.run(["ip", "link", "del", here], capture_output=True, check=False)


@contextlib.contextmanager
def udp_dropped(allowed: Sequence[tuple[int, int]]) -> Iterator[None]:
    """Every UDP datagram is dropped (nftables) unless one of its ports lies
    in an ``allowed`` range (a TURN server's relay ports, a flow already up):
    a network whose firewall lets only TCP out, while the TURN server still
    reaches the relay."""
    ports = "{ " + ", ".join(f"{low}-{high}" if low != high else str(low)
                             for low, high in allowed) + " }"
    table = f"zhixing_test_{os.getpid()}_{next(_names)}"
    _run("nft", "add", "table", "inet", table)
    try:
        _run("nft", "add", "chain", "inet", table, "out",
             "{ type filter hook output priority 0 ; policy accept ; }")
        _run("nft", "add", "rule", "inet", table, "out", "udp", "sport", "!=", ports,
             "udp", "dport", "!=", ports, "counter", "drop")
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True,
                       check=False)
