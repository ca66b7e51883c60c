"""Folder layouts of the public fusion datasets: where source A (ir / MRI) and B (vi / CT, PET, SPECT) live.

A :class:`Layout` gives, relative to a dataset root, the folder of each source; ``{split}`` in a
folder is replaced by the split name. Pairs are matched by file stem inside those two folders.

========  ===========================================  =======================  ===============
name      A folder                                     B folder                 splits
========  ===========================================  =======================  ===============
msrs      ``{split}/ir``                               ``{split}/vi``           train, test
tno       ``ir``                                       ``vi``                   (none)
roadscene ``cropinfrared``                             ``crop_LR_visible``      (none)
llvip     ``infrared/{split}``                         ``visible/{split}``      train, test
m3fd      ``ir``                                       ``vi``                   (none)
harvard_* ``MRI_CT/MRI`` (``MRI_PET/MRI``, ...)        ``MRI_CT/CT`` (...)      (none)
========  ===========================================  =======================  ===============

These are the official layouts (MSRS, LLVIP, RoadScene repos; TNO and Harvard as packaged by
CDDFuse's ``test_img``; M3FD as in TarDAL's samples). A custom layout is one line:
``Layout("mine", a="IR", b="VIS")``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fusionlib.data.io import FusionDataError

__all__ = ["Layout", "LAYOUTS", "get_layout"]


@dataclass(frozen=True)
class Layout:
    """Where the two sources of a paired dataset live, relative to its root.

    Args:
        name: registry name (``"msrs"``).
        a: folder of source A, the one returned as ``ir`` (infrared, or MRI); may contain ``{split}``.
        b: folder of source B, returned as ``vi`` (visible, or CT / PET / SPECT); may contain ``{split}``.
        splits: split names that ``{split}`` takes; empty when the layout has no split folders.
        a_modality, b_modality: human names of the sources, for messages and plots.
    """

    name: str
    a: str
    b: str
    splits: tuple[str, ...] = ()
    a_modality: str = "infrared"
    b_modality: str = "visible"

    def folders(self, split: str | None = None) -> tuple[str, str]:
        """Relative folders ``(a, b)`` for ``split``; checks that the split fits the layout."""
        if self.splits:
            if split is None:
                raise FusionDataError(
                    f"layout {self.name!r} has split folders {self.splits}; pass split=one of them"
                )
            if split not in self.splits:
                raise FusionDataError(
                    f"unknown split {split!r} for layout {self.name!r}; expected one of {self.splits}"
                )
            return self.a.format(split=split), self.b.format(split=split)
        if split is not None:
            raise FusionDataError(
                f"layout {self.name!r} has no split folders ({self.a!r}, {self.b!r}) but split={split!r} "
                "was given; point root at the split's own folder instead"
            )
        return self.a, self.b


LAYOUTS: dict[str, Layout] = {
    lay.name: lay
    for lay in (
        Layout("msrs", a="{split}/ir", b="{split}/vi", splits=("train", "test")),
        Layout("tno", a="ir", b="vi"),
        Layout("roadscene", a="cropinfrared", b="crop_LR_visible"),
        Layout("llvip", a="infrared/{split}", b="visible/{split}", splits=("train", "test")),
        Layout("m3fd", a="ir", b="vi"),
        Layout("harvard_ct", a="MRI_CT/MRI", b="MRI_CT/CT", a_modality="MRI", b_modality="CT"),
        Layout("harvard_pet", a="MRI_PET/MRI", b="MRI_PET/PET", a_modality="MRI", b_modality="PET"),
        Layout("harvard_spect", a="MRI_SPECT/MRI", b="MRI_SPECT/SPECT", a_modality="MRI", b_modality="SPECT"),
    )
}


def get_layout(layout: str | Layout) -> Layout:
    """A :class:`Layout` by registry name (a ``Layout`` passes through).

    Examples:
        >>> get_layout("llvip").folders("test")
        ('infrared/test', 'visible/test')
    """
    if isinstance(layout, Layout):
        return layout
    try:
        return LAYOUTS[str(layout).lower()]
    except KeyError:
        raise FusionDataError(
            f"unknown layout {layout!r}; known layouts: {', '.join(LAYOUTS)} (or pass a Layout(...))"
        ) from None
