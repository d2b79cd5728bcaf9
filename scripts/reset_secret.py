"""Reset a tester profile's secret.

python -m scripts.reset_secret <profile-guid>              # clear: the next secret presented is adopted
python -m scripts.reset_secret <profile-guid> --secret S   # set a new secret
"""

from __future__ import annotations

import argparse
import sys

import settings
from storage.engine import create_engine
from storage.users import reset_secret


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile_guid")
    parser.add_argument("--secret", help="the new secret (default: clear it)")
    args = parser.parse_args(argv)
    engine = create_engine(settings.load().DATABASE_URL)
    if not reset_secret(engine, args.profile_guid, args.secret):
        print(f"no profile metabase:user:{args.profile_guid.lower()}", file=sys.stderr)
        return 1
    print("secret set" if args.secret else "secret cleared; the next secret presented will be adopted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
