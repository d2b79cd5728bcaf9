"""A local, fsynced spool for submissions that arrive while the database is unreachable.

One file per submission, written to a temporary name, fsynced, renamed into place and
the directory fsynced: once :meth:`Spool.put` returns, the submission survives a crash
or a power cut, so the web app may answer 201. The drainer (in the sweeper process)
feeds each file back through the same pipeline as soon as the database answers again.
Files may hold a tester's secret until drained, so they are created mode 0600.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path

logger = logging.getLogger(__name__)

SUFFIX = ".json"


class Spool:
    """A directory of pending submissions; ``rejected/`` keeps those that failed on drain."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.rejected_directory = self.directory / "rejected"

    def _ensure(self) -> None:
        self.rejected_directory.mkdir(parents=True, exist_ok=True)

    def put(self, record: dict) -> Path:
        """Write one record durably and return its path."""
        self._ensure()
        name = f"{record['received'].replace(':', '')}-{uuid.uuid4().hex}{SUFFIX}"
        final = self.directory / name
        temporary = self.directory / f".{name}.tmp"
        data = json.dumps(record, ensure_ascii=True).encode("ascii")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                # os.write may write only part of the data (a file system nearly full) without
                # an error; the next call then raises. A truncated file must never be renamed
                # into place: the submission would be acknowledged and then lost on drain.
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temporary, final)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_directory(self.directory)
        return final

    def pending(self) -> list[Path]:
        """Spooled files, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.suffix == SUFFIX and not p.name.startswith("."))

    def count(self) -> int:
        return len(self.pending())

    @staticmethod
    def load(path: Path) -> dict:
        return json.loads(path.read_text("ascii"))

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        _fsync_directory(self.directory)

    def reject(self, path: Path, reason: str) -> None:
        """Keep a submission the drainer could not store, with the reason, for an operator."""
        self._ensure()
        target = self.rejected_directory / path.name
        os.rename(path, target)
        (self.rejected_directory / (path.name + ".reason")).write_text(reason + "\n")
        logger.error("spool rejected file=%s reason=%s", target, reason)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
