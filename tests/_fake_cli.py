"""Run the ``embedgenre`` CLI with the tests' fake encoders in a process of its own.

``python tests/_fake_cli.py index CAT --out IDX --image-encoder fake:a --text-encoder fake:t``:
for tests whose failure before a fix was a crash of the whole process (a bus error), which must
not take pytest with it. The fake encoders give ``DIM``-d vectors so that a few movies weigh
enough to fill a small file system.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).parent))
from _fakes import Factory  # noqa: E402

import embedgenre.encoders as registry  # noqa: E402
from embedgenre.cli.app import app  # noqa: E402

DIM = 4096  # 16 KB a row


def main() -> None:
    factory = Factory(dims={"fake:a": DIM, "fake:t": DIM})
    registry.create_encoder = lambda name, **kw: factory(name)
    known = registry.encoder_spec  # the fakes' weights are "on the machine" for the index's check
    registry.encoder_spec = lambda name: (
        SimpleNamespace(available=True) if name.startswith("fake:") else known(name)
    )
    app(sys.argv[1:], prog_name="embedgenre")


if __name__ == "__main__":
    main()
