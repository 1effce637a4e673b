"""Turning the URIs of a manifest into local paths.

In a pod, ``pvc://<claim>/<path>`` is mounted by the operator at ``/mnt/<claim>`` and
``s3://`` is synced to a scratch directory by the init container; locally the runner maps claim
names to directories (``tuneline run --volume data=examples/data``). Paths never leave their
volume: the API already rejects ``..`` segments, and this module checks again after resolving.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

POD_VOLUME_ROOT = Path(os.environ.get("TUNELINE_VOLUME_ROOT", "/mnt"))


class StorageError(ValueError):
    pass


def resolve_uri(uri: str, volumes: dict[str, Path] | None = None) -> Path:
    """Local path for ``uri``. ``volumes`` maps PVC claim names (and S3 buckets) to directories."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        path = Path(parsed.path)
        if not path.is_absolute():
            raise StorageError(f"{uri}: file:// URIs must be absolute (file:///path)")
        return _no_escape(path, Path("/"), uri)
    if parsed.scheme in ("pvc", "s3"):
        name = parsed.netloc
        if volumes is not None and name in volumes:
            root = Path(os.path.abspath(volumes[name]))
        elif volumes is not None:
            known = ", ".join(sorted(volumes)) or "none"
            raise StorageError(f"{uri}: no local directory for {parsed.scheme} volume {name!r} "
                               f"(known: {known}); pass --volume {name}=<dir>")
        else:
            root = Path(os.path.abspath(POD_VOLUME_ROOT / name))
        return _no_escape(root / parsed.path.lstrip("/"), root, uri)
    raise StorageError(f"{uri}: unsupported scheme {parsed.scheme!r} (use pvc://, s3:// or file://)")


def _no_escape(path: Path, root: Path, uri: str) -> Path:
    """Refuse '..' climbing out of the volume (checked on the path as written). Symlinks inside a
    volume are followed on purpose: a volume's owner may link a base model kept elsewhere."""
    normal = Path(os.path.normpath(path))
    if normal != root and root not in normal.parents:
        raise StorageError(f"{uri}: resolves outside its volume ({normal})")
    return normal
