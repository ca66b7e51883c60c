"""fusionlib: the library behind the multi-modality image fusion notebooks.

Importing the package is cheap; import the submodule you need
(``fusionlib.data``, ``fusionlib.metrics``, ``fusionlib.train`` ...).
"""

__version__ = "0.1.0"
