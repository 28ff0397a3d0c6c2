"""A model folder built once in the cache (the converted e5, a merged reranker): written under
`<folder>.tmp-<pid>`, then renamed into place; it counts as built only with its marker file of the right
format. Leftovers of dead processes, and a folder without its marker, are removed before a build.

    folder = build_once(cache / "models" / "x", "built.json", 1, write_into, lock)

Does not: decide what the folder holds (`build` writes it, the marker included), or lock across processes
(two processes may both build; the first rename wins and the other's copy is dropped).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path


def is_complete(folder: Path, marker: str, fmt: int) -> bool:
    try:
        found = json.loads((folder / marker).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(found, dict) and found.get("format") == fmt


def build_once(
    folder: Path, marker: str, fmt: int, build: Callable[[Path], None], lock: threading.Lock
) -> Path:
    """`folder`, built by `build(tmp)` first unless it is already complete."""
    if is_complete(folder, marker, fmt):
        return folder
    with lock:
        if is_complete(folder, marker, fmt):
            return folder
        _clean_stale(folder, marker, fmt)
        tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        try:
            build(tmp)
            try:
                os.rename(tmp, folder)
            except OSError:
                if not is_complete(folder, marker, fmt):  # not a race lost to another process: a real error
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _clean_stale(folder: Path, marker: str, fmt: int) -> None:
    for tmp in folder.parent.glob(f"{folder.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid() or not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
    if folder.exists() and not is_complete(folder, marker, fmt):  # never renamed into place without it
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
