"""Start the Streamlit app (`ui/app.py`) for `mianjing ui`: localhost, headless, usage statistics off.

The app reads the same MIANJING_* settings as the CLI, so the CLI's flags reach it as those variables.

Does not: open a browser, or bind to anything but `host` (default 127.0.0.1).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from assistant.settings import ENV, Settings
from ingest.load import note_paths

APP = Path(__file__).resolve().parent / "app.py"


def command(port: int, *, host: str = "127.0.0.1") -> list[str]:
    """The `streamlit run` command line for the app."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        f"--server.port={port}",
        f"--server.address={host}",
        "--server.headless=true",  # no browser opened, no e-mail prompt
        "--browser.gatherUsageStats=false",  # nothing is sent anywhere
        "--server.fileWatcherType=none",
        "--client.toolbarMode=minimal",
    ]


def environment(settings: Settings) -> dict[str, str]:
    """This process's environment with `settings` written back as MIANJING_* variables."""
    env = dict(os.environ)
    for var, name in ENV.items():
        value = getattr(settings, name)
        if value is not None and value != "":
            env[var] = str(value)
    return env


def check_port(host: str, port: int) -> None:
    """RuntimeError with what to do when `port` cannot be bound on `host`."""
    if not 0 < port < 65536:
        raise RuntimeError(f"port {port} is not a TCP port: use 1-65535")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        if os.name == "posix":  # as Streamlit does: closed connections in TIME_WAIT do not block the port
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise RuntimeError(f"cannot listen on {host}:{port} ({e.strerror}): choose another --port") from e


def run(settings: Settings, *, port: int = 8501, host: str = "127.0.0.1") -> int:
    """Serve the app until Ctrl-C (on POSIX this process becomes Streamlit and does not return)."""
    try:
        import streamlit  # noqa: F401
    except ImportError as e:
        raise RuntimeError(f"{e}: pip install streamlit==1.67.0") from e
    note_paths(settings.corpus)  # a missing notes folder is said here, in one line
    check_port(host, port)
    print(f"mianjing: the app is at http://{'localhost' if host == '127.0.0.1' else host}:{port}", flush=True)
    line = command(port, host=host)
    if os.name == "posix":  # become Streamlit: a signal to this process then stops the app itself
        os.execve(line[0], line, environment(settings))
    return subprocess.call(line, env=environment(settings))
