"""Repair text that arrives as UTF-8 bytes read as Latin-1, and nothing else.

Clients that pass raw bytes send each UTF-8 byte as one code point U+0080-U+00FF
(``cafÃ©``); a real report mixes such lines with correct ones. ftfy is configured to
fix encoding only: its defaults also unescape HTML, straighten quotes, drop terminal
escapes and normalise, all of which would rewrite test output.
"""

from __future__ import annotations

import logging
import re

import ftfy

logger = logging.getLogger(__name__)

ENCODING_ONLY = ftfy.TextFixerConfig(
    unescape_html=False,
    remove_terminal_escapes=False,
    fix_encoding=True,
    restore_byte_a0=True,
    replace_lossy_sequences=False,
    decode_inconsistent_utf8=True,
    fix_c1_controls=False,
    fix_latin_ligatures=False,
    fix_character_width=False,
    uncurl_quotes=False,
    fix_line_breaks=False,
    fix_surrogates=False,
    remove_control_chars=False,
    normalization=None,
    explain=False,
)

_LATIN1_HIGH = re.compile("[\u0080-\u00ff]")
# UTF-8 read as Latin-1 always shows a lead byte (C2-F4) followed by a continuation
# byte (80-BF) as two such code points; a line without that pair has nothing to repair,
# however many correct accented letters it holds.
_MOJIBAKE_PAIR = re.compile("[\u00c2-\u00f4][\u0080-\u00bf]")
_MOJIBAKE_PAIR_UTF8 = re.compile(b"\xc3[\x82-\xb4]\xc2[\x80-\xbf]")
""":data:`_MOJIBAKE_PAIR` in UTF-8: U+00C2-U+00F4 is C3 82-C3 B4, U+0080-U+00BF is C2 80-C2 BF."""
_LINE_END = re.compile("[\r\n]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def repair_mojibake(text: str) -> str:
    """Fix UTF-8-read-as-Latin-1 line by line, touching only lines that can hold it.

    Only lines holding a pair of U+0080-U+00FF code points that UTF-8 read as Latin-1
    produces are looked at (a report is ~16 kB, mostly ASCII, some correct accents). Never raises: a line ftfy cannot handle is kept.
    """
    hit = _MOJIBAKE_PAIR.search(text)
    if not hit:
        return text
    pieces = []
    done = 0
    while hit:
        start = max(text.rfind("\n", 0, hit.start()), text.rfind("\r", 0, hit.start())) + 1
        line_end = _LINE_END.search(text, hit.start())
        end = line_end.start() if line_end else len(text)
        pieces.append(text[done:start])
        pieces.append(_repair_line(text[start:end]))
        done = end
        hit = _MOJIBAKE_PAIR.search(text, end)
    pieces.append(text[done:])
    return "".join(pieces)


def _repair_line(line: str) -> str:
    try:
        return ftfy.fix_text(line, ENCODING_ONLY)
    except Exception:  # ftfy on hostile input: keep the line rather than fail the report
        logger.warning("mojibake repair failed on a line; kept as is", exc_info=True)
        return line


def storable(text: str) -> str:
    """Replace lone surrogates (from a broken ``\\ud83d`` escape), which UTF-8 cannot hold."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def undo_utf8_layer(text: str) -> str:
    """Undo one layer of UTF-8-as-code-points, where the text is such a layer."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def clean_text(text: str) -> str:
    """What every submitted text goes through before it is stored."""
    if text.isascii():  # most strings of a report: nothing to repair or replace
        return text
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return storable(repair_mojibake(text))
    # The same test as repair_mojibake's on the UTF-8 bytes, several times faster than
    # the regex on the text: a report of 16 kB is scanned on every submission.
    return repair_mojibake(text) if _MOJIBAKE_PAIR_UTF8.search(data) else text


def clean_profile_text(text: str) -> str:
    """Profile strings (names, e-mails) are UTF-8-encoded once by the client, some twice.

    The first layer is always undone. A second one is undone the same way when the text
    still decodes as UTF-8 (a Latin-1 name almost never does), and ftfy repairs what
    is left; ftfy alone misses short names such as ``AĠ`` double-encoded.
    """
    once = undo_utf8_layer(text)
    if _LATIN1_HIGH.search(once):
        once = undo_utf8_layer(once)
    return storable(repair_mojibake(once))
