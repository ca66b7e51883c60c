"""One file per paper, plus a small registry: ``create_model("siba")``, ``list_models("*_tiny")``.

Importing this package imports every paper file, which registers its configurations.
"""

from fusionlib.models._registry import ModelEntry, create_model, list_models, model_entry, register_model
from fusionlib.models import aidfusion  # noqa: F401  (registers "aidfusion", "aidfusion_tiny")
from fusionlib.models import dmnet  # noqa: F401  (registers "dmnet", "dmnet_tiny")
from fusionlib.models import lkc_funet  # noqa: F401  (registers "lkc_funet", "lkc_funet_code", "lkc_funet_tiny")
from fusionlib.models import rpfnet  # noqa: F401  (registers "rpfnet", "rpfnet_tiny")
from fusionlib.models import siba  # noqa: F401  (registers "siba", "siba_tiny")
from fusionlib.models import tinyfuse  # noqa: F401  (registers "tinyfuse", "tinyfuse_tiny")

__all__ = ["ModelEntry", "create_model", "list_models", "model_entry", "register_model"]
