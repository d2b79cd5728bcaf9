"""Open-loop (wrk2-style) load on the viewer: GETs due at a fixed rate over N keep-alive
connections, each latency counted from when the request was *due*.

    .venv/bin/python -m bench.viewer_open_loop PORT PATHS_FILE RATE DURATION [CONNECTIONS]

Prints one JSON line. Unlike wrk's closed loop (each connection sends its next request
when the previous answer arrives, so latency is set by throughput), the offered rate here
does not drop when the server slows down: a request that finds all connections busy waits
in the client's queue, and that wait counts in its latency (no coordinated omission).
Run as its own process (``bench.viewer`` does) so that it shares no GIL with the
submission client. Requests are plain ``GET`` with ``Accept-Encoding: gzip``.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time


async def _connection(port: int, due_times: asyncio.Queue, paths: list[str], latencies: list, errors: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            due = await due_times.get()
            if due is None:
                return
            path = random.choice(paths)
            request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip\r\n\r\n"
            try:
                writer.write(request.encode())
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                errors.append(type(exc).__name__)
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            done = time.perf_counter()
            if status != 200:
                errors.append(f"status {status}")
            latencies.append(done - due)
    finally:
        writer.close()


async def run(port: int, paths: list[str], rate: float, duration: float, connections: int) -> dict:
    due_times: asyncio.Queue = asyncio.Queue()
    latencies: list[float] = []
    errors: list[str] = []
    workers = [asyncio.create_task(_connection(port, due_times, paths, latencies, errors)) for _ in range(connections)]
    await asyncio.sleep(0.2)  # connections open before the clock starts
    start = time.perf_counter()
    sent = 0
    total = int(rate * duration)
    while sent < total:
        now = time.perf_counter()
        while sent < total and start + sent / rate <= now:
            due_times.put_nowait(start + sent / rate)
            sent += 1
        await asyncio.sleep(0.0005)
    for _ in workers:
        due_times.put_nowait(None)
    await asyncio.wait(workers, timeout=60)
    elapsed = time.perf_counter() - start
    latencies.sort()

    def percentile(p: float) -> float | None:
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000, 1) if latencies else None

    return {
        "offered_per_s": rate,
        "answered": len(latencies),
        "answered_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": percentile(0.50),
        "p90_ms": percentile(0.90),
        "p99_ms": percentile(0.99),
        "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "connections": connections,
    }


def main() -> None:
    port, paths_file, rate, duration = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    connections = int(sys.argv[5]) if len(sys.argv) > 5 else 64
    with open(paths_file) as handle:
        paths = [line.strip() for line in handle if line.strip()]
    print(json.dumps(asyncio.run(run(port, paths, rate, duration, connections))))


if __name__ == "__main__":
    main()
