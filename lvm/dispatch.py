"""Double dispatch on a pair of types, as ``torch.distributions.register_kl`` does: the entries of a registry keyed by
``(type, type)`` that match two objects, most specific first. Used by the closed-form KLs (:mod:`lvm.divergences`) and
the held-out estimators (:mod:`lvm.estimators.heldout`)."""

from __future__ import annotations

from typing import TypeVar

__all__ = ["matches_by_specificity"]

T = TypeVar("T")


def matches_by_specificity(registry: dict[tuple[type, type], T], first: object, second: object) -> list[T]:
    """The values of ``registry`` whose key ``(A, B)`` has ``first`` an ``A`` and ``second`` a ``B``, ordered by how
    close ``A`` stands to ``type(first)`` in its method resolution order, then ``B`` to ``type(second)``. ``object``
    as a key matches anything, ``None`` included."""
    ranked = [((type(first).__mro__.index(a), type(second).__mro__.index(b)), value)
              for (a, b), value in registry.items() if isinstance(first, a) and isinstance(second, b)]
    return [value for _, value in sorted(ranked, key=lambda entry: entry[0])]
