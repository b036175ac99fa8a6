"""The data plane's compiled kernels (`zmr/native/kernels.c`), or None where they were not built.

zmr's install builds them wherever a C compiler is at hand; without one it goes on, and the numpy passes
that each caller keeps beside its kernel do the same work, more slowly.
"""

from __future__ import annotations

from types import ModuleType

kernels: ModuleType | None
try:
    from zmr.core import _kernels
except ImportError:   # pragma: no cover - an install without a C compiler
    kernels = None
else:
    kernels = _kernels
