"""Redis users for the service: one per worker host, so that one host can be revoked alone.

    python -m scripts.redis_acl file --passwords DIR admin:cpt-admin web:cpt-web \\
        worker:worker-host1 worker:worker-host2 > /etc/redis/users.acl
    python -m scripts.redis_acl setuser worker worker-host3 --passwords DIR   # ACL SETUSER words for redis-cli

``file`` prints a whole ACL file (Redis ``aclfile``): the ``default`` user off, then one
line per user. ``setuser`` prints the arguments of ``ACL SETUSER`` that add (or reset) one
user on a running server (then ``ACL SAVE`` writes it to the file). Each user's password is
read from ``DIR/<name>.password``, created (mode 0600, random) when missing; the file keeps
only its SHA-256. A worker host is given its password in its ``REDIS_URL``:
``rediss://worker-host1:<password>@redis.example:6380/0?ssl_ca_certs=/etc/cpantesters/ca.pem``.

Revoke a host with ``ACL DELUSER worker-host1`` (its open connections are closed at once,
its password no longer accepted; ``ACL SAVE`` to keep it so).

Roles:

- ``worker``: only the commands an RQ 3.0 worker (its scheduler and maintenance included)
  and our jobs send, only on RQ's keys and the counters the jobs write; no FLUSHALL, KEYS,
  CONFIG, ACL, CLIENT LIST/KILL, MONITOR, EVAL of its own text, and no access to the web
  side's keys (the failed-authentication counts).
- ``web``: the web app, the sweeper, the dashboard, the check and backlog commands (our own
  hosts): every command but the dangerous ones (and INFO, which RQ needs), on RQ's and
  our keys.
- ``admin``: everything (operators, with redis-cli).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shlex
import sys
from pathlib import Path

WORKER_COMMANDS = (
    # connection set-up: redis-py's handshake and health checks, a database number in the
    # URL, RQ naming its connection and reading its address and the server version (INFO
    # server: BLMOVE needs Redis 6.2)
    "hello ping select client|setname client|info info",
    # transactions and WATCH (RQ finishes and fails jobs in MULTI/EXEC pipelines)
    "multi exec discard watch unwatch",
    # queues: dequeue into the intermediate list, requeue, retries, coalescing look-ahead
    "blmove lmove blpop lpop lpush rpush lrem lrange llen lpos",
    # job and worker hashes, worker statistics, our job-duration histograms
    "hset hget hmget hgetall hexists hincrby hincrbyfloat",
    # registries (started, finished, failed, scheduled, executions)
    "zadd zrem zrange zrangebyscore zremrangebyscore zremrangebyrank zscore zcard zcount zpopmin",
    # worker sets, queue set, executions per worker
    "sadd srem smembers scard",
    # job keys, locks, TTLs, our counters and "taken along" markers
    "exists del expire persist get getdel set incrby",
    # job results (a stream per job)
    "xadd xrevrange xread xlen",
    # RQ's Lua scripts (scheduler lock, rate limits), loaded by redis-py; they run with this
    # user's rights (Redis 7)
    "evalsha script|load script|exists",
    # the worker's command channel (stop a job, shut down)
    "subscribe unsubscribe",
)
"""Commands a worker host may send, grouped by what needs them."""

WORKER_KEYS = ("rq:*", "cpt:events:*", "cpt:hist:*", "cpt:processing:*")
"""RQ's keys, and the counters and markers our jobs write (not the web side's ``cpt:authfail:*``)."""

WORKER_CHANNELS = ("rq:pubsub:*",)

ROLES = {
    "worker": [
        "resetkeys",
        *(f"~{k}" for k in WORKER_KEYS),
        "resetchannels",
        *(f"&{c}" for c in WORKER_CHANNELS),
        "-@all",
        *(f"+{c}" for group in WORKER_COMMANDS for c in group.split()),
    ],
    "web": ["resetkeys", "~rq:*", "~cpt:*", "resetchannels", "&rq:pubsub:*", "-@all", "+@all", "-@dangerous", "+info"],
    "admin": ["~*", "&*", "+@all"],
}


def password_of(directory: Path, name: str) -> str:
    """The password kept in ``directory/<name>.password``; a new random one when missing."""
    path = directory / f"{name}.password"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def user_rules(role: str, name: str, password: str) -> list[str]:
    """The ACL words of one user: on, its password's SHA-256, its role's rules."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    if not name or any(c.isspace() for c in name):
        raise ValueError(f"bad user name {name!r}")
    digest = hashlib.sha256(password.encode()).hexdigest()
    return ["on", f"#{digest}", *ROLES[role]]


def acl_file(users: list[tuple[str, str]], directory: Path) -> str:
    """A whole ``aclfile``: ``default`` off, then one line per ``(role, name)``."""
    lines = ["user default off resetkeys resetchannels -@all"]
    for role, name in users:
        lines.append(" ".join(["user", name, *user_rules(role, name, password_of(directory, name))]))
    return "\n".join(lines) + "\n"


def _user_spec(text: str) -> tuple[str, str]:
    role, sep, name = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected ROLE:NAME, e.g. worker:worker-host1")
    return role, name


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    whole = commands.add_parser("file", help="print a whole ACL file")
    whole.add_argument("--passwords", type=Path, required=True, help="directory of the <name>.password files")
    whole.add_argument("users", nargs="+", type=_user_spec, help="ROLE:NAME (roles: worker, web, admin)")
    one = commands.add_parser("setuser", help="print the ACL SETUSER arguments of one user")
    one.add_argument("role", choices=sorted(ROLES))
    one.add_argument("name")
    one.add_argument("--passwords", type=Path, required=True, help="directory of the <name>.password files")
    args = parser.parse_args(argv)
    try:
        if args.command == "file":
            sys.stdout.write(acl_file(args.users, args.passwords))
        else:
            words = [
                "ACL",
                "SETUSER",
                args.name,
                "reset",
                *user_rules(args.role, args.name, password_of(args.passwords, args.name)),
            ]
            print(shlex.join(words))
    except ValueError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
