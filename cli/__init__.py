"""The ``embedgenre`` command line: thin typer commands over :mod:`embedgenre`."""
