"""Write an eval run: metrics.json, questions.jsonl, report.md and a self-contained report.html.

The report shows the run record (settings, git commit, corpus fingerprint, dataset, machine, date), the
metrics per mode and per question kind, the latency distribution, the worst questions with what was
retrieved next to the gold passage, and the generation section when there is one (rendered from whatever
keys it has). Tables are built once as data, then rendered to markdown and to HTML.

Does not: search, score, or generate (eval.run and eval.generation do); figures come from eval.plots.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from eval import plots
from eval.metrics import SCORES
from eval.run import METRICS

Table = tuple[str, list[str], list[list[str]]]  # title, header, rows
WORST = 10  # questions shown in "worst questions"
GLOSSARY = (
    "A passage is relevant when it overlaps an evidence quote of the question in the same note. "
    "hit@k: a relevant passage in the top k · recall@5: share of the evidence quotes found in the top 5 · "
    "MRR@10: 1/rank of the first relevant passage · nDCG@10: rank-discounted evidence found · "
    "context_precision@5 (RAGAS): relevant passages ranked above irrelevant ones · context_recall@10 (RAGAS, "
    "reference-based): share of the evidence quotes covered by the top 10. A passage repeating evidence "
    "already found adds nothing to recall or nDCG. Unanswerable questions are not scored for retrieval."
)


def write(out: Path, result: dict, rows: dict[str, list[dict]]) -> list[Path]:
    """Write the four files into `out` (created); returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "metrics.json": json.dumps(result, ensure_ascii=False, indent=1),
        "questions.jsonl": "".join(
            json.dumps({"mode": mode, **row}, ensure_ascii=False) + "\n"
            for mode, mode_rows in rows.items()
            for row in mode_rows
        ),
        "report.md": markdown(result, rows),
        "report.html": html_page(result, rows),
    }
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    return [out / name for name in files]


def primary(modes: dict[str, dict]) -> str:
    """The mode the worst questions are shown for: hybrid when run, else the first."""
    return "hybrid" if "hybrid" in modes else next(iter(modes), "")


def worst(mode_rows: list[dict], n: int = WORST) -> list[dict]:
    """The n rows ranked lowest: first relevant hit latest, then least evidence found."""
    missed = [r for r in mode_rows if r["mrr@10"] < 1.0 or r["recall@5"] < 1.0]
    return sorted(missed, key=lambda r: (r["mrr@10"], r["ndcg@10"], r["recall@5"], r["id"]))[:n]


# ---- tables -------------------------------------------------------------------------------------------


def run_table(run: dict) -> Table:
    dataset, corpus = run.get("dataset", {}), run.get("corpus", {})
    problems = dataset.get("problems", [])
    rows = [
        ["date", run.get("date", "")],
        ["took", f"{run.get('seconds', 0):.1f} s"],
        ["git commit", run.get("commit", "") or "unknown"],
        ["machine", machine_text(run.get("machine", {}))],
        [
            "corpus",
            f"{corpus.get('path', '')} · {corpus.get('files', 0)} files, {corpus.get('chunks')} chunks",
        ],
        ["corpus fingerprint", corpus.get("fingerprint", "")],
        ["dataset", f"{dataset.get('path', '')} · sha256 {str(dataset.get('sha256', ''))[:16]}"],
        ["questions", _questions(dataset)],
        ["bad dataset lines", f"{len(problems)}" + (f": {'; '.join(problems[:5])}" if problems else "")],
        ["modes · k", f"{', '.join(run.get('modes', []))} · k={run.get('k', '')}"],
    ]
    return "Run", ["", ""], rows


def machine_text(m: dict) -> str:
    """eval.command.machine()'s record in one line: "AMD EPYC …, 2 cores, 23.4 GB, Linux-…"."""
    return (
        f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('memory_gb', '?')} GB, {m.get('os', '')}"
    )


def _questions(dataset: dict) -> str:
    n, answerable = dataset.get("items", 0), dataset.get("answerable", 0)
    limit = f" (--limit {dataset['limit']})" if dataset.get("limit") else ""
    return f"{n}: {answerable} answerable scored for retrieval, {n - answerable} unanswerable{limit}"


def modes_table(modes: dict[str, dict]) -> Table:
    header = ["mode", *METRICS, "n", "p50 ms", "p95 ms"]
    rows = [
        [
            mode + (" *" if "reranker" in m else ""),
            *[f"{m['overall'][name]:.3f}" for name in METRICS],
            str(m["overall"]["n"]),
            f"{m['latency_ms']['p50']:.1f}",
            f"{m['latency_ms']['p95']:.1f}",
        ]
        for mode, m in modes.items()
    ]
    return "Retrieval, answerable questions", header, rows


def kinds_table(modes: dict[str, dict]) -> Table:
    kinds = sorted({kind for m in modes.values() for kind in m["by_kind"]})
    first: dict = next(iter(modes.values()), {"by_kind": {}})
    rows = []
    for kind in kinds:
        cells = [_pair(m["by_kind"].get(kind)) for m in modes.values()]
        rows.append([kind, str(first["by_kind"].get(kind, {}).get("n", 0)), *cells])
    return "By question kind: hit@5 · MRR@10", ["kind", "n", *modes], rows


def _pair(scores: dict | None) -> str:
    return f"{scores['hit@5']:.2f} · {scores['mrr@10']:.2f}" if scores else "-"


def generation_tables(generation: dict) -> list[Table]:
    """Aggregates side by side: answerable, unanswerable, each kind; other scalars; the worst rows."""
    columns = {
        g: generation[g] for g in ("answerable", "unanswerable") if isinstance(generation.get(g), dict)
    }
    kinds = generation.get("by_kind") or {}
    columns |= {k: v for k, v in kinds.items() if isinstance(v, dict) and k not in columns}
    groups = list(columns)
    flat = {g: flatten(columns[g]) for g in groups}
    keys = list(dict.fromkeys(key for g in groups for key in flat[g]))
    counted = [key for key in keys if f"{key}_n" in keys]  # "faithfulness" + "faithfulness_n": one row
    keys = [key for key in keys if not (key.endswith("_n") and key[:-2] in counted)]
    tables: list[Table] = []
    if keys:
        rows = [[key, *[_counted(flat[g], key, key in counted) for g in groups]] for key in keys]
        tables.append(("Generation", ["metric", *groups], rows))
    scalars = {
        k: v
        for k, v in flatten(generation).items()
        if not k.startswith(("rows", "by_kind.", *[g + "." for g in groups]))
    }
    if scalars:
        tables.append(("Generation: run", ["", ""], [[k, _cell(v)] for k, v in scalars.items()]))
    rows_ = [r for r in generation.get("rows", []) if isinstance(r, dict)]
    if rows_:
        tables.append(_worst_generation(rows_))
    return tables


def _counted(values: dict, key: str, counted: bool) -> str:
    """A value, with "(n=…)" when the generation report says over how many rows it was taken."""
    if not counted:
        return _cell(values.get(key, ""))
    value = values.get(key)
    return f"{_cell(value) if value is not None else '-'} (n={values.get(f'{key}_n', 0)})"


def flatten(value: dict, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": 1}, "rows": [...]} -> {"a.b": 1}: nested values by dotted key, lists left out."""
    flat: dict[str, object] = {}
    for key, v in value.items():
        if isinstance(v, dict):
            flat.update(flatten(v, f"{prefix}{key}."))
        elif not isinstance(v, list):
            flat[f"{prefix}{key}"] = v
    return flat


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else str(value)


def _worst_generation(rows: list[dict]) -> Table:
    """The rows with the lowest mean score: the SCORES they have, else every field always within [0, 1]."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    numeric = [k for k in SCORES if k in keys] or [
        k
        for k in keys
        if any(_score(r.get(k)) is not None for r in rows)
        and all(_score(r[k]) is not None for r in rows if _number(r.get(k)))
    ]

    def badness(r: dict) -> float:
        values = [s for s in (_score(r.get(k)) for k in numeric) if s is not None]
        return sum(values) / len(values) if values else 1.0

    ranked = sorted(rows, key=badness)[:WORST]
    header = ["id", "question", "answer", "refused", *numeric]
    body = [
        [str(r.get("id", "")), str(r.get("question", ""))[:80], str(r.get("answer", ""))[:160],
         str(r.get("refused", "")), *[_cell(r.get(k)) for k in numeric]]
        for r in ranked
    ]  # fmt: skip
    return f"Generation: {len(ranked)} lowest-scored answers", header, body


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _score(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0:
        return float(value)
    return None


def all_tables(result: dict) -> list[Table]:
    tables = [run_table(result["run"]), modes_table(result["modes"]), kinds_table(result["modes"])]
    return tables + generation_tables(result.get("generation") or {})


# ---- markdown -----------------------------------------------------------------------------------------


def summary(result: dict) -> str:
    """What `mianjing eval` prints: the per-mode table, then the generation aggregates if any."""
    tables = [modes_table(result["modes"]), *generation_tables(result.get("generation") or {})[:1]]
    return "\n".join(_md_table(t) for t in tables)


def _md_table(table: Table) -> str:
    title, header, body = table
    lines = [f"## {title}", "", _md_row(header), _md_row(["---"] * len(header))]
    return "\n".join(lines + [_md_row(r) for r in body] + [""])


def markdown(result: dict, rows: dict[str, list[dict]]) -> str:
    lines = ["# mianjing eval report", ""]
    lines += [_md_table(t) for t in all_tables(result)] + [GLOSSARY, ""]
    lines += [f"* {mode}: reranker {m['reranker']}" for mode, m in result["modes"].items() if "reranker" in m]
    mode = primary(result["modes"])
    lines += ["", f"## Worst questions ({mode})", ""]
    for r in worst(rows.get(mode, [])):
        lines.append(f"- **{r['id']}** ({r['kind']}) {r['question']} · MRR {r['mrr@10']:.2f}")
        for g in r["gold"]:
            lines.append(f"  - gold ({_where(g, r)}): `{g['passage']}` «{_oneline(g['quote'])}»")
        for h in r["hits"][:3]:
            lines.append(
                f"  - {h['rank']}. {'✓' if h['relevant'] else '✗'} `{h['id']}` {_oneline(h['text'])[:90]}"
            )
    return "\n".join(lines) + "\n"


def _where(gold: dict, row: dict) -> str:
    return f"rank {gold['rank']}" if gold["rank"] else f"not in the top {row.get('k', len(row['hits']))}"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(_oneline(c).replace("|", "\\|") for c in cells) + " |"


def _oneline(text: str) -> str:
    return " ".join(str(text).split())


# ---- html ---------------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI","PingFang SC","Noto Sans CJK SC",sans-serif;
 max-width:1180px;margin:24px auto;padding:0 16px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0 4px;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%}.note{color:#a15c00}
.q{border:1px solid #ddd;border-radius:6px;margin:12px 0;padding:8px 12px}
.q .cols{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.gold{background:#f1f8ee;padding:6px 8px;border-radius:4px}.hit{padding:3px 0;border-top:1px dotted #ddd}
.ok{color:#2d8a2d;font-weight:bold}.no{color:#c0392b;font-weight:bold}small{color:#666}
"""


def html_page(result: dict, rows: dict[str, list[dict]]) -> str:
    modes = result["modes"]
    parts = [f"<h1>mianjing eval report</h1><p><small>{escape(result['run'].get('date', ''))}</small></p>"]
    tables = all_tables(result)
    parts.append(_html_table(tables[0]))
    if modes:
        parts += [_html_table(tables[1]), f"<p><small>{escape(GLOSSARY)}</small></p>"]
        parts += [
            f'<p class="note">* {escape(mode)}: reranker {escape(m["reranker"])}</p>'
            for mode, m in modes.items()
            if "reranker" in m
        ]
        parts.append(_img(plots.modes_figure(modes, METRICS), "metrics per mode"))
        parts += [_html_table(tables[2]), _img(plots.kinds_figure(modes), "metrics per kind")]
        latencies = {mode: [r["latency_ms"] for r in mode_rows] for mode, mode_rows in rows.items()}
        parts += ["<h2>Search latency</h2>", _img(plots.latency_figure(latencies), "latency")]
    parts += [_html_table(t) for t in tables[3:]]  # generation, when run
    if modes:
        parts.append(_html_worst(primary(modes), worst(rows.get(primary(modes), []))))
    settings = json.dumps(result["run"].get("settings", {}), ensure_ascii=False, indent=1)
    parts.append(f"<details><summary>settings</summary><pre>{escape(settings)}</pre></details>")
    body = "\n".join(parts)
    return f'<!doctype html><html><head><meta charset="utf-8"><title>mianjing eval</title><style>{CSS}</style></head><body>{body}</body></html>\n'  # noqa: E501


def _html_table(table: Table) -> str:
    title, header, body = table
    head = "".join(f"<th>{escape(h)}</th>" for h in header) if any(header) else ""
    rows = "".join(
        "<tr>" + "".join(f"<td{_numeric(c)}>{escape(_oneline(c))}</td>" for c in r) + "</tr>" for r in body
    )
    return f"<h2>{escape(title)}</h2><table>{'<tr>' + head + '</tr>' if head else ''}{rows}</table>"


def _numeric(cell: str) -> str:
    return ' class="n"' if cell.replace(".", "", 1).isdigit() else ""


def _img(png: str, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{png}">'


def _html_worst(mode: str, ranked: list[dict]) -> str:
    parts = [f"<h2>Worst questions ({escape(mode)}): gold passage next to what was retrieved</h2>"]
    for r in ranked:
        gold = "".join(
            f'<div class="gold"><small>gold · {escape(g["passage"])} · '
            f"{_where(g, r)}</small><br>"
            f"<b>«{escape(g['quote'])}»</b><br><small>{escape(_oneline(g['text']))}</small></div>"
            for g in r["gold"]
        )
        hits = "".join(
            f'<div class="hit"><span class="{"ok" if h["relevant"] else "no"}">'
            f"{h['rank']}. {'✓' if h['relevant'] else '✗'}</span> <small>{escape(h['id'])}</small><br>"
            f"{escape(_oneline(h['text'])[:160])}</div>"
            for h in r["hits"][:3]
        )
        parts.append(
            f'<div class="q"><b>{escape(r["id"])}</b> <small>{escape(r["kind"])} · MRR@10 '
            f"{r['mrr@10']:.2f} · recall@5 {r['recall@5']:.2f}</small><br>{escape(r['question'])}"
            f'<div class="cols"><div>{gold}</div><div>{hits}</div></div></div>'
        )
    return "\n".join(parts)
