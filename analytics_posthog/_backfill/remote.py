"""``s3://`` and ``gs://`` archives through fsspec (the optional ``s3``/``gs`` extras).

Credentials come from where each store's own tools look (``AWS_*`` variables,
``~/.aws``, instance roles; ``GOOGLE_APPLICATION_CREDENTIALS``); an
S3-compatible store (MinIO, R2, a test server) is reached with
``AWS_ENDPOINT_URL`` (which ``--endpoint-url`` sets, so ``--jobs`` workers
see it too).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import IO, Any

from analytics_posthog._backfill.usage import UsageError

#: URL schemes read through fsspec; each is also the name of the extra that installs it.
SCHEMES = frozenset({"s3", "gs"})


def is_url(path: str) -> bool:
    return path.split("://", 1)[0] in SCHEMES and "://" in path


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it); a ``UsageError`` naming the extra to
    install when fsspec or the store's driver is missing."""
    scheme = url.split("://", 1)[0]
    try:
        import fsspec
    except ImportError:
        raise UsageError(
            "%s needs fsspec: pip install 'analytics-posthog[%s]'" % (url, scheme)
        ) from None
    options = {}
    # Passed explicitly as well: botocore releases before 1.31 ignore the variable.
    endpoint = os.environ.get("AWS_ENDPOINT_URL") if scheme == "s3" else None
    if endpoint:
        options["client_kwargs"] = {"endpoint_url": endpoint}
    try:
        return fsspec.core.url_to_fs(url, **options)
    except ImportError as error:
        raise UsageError(
            "%s: %s (pip install 'analytics-posthog[%s]')" % (url, error, scheme)
        ) from None


def list_files(url: str) -> Iterator[tuple[str, int]]:
    """Every file under ``url`` (or the one file it names), in name order,
    skipping hidden names, as (url, size)."""
    fs, path = filesystem(url)
    scheme = url.split("://", 1)[0]
    found = fs.find(path, detail=True)
    for name in sorted(found):
        base = name.rsplit("/", 1)[-1]
        if base.startswith(".") or found[name].get("type") == "directory":
            continue
        yield "%s://%s" % (scheme, name), int(found[name].get("size") or 0)


def open_binary(url: str) -> IO[bytes]:
    fs, path = filesystem(url)
    return fs.open(path, "rb")
