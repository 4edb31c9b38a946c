"""Model kinds by name: the protocol every kind implements, and one registration per kind.

Training, evaluation, the model registry, the CLI's ``--kind`` choices and the stream workers find a kind
here and nowhere else, so adding a kind means writing its class and registering it once (the bottom of this
module holds the built-in ones). A registration names the class by import path and the class is imported
on first use, because listing the kinds (``fraudstream train --help``) must not import TensorFlow.

A kind's name is what ``model.json``, the registry's index, model cards and ``--kind`` all say. Names a
kind was known by before are registered as its aliases: they resolve to the kind (old artifacts stay
loadable, old command lines keep working) but are never written or offered.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

EpochCallback = Callable[[int, int, dict[str, float]], None]
"""``(epoch, epochs, numbers)`` after each training epoch (the CLI draws progress from it)."""


@runtime_checkable
class FraudModel(Protocol):
    """What every model kind implements.

    scikit-learn's estimator conventions (constructor arguments are the parameters, ``get_params`` /
    ``set_params``, ``fit`` returns the estimator, fitted state ends in ``_``), plus what the pipeline needs:
    a flat-file ``save``/``load`` (no pickles) and a scorer for matrices that the workers call per batch.
    Scores grow with suspicion, and a payment is an alert when its score is above the threshold.
    """

    kind: ClassVar[str]
    """The registered name, written into ``model.json``."""
    score_label: ClassVar[str]
    """What ``score_samples`` returns, in words, for plots ("reconstruction error", "fraud log-odds")."""
    feature_names: tuple[str, ...]
    """Input columns, in the order :meth:`matrix_scorer` expects them."""
    training_seconds_: float | None

    def fit(self, X: Any, y: Any = None, *, on_epoch: EpochCallback | None = None) -> FraudModel:
        """Train on a table or matrix; ``on_epoch`` is called by kinds that train in epochs, ignored by others."""
        ...

    def score_samples(self, X: Any) -> np.ndarray:
        """One score per row of a NumPy array, pandas DataFrame or Arrow table/batch."""
        ...

    def matrix_scorer(self) -> Callable[[np.ndarray], np.ndarray]:
        """The workers' hot path: scores for a matrix already in :attr:`feature_names` order."""
        ...

    def get_params(self, deep: bool = True) -> dict[str, Any]: ...

    def set_params(self, **params: Any) -> FraudModel: ...

    def save(self, directory: str | Path) -> Path:
        """Write ``model.json`` (naming :attr:`kind`) and the kind's own files into ``directory``."""
        ...

    @classmethod
    def load(cls, directory: str | Path) -> FraudModel:
        """What :meth:`save` wrote, loaded without unpickling anything."""
        ...


class UnknownKindError(ValueError):
    """A model kind that no registration names."""


@dataclass(frozen=True)
class Registration:
    name: str
    target: str | type
    """The class, or ``"package.module:Class"`` to import on first use."""
    aliases: tuple[str, ...] = ()


_KINDS: dict[str, Registration] = {}
_ALIASES: dict[str, str] = {}


def register_kind(name: str, target: str | type, *, aliases: Sequence[str] = ()) -> None:
    """Make ``name`` a model kind implemented by ``target`` (a class, or ``"module:Class"``).

    ``aliases`` are names the kind was known by; a name may belong to one kind only.
    """
    taken = sorted({name, *aliases} & (set(_KINDS) | set(_ALIASES)))
    if taken:
        raise ValueError(f"model kind name {', '.join(map(repr, taken))} is already registered")
    _KINDS[name] = Registration(name, target, tuple(aliases))
    _ALIASES.update(dict.fromkeys(aliases, name))


def kind_names() -> tuple[str, ...]:
    """The registered kinds' names, in registration order (aliases left out)."""
    return tuple(_KINDS)


def canonical_kind(name: str) -> str:
    """The registered name of ``name``, which may be an alias."""
    if name in _KINDS:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    raise UnknownKindError(f"unknown model kind {name!r} (known: {', '.join(_KINDS)})")


def kind_class(name: str) -> type[FraudModel]:
    """The class of kind ``name`` (or of an alias), imported if it was registered by path."""
    registration = _KINDS[canonical_kind(name)]
    target = registration.target
    if isinstance(target, str):
        module, _, attribute = target.partition(":")
        target = getattr(importlib.import_module(module), attribute)
    if getattr(target, "kind", None) != registration.name:
        raise TypeError(
            f"{target.__module__}.{target.__qualname__} is registered as model kind {registration.name!r} "
            f"but its kind attribute says {getattr(target, 'kind', None)!r}"
        )
    return target


def kind_parameters(name: str) -> tuple[str, ...]:
    """The parameters a kind's constructor takes (scikit-learn's notion of an estimator's parameters)."""
    signature = inspect.signature(kind_class(name))
    return tuple(p.name for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD)


def create_model(name: str, **params: Any) -> FraudModel:
    """A new, untrained model of kind ``name``."""
    return kind_class(name)(**params)


def same_kind(found: object, name: str) -> bool:
    """Whether ``found`` (as read from a ``model.json``) names kind ``name``, directly or by an alias."""
    return isinstance(found, str) and (found == name or _ALIASES.get(found) == name)


register_kind("autoencoder", "models.autoencoder:Autoencoder")
register_kind("logistic-baseline", "models.baseline:LogisticBaseline", aliases=("baseline",))  # the CLI's old spelling
