"""Notes' markdown made faithful and safe for `st.markdown` (which always runs with HTML off):

- HTML formatting tags (`<u>`, `<b>`, `<br>`, `<span …>` …) are dropped, their text kept: `<u>缺点</u>` reads
  `缺点`, not as literal tags; any other tag (`<script>`, `<img onerror=…>`) is shown as inline code, text
  that cannot run;
- images `![alt](path)` become `🖼 alt`: a note's relative image cannot be served by the app, and a remote
  one would be a request to the network;
- `whole_tables` widens a span that cuts into a markdown table to the whole table, so a cited row never
  shows as raw `|` text apart from its header;
- `highlight` marks the query's terms in a passage (the retrieval explorer).

Code blocks, inline code and `$…$` formulas are left as they are. Does not: parse markdown into a tree;
the rules work line by line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

FORMATTING = (
    "u|b|i|em|strong|s|del|ins|mark|sup|sub|span|font|div|p|center|small|big|br|hr|kbd|code|pre|a|ol|ul|li"
)
KEEP = re.compile(r"(`+)[^`\n]*?\1|\$[^$\n]+\$")  # inline code and formulas: never touched
TAG = re.compile(r"</?([A-Za-z][A-Za-z0-9]*)\b[^<>\n]*/?>|<!--.*?-->")
IMAGE = re.compile(r"!\[([^\]\n]*)\]\(([^)\n]*)\)")
FENCE = re.compile(r"[ \t]*(```|~~~|\$\$)")
TABLE_ROW = re.compile(r"[ \t]*\|")


def clean(markdown: str) -> str:
    """`markdown` with HTML tags dropped or made inert and images replaced by their alt text.

    >>> clean("2. <u>RAG有什么缺点？</u><script>x()</script>")
    '2. RAG有什么缺点？`<script>`x()`</script>`'
    """
    lines, fenced = [], False
    for line in markdown.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            line = _outside_code(line, _line)
        lines.append(line)
    return "\n".join(lines)


def _outside_code(line: str, change: Callable[[str], str]) -> str:
    """Apply `change` to the parts of `line` that are not inline code or formulas."""
    parts, last = [], 0
    for kept in KEEP.finditer(line):
        parts += [change(line[last : kept.start()]), kept.group(0)]
        last = kept.end()
    return "".join([*parts, change(line[last:])])


def _line(text: str) -> str:
    text = IMAGE.sub(lambda m: f"🖼 *{m.group(1).strip() or 'image'}*", text)
    return TAG.sub(_tag, text)


def _tag(tag: re.Match[str]) -> str:
    name = (tag.group(1) or "").lower()
    if not name:  # an HTML comment
        return ""
    if name in FORMATTING.split("|"):
        return " " if name in ("br", "hr") else ""
    inert = tag.group(0).replace("`", "'")
    return f"`{inert}`"


def table_at(text: str, position: int) -> tuple[int, int] | None:
    """(start, end) of the markdown table whose lines contain `position`, or None."""
    if not 0 <= position <= len(text):
        return None
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    end = len(text) if end < 0 else end
    if not TABLE_ROW.match(text[start:end]):
        return None
    while start > 0 and TABLE_ROW.match(text[text.rfind("\n", 0, start - 1) + 1 : start - 1]):
        start = text.rfind("\n", 0, start - 1) + 1
    while end < len(text) and TABLE_ROW.match(_line_after(text, end)):
        end = end + 1 + len(_line_after(text, end))
    return start, end


def _line_after(text: str, newline: int) -> str:
    nxt = text.find("\n", newline + 1)
    return text[newline + 1 : len(text) if nxt < 0 else nxt]


def whole_tables(text: str, start: int, end: int) -> tuple[int, int]:
    """`start`..`end` widened so that no table of `text` is cut by either end.

    >>> whole_tables("a\\n| x |\\n| - |\\n| 1 |\\nb", 4, 10)
    (2, 19)
    """
    if (table := table_at(text, start)) is not None:
        start = table[0]
    if end > start and (table := table_at(text, end - 1)) is not None:
        end = max(end, table[1])
    return start, end


def highlight(markdown: str, terms: Iterable[str]) -> str:
    """Each occurrence of a term (case-insensitive, outside code and formulas) on an orange background.

    >>> highlight("KV Cache 用显存换时间", ["kv", "显存"])
    ':orange-background[KV] Cache 用:orange-background[显存]换时间'
    """
    words = sorted({t for t in terms if _markable(t)}, key=len, reverse=True)
    if not words:
        return markdown
    pattern = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)

    def mark(text: str) -> str:
        return pattern.sub(lambda m: f":orange-background[{m.group(0)}]", text)

    lines, fenced = [], False
    for line in markdown.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            line = _outside_code(line, mark)
        lines.append(line)
    return "\n".join(lines)


def _markable(term: str) -> bool:
    """Two characters or more, or one CJK character; nothing that would end the markup."""
    if not term.strip() or set(term) & set("[]*`$\\:"):
        return False
    return len(term) >= 2 or "\u3400" <= term <= "\u9fff"
