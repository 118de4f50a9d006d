"""Markdown that shows text literally: the one escaper for every Markdown the project writes (the studio's status
lines and reports, the user-study report.md).

Text from outside (file names, worker ids and answers from a results CSV, prompts, checkpoint records) is
HTML-escaped and its Markdown marks (emphasis, code, links, headings, table bars) are backslash-escaped, so
`[Claim your bonus](https://...)` in a worker id is shown as written, not as a link.
"""
from __future__ import annotations

import html
import re

MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]#|])")


def md_escape(text: str) -> str:
    """Text (already HTML-escaped) that Markdown shows as is: its emphasis, code, link and table marks escaped."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", text)


def md_text(text: object) -> str:
    """Plain text (file names, checkpoint records, messages) as Markdown that shows it literally."""
    return md_escape(html.escape(str(text), quote=False))
