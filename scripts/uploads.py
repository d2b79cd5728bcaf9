"""Fill ``uploads`` from a CPAN mirror's ``indices/find-ls.gz`` and, where the network
allows, from MetaCPAN's release API; provisional rows are upgraded in place, a release
no longer on the mirror becomes ``backpan``, and the release rows follow.

    python -m scripts.uploads                                   # https://www.cpan.org/ find-ls
    python -m scripts.uploads --mirror file:///srv/cpan/        # a local mirror
    python -m scripts.uploads --find-ls /tmp/find-ls.gz --dry-run
    python -m scripts.uploads --no-find-ls --metacpan --since 7d  # MetaCPAN's last week only

Run it from cron (every 10 minutes for MetaCPAN, daily for find-ls). A source that cannot
be reached is logged and skipped; the exit code is 1 only when every source failed.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import logging
import sys
import urllib.error
import urllib.request
from datetime import datetime, timedelta

import settings
from schemas.uploads import Release, parse_find_ls, parse_metacpan_hits
from storage.clock import utc_now
from storage.engine import create_engine
from storage.uploads import sync_uploads

logger = logging.getLogger("scripts.uploads")

DEFAULT_MIRROR = "https://www.cpan.org/"
DEFAULT_METACPAN = "https://fastapi.metacpan.org/v1"
FETCH_TIMEOUT = 60
METACPAN_PAGE = 5000
USER_AGENT = "cpantesters-backend-python/uploads"


def _open(url_or_path: str):
    if "://" not in url_or_path:
        return open(url_or_path, "rb")
    request = urllib.request.Request(url_or_path, headers={"User-Agent": USER_AGENT})
    return urllib.request.urlopen(request, timeout=FETCH_TIMEOUT)


def read_find_ls(source: str, now: datetime) -> list[Release]:
    """The releases a find-ls.gz lists (a URL or a local path)."""
    with _open(source) as raw:
        data = raw.read()
    text = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    return list(parse_find_ls(io.TextIOWrapper(io.BytesIO(text), encoding="utf-8", errors="replace"), now))


def read_metacpan(base_url: str, since: datetime) -> list[Release]:
    """Releases MetaCPAN knows that were released since ``since`` (one page of results)."""
    query = {
        "size": METACPAN_PAGE,
        "_source": ["author", "archive", "date"],
        "query": {"range": {"date": {"gte": since.strftime("%Y-%m-%dT%H:%M:%S")}}},
        "sort": [{"date": "asc"}],
    }
    request = urllib.request.Request(
        base_url.rstrip("/") + "/release/_search",
        data=json.dumps(query).encode(),
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
    )
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as response:
        answer = json.load(response)
    return list(parse_metacpan_hits(answer.get("hits", {}).get("hits", [])))


def parse_since(text: str) -> datetime:
    """``7d``, ``12h`` or an ISO date."""
    now = utc_now()
    if text[:-1].isdigit() and text[-1] in "dh":
        amount = int(text[:-1])
        return now - (timedelta(days=amount) if text[-1] == "d" else timedelta(hours=amount))
    return datetime.fromisoformat(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", default=DEFAULT_MIRROR, help=f"CPAN mirror URL (default {DEFAULT_MIRROR})")
    parser.add_argument("--find-ls", help="a find-ls(.gz) file or URL instead of the mirror's")
    parser.add_argument("--no-find-ls", action="store_true", help="skip the mirror listing")
    parser.add_argument("--metacpan", action="store_true", help="also ask MetaCPAN's release API")
    parser.add_argument("--metacpan-url", default=DEFAULT_METACPAN)
    parser.add_argument("--since", type=parse_since, default=parse_since("7d"), help="MetaCPAN window (7d)")
    parser.add_argument("--dry-run", action="store_true", help="report what would change, change nothing")
    args = parser.parse_args(argv)
    config = settings.load()
    logging.basicConfig(level=config.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    engine = create_engine(config.DATABASE_URL)
    now = utc_now()
    tried = failed = 0
    if not args.no_find_ls:
        tried += 1
        source = args.find_ls or args.mirror.rstrip("/") + "/indices/find-ls.gz"
        try:
            releases = read_find_ls(source, now)
        except (OSError, urllib.error.URLError, EOFError) as exc:
            failed += 1
            logger.warning("find-ls unavailable source=%s error=%s; skipped", source, exc)
        else:
            counts = sync_uploads(engine, releases, complete=True, dry_run=args.dry_run)
            print(f"find-ls {source}: {counts}")
    if args.metacpan:
        tried += 1
        try:
            releases = read_metacpan(args.metacpan_url, args.since)
        except (OSError, urllib.error.URLError, ValueError) as exc:
            failed += 1
            logger.warning("MetaCPAN unavailable url=%s error=%s; skipped", args.metacpan_url, exc)
        else:
            counts = sync_uploads(engine, releases, complete=False, dry_run=args.dry_run)
            print(f"metacpan {args.metacpan_url}: {counts}")
    engine.dispose()
    return 1 if tried and failed == tried else 0


if __name__ == "__main__":
    sys.exit(main())
