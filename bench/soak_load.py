"""The soak's load: submissions at a fixed rate (open loop) and reads of the viewer and the
read API, each from keep-alive client threads, until told to stop.

Every acknowledged GUID is kept, so that the soak can check that none is lost; every
answer that is not the expected one is kept as an error.
"""

from __future__ import annotations

import base64
import json
import queue
import random
import threading
import time
import uuid
from http.client import HTTPConnection

from tests import captures

SUBMIT_PATH = "/api/v1/submit/CPAN-Testers-Report"
DISTS = 200
"""Distributions the submissions are spread over (a new version every minute)."""


def _distfile(dist: int, minute: int) -> str:
    return f"SOAKER/Soak-Dist{dist}-1.{minute}.tar.gz"


class Load:
    """Submissions to ``web_port`` at ``rate``/s; reads of ``viewer_port`` and
    ``readapi_port`` at ``reads``/s each."""

    def __init__(self, web_port: int, viewer_port: int, readapi_port: int, rate: float, reads: float):
        self.ports = {"web": web_port, "viewer": viewer_port, "readapi": readapi_port}
        self.rate, self.reads = rate, reads
        recorded = captures.load("01-ok")[0]
        self.body = json.loads(recorded.body)
        self.original = self.body["metadata"]["core"]["resource"].removeprefix("cpan:///distfile/")
        token = base64.b64encode(f"{captures.PROFILE_GUID}:{captures.PROFILE_SECRET}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/octet-stream"}
        self.acked: list[str] = []
        self.errors: list[str] = []
        self.counts = {"submitted": 0, "pages": 0, "api": 0}
        self.lock = threading.Lock()
        self.todo: queue.Queue = queue.Queue(maxsize=10_000)
        self.stopping = threading.Event()
        self.started = time.monotonic()
        self.threads: list[threading.Thread] = []

    def _payload(self) -> bytes:
        minute = int((time.monotonic() - self.started) // 60)
        self.body["metadata"]["core"]["guid"] = str(uuid.uuid4())
        text = json.dumps(self.body)
        return text.replace(self.original, _distfile(random.randrange(DISTS), minute)).encode()

    def _error(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)

    def _submitter(self) -> None:
        conn = HTTPConnection("127.0.0.1", self.ports["web"], timeout=60)
        while (item := self.todo.get()) is not None:
            guid = json.loads(item)["metadata"]["core"]["guid"]
            try:
                conn.request("POST", SUBMIT_PATH, body=item, headers=self.headers)
                response = conn.getresponse()
                answer = response.read()
                if response.status == 201:
                    with self.lock:
                        self.acked.append(guid)
                        self.counts["submitted"] += 1
                else:
                    self._error(f"submission {guid}: {response.status} {answer[:200]!r}")
            except Exception as exc:  # a failure to report, not to hide
                self._error(f"submission {guid}: {type(exc).__name__}: {exc}")
                conn.close()
                conn = HTTPConnection("127.0.0.1", self.ports["web"], timeout=60)

    def _pacer(self) -> None:
        """Put one submission on the queue every 1/rate s (latency does not slow the rate)."""
        sent = 0
        begin = time.monotonic()
        while not self.stopping.is_set():
            delay = begin + sent / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.todo.put(self._payload())
            sent += 1

    def _reader(self, kind: str) -> None:
        port = self.ports["viewer" if kind == "pages" else "readapi"]
        conn = HTTPConnection("127.0.0.1", port, timeout=60)
        begin, done = time.monotonic(), 0
        while not self.stopping.is_set():
            delay = begin + done / (self.reads / self.readers) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            done += 1
            path, fine = self._read_path(kind)
            if path is None:
                continue
            try:
                conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
                response = conn.getresponse()
                response.read()
                if response.status not in fine:
                    self._error(f"{kind} {path}: {response.status}")
                with self.lock:
                    self.counts[kind] += 1
            except Exception as exc:
                self._error(f"{kind} {path}: {type(exc).__name__}: {exc}")
                conn.close()
                conn = HTTPConnection("127.0.0.1", port, timeout=60)

    def _read_path(self, kind: str) -> tuple[str | None, tuple]:
        if kind == "pages":
            with self.lock:
                recent = self.acked[-1000:]
            return (f"/cpan/report/{random.choice(recent)}", (200,)) if recent else (None, ())
        dist, minute = random.randrange(DISTS), max(0, int((time.monotonic() - self.started) // 60) - 1)
        name = f"Soak-Dist{dist}"
        path = random.choice([f"/v3/summary/{name}/1.{minute}", f"/v3/release/dist/{name}", f"/v3/upload/dist/{name}"])
        return path, (200, 404)  # 404: a release not processed yet, or no upload known

    def start(self, submitters: int = 16, readers: int = 2) -> None:
        self.started, self.readers = time.monotonic(), readers
        targets = [self._submitter] * submitters + [self._pacer]
        targets += [lambda: self._reader("pages")] * readers + [lambda: self._reader("api")] * readers
        self.threads = [threading.Thread(target=t, daemon=True) for t in targets]
        self.submitters = self.threads[:submitters]
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        """Stop the load; every submission queued is still sent and answered."""
        self.stopping.set()
        for thread in self.threads[len(self.submitters) :]:
            thread.join()
        for _ in self.submitters:
            self.todo.put(None)
        for thread in self.submitters:
            thread.join()
