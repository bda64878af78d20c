"""Opening the Optuna storage a search keeps its study in, from one URL.

* ``sqlite:///path/to/study.db``: one file; the default; a killed search continues from it when rerun. For one
  worker process (SQLite locks the whole file; Optuna advises against it for parallel workers).
* ``journal:///path/to/study.log`` (or ``journal:relative.log``): Optuna's journal file, safe for several worker
  processes on one machine (file locks; not over NFS).
* ``postgresql://user:password@host/db``, ``mysql+pymysql://...``: a database server, for workers on several
  machines (needs its SQLAlchemy driver, e.g. ``psycopg2``).

Example:
    >>> import os, tempfile
    >>> storage = open_storage("journal:" + os.path.join(tempfile.mkdtemp(), "study.log"))
    >>> type(storage).__name__
    'JournalStorage'
"""
from __future__ import annotations

import os
from typing import Any

from compress.errors import CompressError

__all__ = ["open_storage", "describe_url", "require_optuna"]


def require_optuna():
    """Import Optuna, or say how to install it.

    Raises:
        CompressError: Optuna is not installed.
    """
    try:
        import optuna
    except ImportError:
        raise CompressError("the recipe search needs Optuna: pip install 'compress[search]' (or pip install "
                            "optuna)") from None
    return optuna


def describe_url(url: Any) -> str:
    """The URL with any password hidden, for messages and logs (a storage object: its class)."""
    if not isinstance(url, str):
        return f"an {type(url).__name__}"
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
    return url


def open_storage(url: Any) -> Any:
    """An Optuna storage for ``url`` (see the module docstring); an Optuna storage object is returned as it is
    (e.g. ``optuna.storages.InMemoryStorage()`` for a search that needs no file).

    Raises:
        CompressError: a malformed URL, a folder that does not exist, a missing database driver, or a server
            that cannot be reached; the message names the URL (password hidden) and the cause.
    """
    optuna = require_optuna()
    if isinstance(url, optuna.storages.BaseStorage):
        return url
    if not isinstance(url, str) or not url:
        raise CompressError(f"expected a storage URL (sqlite:///file.db, journal:///file.log, postgresql://...), "
                            f"got {url!r}")
    shown = describe_url(url)
    if url.startswith("journal:"):
        path = url[len("journal:"):]
        path = path[2:] if path.startswith("//") else path
        if not path:
            raise CompressError(f"storage {shown}: no journal file named")
        _check_folder(path, shown)
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        try:
            return JournalStorage(JournalFileBackend(path))
        except Exception as exc:
            raise CompressError(f"cannot open the study storage {shown}: {type(exc).__name__}: {exc}") from None
    if "://" not in url:
        raise CompressError(f"storage {shown!r} is not a URL (sqlite:///file.db, journal:///file.log, "
                            f"postgresql://user@host/db)")
    engine_kwargs: dict = {}
    if url.startswith("sqlite:"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            _check_folder(path, shown)
        engine_kwargs = {"connect_args": {"timeout": 30}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except ImportError as exc:
        hint = (" (PostgreSQL: pip install psycopg, or psycopg2-binary with postgresql+psycopg2://...)"
                if url.startswith("postgres") else "")
        raise CompressError(f"cannot open the study storage {shown}: its database driver is not installed"
                            f"{hint}: {exc}") from None
    except Exception as exc:  # SQLAlchemy's errors: unreachable server, bad credentials, bad URL
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CompressError(f"cannot open the study storage {shown}: {type(exc).__name__}: {reason}") from None


def _check_folder(path: str, shown: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CompressError(f"cannot open the study storage {shown}: the folder {folder} does not exist")
