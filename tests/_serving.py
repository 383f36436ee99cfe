"""Helpers for the HTTP service tests: an index with trained heads, a free port, a server thread."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from typer.testing import CliRunner

from embedgenre.cli.app import app as cli
from embedgenre.serve import ServeConfig
from embedgenre.serve.service import Service


def index_with_heads(source: Path, out: Path) -> Path:
    """A copy of index ``source`` in ``out`` with a linear head on posters and one on plots."""
    shutil.copytree(source, out)
    for modality in ("poster", "plot"):
        args = ["train", str(out), "--method", "linear", "--modality", modality, "--folds", "0"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
    return out


@contextmanager
def running_service(index_dir: Path):
    """A started :class:`Service` of ``index_dir`` (closed on exit)."""
    svc = Service(ServeConfig(index_dir=index_dir))
    svc.start()
    try:
        yield svc
    finally:
        svc.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """``app`` served on 127.0.0.1 in a thread of this process as `embedgenre serve` runs it,
    with the head limits of ``config`` (a context manager)."""

    def __init__(self, app, config: ServeConfig):
        import uvicorn

        from embedgenre.serve.server import uvicorn_config

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = replace(config, host="127.0.0.1", port=self.port)
        self.server = uvicorn.Server(uvicorn_config(app, config, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def page_in_chromium(service: Service, profile: Path):
    """The service's web page served on 127.0.0.1 and a headless Chromium to drive it: yields
    (the server's URL, the driver, a waiter); the browser is quit and the server stopped after."""
    from _chromium import chrome, waiter

    from embedgenre.serve import create_app

    with ServerThread(create_app(service.config, service), service.config) as server:
        driver = chrome(profile)
        try:
            yield server.url, driver, waiter(driver)
        finally:
            driver.quit()
