"""Regenerate the configuration table in README.md from settings.py."""

import re
from pathlib import Path

import settings

README = Path(__file__).resolve().parent.parent / "README.md"


def main() -> None:
    text = README.read_text()
    table = f"<!-- settings-table -->\n{settings.markdown_table()}\n<!-- /settings-table -->"
    README.write_text(re.sub(r"<!-- settings-table -->.*<!-- /settings-table -->", table, text, flags=re.S))


if __name__ == "__main__":
    main()
