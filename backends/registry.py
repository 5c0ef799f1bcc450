"""Backend discovery: modules of this package with a ``BACKEND`` class, plus entry points."""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from functools import cache

import backends
from backends.base import Backend

ENTRY_POINT_GROUP = "trackbench.backends"
#: Display order of the built-in backends (others follow alphabetically).
PREFERRED_ORDER = ("impactx", "cheetah", "inhouse", "xsuite", "pyat", "ocelot", "rftrack")


@cache
def backend_classes() -> dict[str, type[Backend]]:
    """All registered backend classes by name (importing an adapter never imports its code)."""
    found: dict[str, type[Backend]] = {}
    for module_info in pkgutil.iter_modules(backends.__path__):
        if module_info.name in ("base", "registry"):
            continue
        module = importlib.import_module(f"backends.{module_info.name}")
        cls = getattr(module, "BACKEND", None)
        if cls is not None:
            found[cls.name] = cls
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        cls = entry.load()
        found.setdefault(cls.name, cls)
    order = {name: i for i, name in enumerate(PREFERRED_ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], 99), kv[0])))


def load_backend_class(spec: str) -> type[Backend]:
    """A backend class by registry id, or by ``module:Class`` for one outside the registry
    (a plug-in under development, or the deliberately misbehaving backends of the tests)."""
    if ":" in spec:
        module_name, _, class_name = spec.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as error:
            raise KeyError(f"cannot load backend class {spec!r}: {error}") from error
        return cls
    classes = backend_classes()
    if spec not in classes:
        raise KeyError(f"unknown backend {spec!r}; known: {', '.join(classes)}")
    return classes[spec]


def get_backend(name: str) -> Backend:
    """An instance of the named backend (id or ``module:Class``); KeyError names the known
    ones."""
    if ":" in name:
        return load_backend_class(name)()
    classes = backend_classes()
    if name not in classes:
        raise KeyError(f"unknown backend {name!r}; known: {', '.join(classes)}")
    return classes[name]()


def available_backends() -> list[str]:
    """Names of the backends whose code imports here."""
    return [n for n, cls in backend_classes().items() if cls.availability().available]


def backends_supporting_kind(kind: str) -> list[str]:
    """Names of backends whose adapters translate an element kind."""
    return [n for n, cls in backend_classes().items() if kind in cls.element_kinds]
