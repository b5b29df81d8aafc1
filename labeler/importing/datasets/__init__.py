"""Dataset adapters: each turns a source folder into ImportItems (or per-row ImportProblems)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from core.errors import BadInputError
from labeler.importing.datasets import breast_lesions_usg, busbra, folder
from labeler.importing.items import ImportItem, ImportProblem

Adapter = Callable[[Path], Iterator[ImportItem | ImportProblem]]

ADAPTERS: dict[str, Adapter] = {
    folder.NAME: folder.items,
    busbra.NAME: busbra.items,
    breast_lesions_usg.NAME: breast_lesions_usg.items,
}


class DatasetLayoutError(BadInputError):
    """The folder is not laid out as the chosen dataset expects."""


def adapter_for(name: str) -> Adapter:
    try:
        return ADAPTERS[name]
    except KeyError:
        raise BadInputError(f"unknown dataset {name!r} (known: {', '.join(ADAPTERS)})") from None
