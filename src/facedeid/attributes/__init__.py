"""Facial attributes for Ch. 4 (differentially private k-anonymous attribute obfuscation).

* :mod:`.features` — φ (dlib 128-D descriptor, the neighbour-search feature of Algorithm 1) and the
  landmark-region texture statistics fed to the classifier;
* :mod:`.classifier` — the 13-attribute classifier (Ch. 4.4.1, Eq. 4.3), shipped in ``data/``;
* :mod:`.train` — ``python -m facedeid.attributes.train --data DIR --out DIR`` rebuilds it.

Algorithm 1 itself lives in :mod:`facedeid.privacy.attributes`.
"""
from ..privacy.attributes import ATTRIBUTES, GROUPS

__all__ = ["ATTRIBUTES", "GROUPS"]
