"""A TCP forwarder the outage tests put between the app and a real MariaDB or Redis.

``cut()`` drops every open connection and refuses new ones (as a crashed or restarting
server does); ``restore()`` accepts again. ``stall()`` stops forwarding without closing
anything (a link that died silently: no FIN, no RST); ``unstall()`` forwards again. The server behind it stays up, so other tests
and other users of the shared server are not disturbed.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._up = threading.Event()
        self._up.set()
        self._flowing = threading.Event()
        self._flowing.set()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair):
        client, upstream = pair
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        try:
            while self._up.is_set():
                if not self._flowing.is_set():
                    self._flowing.wait(timeout=0.2)  # stalled: bytes stay in the kernel's buffers
                    continue
                for key, _ in selector.select(timeout=0.2):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            pass
        finally:
            selector.close()
            self._drop(pair)

    def _drop(self, pair):
        with self._lock:
            self._pairs.discard(pair)
        for sock in pair:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        self._up.clear()
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            self._drop(pair)

    def restore(self) -> None:
        self._up.set()

    def stall(self) -> None:
        """Stop forwarding, keep every connection open: neither side hears anything."""
        self._flowing.clear()

    def unstall(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()
