"""The names the library, the CLI and the reports share, defined once.

- :data:`METHODS`: how a head predicts (what ``embedgenre train --method`` takes);
  :data:`TRAINABLE`: the ones that learn from labels (zero-shot needs none).
- :data:`SET_MODALITIES`: what an embedding set embeds (a poster image or a plot text).
- :data:`HEAD_MODALITIES`: what a head scores (``--modality``): one set, or ``both`` fused.
- :data:`FUSIONS`: how ``both`` combines them.
- :data:`EVAL_MODALITIES`: the rows of an evaluation report.
"""

from __future__ import annotations

METHODS: tuple[str, ...] = ("zeroshot", "knn", "mlknn", "linear", "mlp")
TRAINABLE: tuple[str, ...] = ("knn", "mlknn", "linear", "mlp")
SET_MODALITIES: tuple[str, ...] = ("poster", "plot")
HEAD_MODALITIES: tuple[str, ...] = ("poster", "plot", "both")
FUSIONS: tuple[str, ...] = ("early", "late")
EVAL_MODALITIES: tuple[str, ...] = ("poster", "plot", "early_fusion", "late_fusion")
