"""Read a study's runs back from MLflow and report when functional and structural modularity emerge.

``analysis.emergence`` is import-light (NumPy/SciPy only) so training code can use :func:`onset`.
"""

from analysis.emergence import Onset, onset

__all__ = ["Onset", "onset"]
