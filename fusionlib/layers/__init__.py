"""Paper-agnostic building blocks, one idea per file (norm, SE, Restormer)."""

from fusionlib.layers.norm import LayerNorm2d
from fusionlib.layers.restormer import GDFN, MDTA, RestormerBlock, channel_attention
from fusionlib.layers.se import SE, ResSE

__all__ = ["LayerNorm2d", "SE", "ResSE", "MDTA", "GDFN", "RestormerBlock", "channel_attention"]
