"""Markdown escaping for text that Streamlit must show literally, such as error messages."""

from __future__ import annotations

import re

# The characters that turn an error message into formatting: "*" (emphasis, as in "2*4"),
# "`" (code), "$" (Streamlit's math), "~" (strikethrough), and "_" where it can open or close
# emphasis. An "_" between two letters or digits never does, so "train_subset" stays unescaped.
_SPECIAL = re.compile(r"([*`$~\\]|(?<!\w)_|_(?!\w))")


def escape_markdown(text: object) -> str:
    """Return ``str(text)`` with the characters Markdown would format backslash-escaped."""
    return _SPECIAL.sub(r"\\\1", str(text))
