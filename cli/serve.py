"""`embedgenre serve`: the HTTP API and web page over an index."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from embedgenre.cli.common import err_console, fail

app = typer.Typer()


class JsonLines(logging.Formatter):
    """One JSON object per log record: ts, level, logger, message, and a request's fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(doc)


def _json_logging() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines())
    root = logging.getLogger("embedgenre")
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


@app.command()
def serve(
    index: Annotated[Path, typer.Argument(help="Index directory built by `embedgenre index`.")],
    host: Annotated[
        str, typer.Option(help="Address to bind (loopback unless a token is given).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    token_file: Annotated[
        Path | None,
        typer.Option(help="File holding the bearer token clients must send (needed off loopback)."),
    ] = None,
    head: Annotated[
        str | None, typer.Option(help="Saved head to answer with (default: the best per input).")
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--cors-origin",
            help="Allow browser pages from this origin (repeatable; off by default).",
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="A name clients use in the Host header, besides localhost, 127.0.0.1, [::1] "
            "and the --host address (repeatable; '*' trusts any, e.g. behind a proxy that "
            "checks it).",
        ),
    ] = None,
    insecure_no_token: Annotated[
        bool,
        typer.Option("--insecure-no-token", help="Serve a non-loopback address without a token."),
    ] = False,
    max_upload_mb: Annotated[
        float, typer.Option(min=0.1, max=100.0, help="Request body cap in MB.")
    ] = 10.0,
    timeout: Annotated[
        float, typer.Option(min=1.0, help="Seconds a request may take before a 504.")
    ] = 30.0,
    decode_memory_mb: Annotated[
        float,
        typer.Option(
            min=16.0,
            help="MB of pixels all requests together may be decoding at once (others wait).",
        ),
    ] = 256.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Log JSON lines with request ids.")
    ] = False,
) -> None:
    """Serve genre predictions, similar movies, search and a web page over HTTP."""
    import uvicorn

    from embedgenre.serve import ServeConfig, check_bind, create_app, read_token_file
    from embedgenre.serve.server import uvicorn_config
    from embedgenre.serve.service import one_blas_thread_per_request
    from embedgenre.store.reader import read_manifest

    token = read_token_file(token_file) if token_file else None
    check_bind(host, token, insecure_no_token)
    read_manifest(index)  # a missing or damaged index fails here, before binding
    if as_json:
        _json_logging()
    config = ServeConfig(
        index_dir=index,
        host=host,
        port=port,
        token=token,
        insecure_no_token=insecure_no_token,
        head=head,
        cors_origins=tuple(cors_origin or ()),
        allowed_hosts=tuple(allowed_host or ()),
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        request_timeout_s=timeout,
        decode_memory_bytes=int(decode_memory_mb * 2**20),
        json_logs=as_json,
    )
    if not token and insecure_no_token and host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger("embedgenre.serve").warning("serving %s without a token", host)
    shown = f"[{host}]" if ":" in host else host
    message = f"serving {index} at http://{shown}:{port}/ (API docs at /docs)"
    if as_json:
        logging.getLogger("embedgenre.serve").info(message)
    else:
        err_console.print(message, highlight=False)
    failed: list[str] = []
    one_blas_thread_per_request()

    def stop(error: str) -> None:
        failed.append(error)
        server.should_exit = True

    server = uvicorn.Server(
        uvicorn_config(
            create_app(config, on_load_error=stop),
            config,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    )
    server.run()
    if failed:
        raise fail(failed[0])
    if not server.started:
        raise fail(
            f"could not listen on {shown}:{port} (in use, or not an address of this machine)"
        )
