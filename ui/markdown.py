"""Markdown escaping for text that Streamlit must show literally, such as error messages."""

from __future__ import annotations

import re
import string

# CommonMark renders a backslash-escaped ASCII punctuation character as itself, so escaping all
# of them also covers Streamlit's own syntax (":red[...]", "$...$" math, ":material/...:" icons).
_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")


def escape_markdown(text: object) -> str:
    """Return ``str(text)`` with every Markdown special character backslash-escaped."""
    return _PUNCTUATION.sub(r"\\\1", str(text))
