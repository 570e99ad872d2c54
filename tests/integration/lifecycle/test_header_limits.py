"""Request heads are bounded: a 100 MB header gets 431 within a second, without growing the server
or slowing the clients it serves meanwhile; too many header lines get 431; ordinary heads pass."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from .harness import RECS, ServeProcess

HUGE_HEADER_BYTES = 100 * 1024 * 1024
CHUNK = 64 * 1024


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def latencies_for(url: str, seconds: float) -> np.ndarray:
    """One client's request latencies (ms), back to back, for `seconds`."""
    taken = []
    with httpx.Client(base_url=url, timeout=10) as client:
        deadline = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = client.get(f"{RECS}/products/user_{n % 300 + 1:05d}")
            taken.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
            n += 1
    return np.array(taken)


def send_huge_header(port: int, outcome: dict) -> None:
    """Stream one endless header; note when the server answered or closed, and what it said."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as attacker:
        attacker.settimeout(10)
        received = bytearray()

        def read() -> None:
            try:
                while chunk := attacker.recv(4096):
                    received.extend(chunk)
                    outcome.setdefault("answered_after", time.perf_counter() - started)
            except OSError:
                pass
            outcome.setdefault("closed_after", time.perf_counter() - started)

        reader = threading.Thread(target=read)
        reader.start()
        sent = 0
        try:
            attacker.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Padding: ")
            filler = b"a" * CHUNK
            while sent < HUGE_HEADER_BYTES:
                attacker.sendall(filler)
                sent += CHUNK
        except OSError:
            pass  # the server closed the connection: what it should do
        outcome["sent"] = sent
        reader.join(timeout=10)
        outcome["response"] = bytes(received)


@pytest.mark.slow
def test_a_100_mb_header_gets_431_within_a_second_and_other_clients_keep_their_p99(world, tmp_path):
    with ServeProcess(world, tmp_path / "serve.log") as server:
        pid = server._process.pid
        latencies_for(server.url, 1.0)  # warm up
        baseline = latencies_for(server.url, 3.0)
        rss_before = rss_bytes(pid)

        outcome: dict = {}
        attack = threading.Thread(target=send_huge_header, args=(server.port, outcome))
        attack.start()
        during = latencies_for(server.url, 3.0)
        attack.join(timeout=30)
        rss_after = rss_bytes(pid)

    assert outcome["response"].startswith(b"HTTP/1.1 431 "), outcome["response"][:200]
    assert b'"code":"header_fields_too_large"' in outcome["response"]
    assert outcome["answered_after"] < 1.0, outcome
    assert outcome["sent"] < HUGE_HEADER_BYTES, "the server stopped reading long before 100 MB"
    assert rss_after - rss_before < 20 * 1024 * 1024, (rss_before, rss_after)
    p99_before, p99_during = np.percentile(baseline, 99), np.percentile(during, 99)
    print(
        f"431 after {outcome['answered_after'] * 1000:.1f} ms, {outcome['sent'] / 2**20:.1f} MiB "
        f"sent; p99 {p99_before:.1f} ms before, {p99_during:.1f} ms during "
        f"({len(baseline)} / {len(during)} requests); RSS +{(rss_after - rss_before) / 2**20:.1f} MiB"
    )
    # A two-core machine shared with other work: allow noise, not a stall (it was 5.4 s).
    assert p99_during <= 2 * p99_before + 10, (p99_before, p99_during)


def test_too_many_header_lines_get_431_and_ordinary_heads_pass(world, tmp_path):
    with ServeProcess(world, tmp_path / "serve.log") as server:
        many = {f"X-Extra-{n}": "1" for n in range(world.max_headers + 1)}
        refused = httpx.get(f"{server.url}/health", headers=many, timeout=5)
        assert refused.status_code == 431
        assert refused.json()["error"]["code"] == "header_fields_too_large"
        # A big cookie and a few dozen headers are well inside the bounds; keep-alive still works.
        with httpx.Client(base_url=server.url, timeout=5) as client:
            for _ in range(3):
                ok = client.get(
                    "/health",
                    headers={"Cookie": "c=" + "x" * 16_000, **{f"X-N-{n}": "1" for n in range(40)}},
                )
                assert ok.status_code == 200
