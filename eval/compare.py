"""Compare two eval runs: B minus A for every metric both have, and what changed between the runs.

    compare(Path("runs/a/metrics.json"), Path("runs/b/metrics.json"))  # -> {"modes": …, "run": …}

Covers the retrieval metrics overall and per kind, latency, the numeric generation aggregates, and the
run record (settings, commit, corpus fingerprint, dataset hash) so a delta can be traced to its cause.

Does not: re-run anything or judge significance (the dev set is small: a few questions move 0.01).
"""

from __future__ import annotations

import json
from pathlib import Path

from eval.report import flatten
from eval.run import METRICS

KIND_METRICS = ("hit@5", "mrr@10")


def load(path: Path) -> dict:
    """A metrics.json; a missing or malformed file is a one-line ValueError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e.msg}, line {e.lineno})") from e
    if not isinstance(data, dict) or not isinstance(data.get("modes"), dict):
        raise ValueError(f'{path}: not a mianjing metrics.json (no "modes")')
    return data


def compare(a_path: Path, b_path: Path) -> dict:
    a, b = load(a_path), load(b_path)
    modes = [m for m in a["modes"] if m in b["modes"]]
    return {
        "a": str(a_path),
        "b": str(b_path),
        "modes": {mode: _mode(a["modes"][mode], b["modes"][mode]) for mode in modes},
        "only_in_a": [m for m in a["modes"] if m not in b["modes"]],
        "only_in_b": [m for m in b["modes"] if m not in a["modes"]],
        "generation": _numbers(flatten(a.get("generation") or {}), flatten(b.get("generation") or {})),
        "run": _run(a.get("run", {}), b.get("run", {})),
    }


def _delta(x: object, y: object) -> dict | None:
    if (
        not (isinstance(x, int | float) and isinstance(y, int | float))
        or isinstance(x, bool)
        or isinstance(y, bool)
    ):
        return None
    return {"a": x, "b": y, "delta": round(float(y) - float(x), 4)}


def _numbers(a: dict, b: dict) -> dict:
    pairs = {key: _delta(a.get(key), b.get(key)) for key in a if key in b}
    return {key: d for key, d in pairs.items() if d is not None}


def _mode(a: dict, b: dict) -> dict:
    kinds = [k for k in a.get("by_kind", {}) if k in b.get("by_kind", {})]
    return {
        "overall": _numbers(a.get("overall", {}), b.get("overall", {})),
        "latency_ms": _numbers(a.get("latency_ms", {}), b.get("latency_ms", {})),
        "by_kind": {k: _numbers(a["by_kind"][k], b["by_kind"][k]) for k in kinds},
    }


def _run(a: dict, b: dict) -> dict:
    """What differs between the two runs' records: settings, commit, corpus, dataset."""
    sa, sb = a.get("settings", {}), b.get("settings", {})
    changed = {k: [sa.get(k), sb.get(k)] for k in sorted(set(sa) | set(sb)) if sa.get(k) != sb.get(k)}
    pairs = {
        "commit": [a.get("commit"), b.get("commit")],
        "corpus fingerprint": [
            a.get("corpus", {}).get("fingerprint"),
            b.get("corpus", {}).get("fingerprint"),
        ],
        "dataset sha256": [a.get("dataset", {}).get("sha256"), b.get("dataset", {}).get("sha256")],
        "questions": [a.get("dataset", {}).get("items"), b.get("dataset", {}).get("items")],
        "k": [a.get("k"), b.get("k")],
        "machine": [a.get("machine", {}).get("cpu"), b.get("machine", {}).get("cpu")],
    }
    return {"settings": changed, **{k: v for k, v in pairs.items() if v[0] != v[1]}}


def markdown(c: dict) -> str:
    """The comparison as markdown: each cell is B's value and (B - A)."""
    lines = [f"# eval compare\n\nA: `{c['a']}`  \nB: `{c['b']}`  \ncells: B (B - A)\n"]
    header = [*METRICS, "p50 ms", "p95 ms"]
    lines += ["| mode | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for mode, d in c["modes"].items():
        cells = [_cell(d["overall"].get(m)) for m in METRICS]
        cells += [_cell(d["latency_ms"].get(p), digits=1) for p in ("p50", "p95")]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    kinds = list(dict.fromkeys(k for d in c["modes"].values() for k in d["by_kind"]))
    if kinds:
        lines += [
            "",
            f"By kind, {' · '.join(KIND_METRICS)}:",
            "",
            "| kind | " + " | ".join(c["modes"]) + " |",
        ]
        lines.append("|---" * (len(c["modes"]) + 1) + "|")
        for kind in kinds:
            cells = [
                " · ".join(_cell(d["by_kind"].get(kind, {}).get(m)) for m in KIND_METRICS)
                for d in c["modes"].values()
            ]
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    if c["generation"]:
        lines += ["", "Generation:", ""] + [f"- {k}: {_cell(d)}" for k, d in c["generation"].items()]
    lines += ["", "What changed between the runs:"] + _changes(c)
    return "\n".join(lines) + "\n"


def _cell(d: dict | None, digits: int = 3) -> str:
    if d is None:
        return "-"
    return f"{d['b']:.{digits}f} ({d['delta']:+.{digits}f})"


def _changes(c: dict) -> list[str]:
    run = c["run"]
    lines = [f"- {key}: {a} -> {b}" for key, (a, b) in run["settings"].items()]
    lines += [f"- {key}: {v[0]} -> {v[1]}" for key, v in run.items() if key != "settings"]
    lines += [
        f"- mode only in {side[-1].upper()}: {', '.join(c[side])}"
        for side in ("only_in_a", "only_in_b")
        if c[side]
    ]
    return lines or ["- nothing recorded (same settings, commit, corpus and dataset)"]


def write(c: dict, out: Path) -> list[Path]:
    """compare.json and compare.md into `out` (created)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(c, ensure_ascii=False, indent=1), encoding="utf-8")
    (out / "compare.md").write_text(markdown(c), encoding="utf-8")
    return [out / "compare.json", out / "compare.md"]
