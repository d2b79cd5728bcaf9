"""A MariaDB server of the benchmarks' own, configured as a production database server
would be for the data it holds: its buffer pool holds the working set.

    .venv/bin/python -m bench.scale_server start [--dir /work/scale-db] [--port 3399] [--buffer-pool 2G]
    .venv/bin/python -m bench.scale_server stop [--dir /work/scale-db]

The shared development server's 128 MB buffer pool (Debian's default, and every other
session's tests in it) holds under a tenth of a 1 M-row cpanstats table: a list of a large
distribution then reads every row from outside the pool, ~17 µs a row in the server alone,
and measures that configuration, not the code. ``bench.scale_data`` and ``bench.scale``
take ``--mysql 127.0.0.1:3399`` to use this server instead (user ``bench``, no password).
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from tests.replica_servers import MariaDBServer

DEFAULT_DIR = Path("/work/scale-db")


def server(directory: Path, port: int, buffer_pool: str) -> MariaDBServer:
    return MariaDBServer(
        directory,
        1,
        primary=None,
        port=port,
        options=[
            f"--innodb-buffer-pool-size={buffer_pool}",
            "--innodb-log-file-size=512M",
            "--innodb-flush-log-at-trx-commit=2",
            "--local-infile=1",
            "--max-allowed-packet=64M",
        ],
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--port", type=int, default=3399)
    parser.add_argument("--buffer-pool", default="2G")
    args = parser.parse_args(argv)
    if args.action == "stop":
        pid_file = args.dir / "mysqld.pid"
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
        print(f"stopping mariadbd {pid_file.read_text().strip()}")
        return
    db = server(args.dir, args.port, args.buffer_pool)
    db.start(detach=True)
    db.sql("CREATE USER IF NOT EXISTS 'bench'@'127.0.0.1'; GRANT ALL ON *.* TO 'bench'@'127.0.0.1';")
    print(f"mariadbd {db.process.pid} on 127.0.0.1:{args.port}, data in {args.dir}")


if __name__ == "__main__":
    main()
