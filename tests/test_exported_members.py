"""What ``import fedsilo`` offers, pinned (after httpx's ``test_exported_members.py``).

Adding a public name is a decision: put it in :data:`EXPORTS` with the module that is its home,
and in ``fedsilo.__all__``. Submodules (``fedsilo.errors`` once imported) are attributes of the
package too, but not exports, so they are left out of the comparison.
"""

from __future__ import annotations

import importlib
import types

import fedsilo

#: exported name -> the module that defines it
EXPORTS: dict[str, str] = {
    "__version__": "fedsilo",
    "FedsiloError": "fedsilo.errors",
    "ConfigError": "fedsilo.errors",
    "DataError": "fedsilo.errors",
    "PolicyError": "fedsilo.errors",
    "ProtocolError": "fedsilo.errors",
    "AuthError": "fedsilo.errors",
    "CryptoError": "fedsilo.errors",
    "JobError": "fedsilo.errors",
    "SiloUnavailable": "fedsilo.errors",
    "JobCancelled": "fedsilo.errors",
    "NotFound": "fedsilo.errors",
    "LimitExceeded": "fedsilo.errors",
}
#: dunder names that are exports (everything else starting with "_" is private).
PUBLIC_DUNDERS = {"__version__"}


def _public_names() -> list[str]:
    return [
        name
        for name, value in vars(fedsilo).items()
        if (not name.startswith("_") or name in PUBLIC_DUNDERS)
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # from __future__ import annotations
    ]


def test_all_is_exactly_the_pinned_exports() -> None:
    assert sorted(fedsilo.__all__) == sorted(EXPORTS)
    assert fedsilo.__all__ == sorted(fedsilo.__all__, key=lambda n: (n.startswith("_"), n))


def test_every_public_name_is_exported() -> None:
    assert sorted(_public_names()) == sorted(fedsilo.__all__)


def test_exports_are_their_home_module_objects() -> None:
    for name, home in EXPORTS.items():
        assert getattr(fedsilo, name) is getattr(importlib.import_module(home), name), name


def test_every_error_class_of_the_tree_is_exported() -> None:
    errors = importlib.import_module("fedsilo.errors")
    tree = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, fedsilo.FedsiloError)
    }
    assert tree <= set(fedsilo.__all__)


def test_version_matches_the_distribution() -> None:
    from importlib.metadata import version

    assert fedsilo.__version__ == version("fedsilo")
