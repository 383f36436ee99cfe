"""`embedgenre audit`: the movies whose genre labels look wrong or incomplete."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from embedgenre.cli.common import console, emit_json, plain, safe

app = typer.Typer()


@app.command()
def audit(
    index_dir: Annotated[Path, typer.Argument(help="Index directory built by `embedgenre index`.")],
    head: Annotated[
        str | None,
        typer.Option(
            "--head",
            help="Saved head whose method and inputs score the movies (default: the best saved "
            "head; a linear poster head when there is none).",
        ),
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="How many movies to list.")] = 50,
    neighbours: Annotated[
        int, typer.Option(min=0, help="Nearest movies asked for evidence (0: none).")
    ] = 10,
    html: Annotated[
        Path | None, typer.Option(help="Also write a self-contained HTML page to this file.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Labels that look wrong or missing, judged by held-out predictions, best evidence first."""
    from embedgenre.audit import audit as run_audit
    from embedgenre.cli.outputs import check_output_file, writing
    from embedgenre.contact_sheet import write_audit_html
    from embedgenre.store import GenreIndex

    if html is not None:
        check_output_file(html, "--html", "audit.html")
    index = GenreIndex.open(index_dir)
    result = run_audit(index, head=head, k=k, neighbours=neighbours)
    page = None
    if html is not None:
        with writing(html, "--html"):
            page = write_audit_html(result, index, html)
    if as_json:
        out = result.to_dict()
        if page:
            out["html"] = str(page.resolve())
        emit_json(out)
        return
    h = result.head
    console.print(
        f"[bold]{result.n_flagged}[/] of {result.n_items} labelled movies have a label that "
        f"looks wrong or missing — judged by {safe(h['spec'])}"
        + (f" (head {safe(h['name'])})" if h["name"] else ""),
        highlight=False,
    )
    for note in result.notes:
        console.print(plain(f"note: {note}"), markup=False, highlight=False)
    table = Table("#", "quality", "id", "title", "labelled", "looks wrong", "looks missing")
    for f in result.findings:
        title = f"{f.title or ''}" + (f" ({f.year})" if f.year else "")

        def shown(kind: str, f=f) -> str:
            return ", ".join(
                f"{i.genre} {i.score:.2f}" + (f" nn {i.neighbours}" if neighbours else "")
                for i in f.issues
                if i.kind == kind
            )

        table.add_row(
            str(f.rank),
            f"{f.quality:.2f}",
            safe(f.id),
            safe(title),
            safe(", ".join(f.labelled)),
            safe(shown("wrong")),
            safe(shown("missing")),
        )
    console.print(table)
    if neighbours:
        console.print(
            f"nn N: how many of the {neighbours} nearest movies side with the finding",
            highlight=False,
        )
    if page:
        console.print(plain(f"wrote {page}"), markup=False, highlight=False)
