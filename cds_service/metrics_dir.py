"""PROMETHEUS_MULTIPROC_DIR: the folder where prometheus_client's multiprocess
mode keeps each worker's metrics, one file per metric type and process.

prometheus_client names those files `<type>_<pid>.db` (values.py,
MultiProcessValue: `counter_<pid>.db`, `histogram_<pid>.db`,
`summary_<pid>.db`, `gauge_<mode>_<pid>.db`; tests/test_metrics_dir.py checks
the installed version still does). The server empties the folder of a
previous run's files at start, or they would be counted again, and removes
those files only: never a folder or any other file, so the variable pointed
at the wrong folder (the data folder, /tmp) costs nothing in it.

Another `.db` file there (the SQLite database above all) is a configuration
error, refused before anything starts: /metrics (MultiProcessCollector) reads
every `*.db` in the folder and would fail or count garbage. Anything else is
left alone, with one warning line saying the folder is shared.

No prometheus_client import here: the production server's master process
reads this module, and must not load what its gevent workers patch.
"""

from __future__ import annotations

import os
import re

ENV = "PROMETHEUS_MULTIPROC_DIR"

# prometheus_client's Gauge multiprocess modes (Gauge._MULTIPROC_MODES).
GAUGE_MODES = ("all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum",
               "mostrecent", "livemostrecent")
FILE_NAME = re.compile(r"(?:counter|histogram|summary|gauge_(?:%s))_\d+\.db" % "|".join(GAUGE_MODES))

_SHOWN = 3  # names quoted in a message


def is_metrics_file(name: str) -> bool:
    return FILE_NAME.fullmatch(name) is not None


def _ours(entry: os.DirEntry) -> bool:
    return is_metrics_file(entry.name) and entry.is_file(follow_symlinks=False)


def foreign_entries(path: str) -> list[str]:
    """Names in the folder that are not prometheus_client's files (sorted)."""
    with os.scandir(path) as entries:
        return sorted(entry.name for entry in entries if not _ours(entry))


def clear(path: str) -> list[str]:
    """Remove a previous run's metric files from the folder; return the names
    of everything else in it, which stays."""
    with os.scandir(path) as entries:
        for entry in entries:
            if _ours(entry):
                os.remove(entry.path)
    return foreign_entries(path)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def problem(path: str, database_path: str | None) -> str | None:
    """What makes the folder unusable (one line, without the variable's name),
    or None. `database_path`: the SQLite database file, if the store is one."""
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        return "is not a folder; point it at an empty folder of its own, e.g. /tmp/prometheus-multiproc"
    if database_path:
        real, db = os.path.realpath(path), os.path.realpath(os.path.abspath(database_path))
        if os.path.dirname(db) == real or db.startswith(real + os.sep):
            return (f"holds the SQLite database ({db}): /metrics reads every .db file in this folder; "
                    "give the metrics a folder of their own, e.g. /tmp/prometheus-multiproc")
    if not os.path.isdir(path):
        parent = os.path.dirname(path)
        while not os.path.isdir(parent) and os.path.dirname(parent) != parent:
            parent = os.path.dirname(parent)
        if not os.access(parent, os.W_OK | os.X_OK):
            return f"folder does not exist and cannot be created ({parent} is not writable by this user)"
        return None
    if not os.access(path, os.W_OK | os.X_OK):
        return "folder is not writable by this user; make it writable or use another folder"
    databases = [name for name in foreign_entries(path) if name.endswith(".db")]
    if databases:
        return (f"holds {len(databases)} .db file(s) that are not prometheus_client's ({_names(databases)}): "
                "/metrics reads every .db file in this folder; give the metrics a folder of their own, "
                "e.g. /tmp/prometheus-multiproc")
    return None


def warning(path: str) -> str | None:
    """The folder holds other things than metric files (left alone): one line."""
    if not os.path.isdir(path):
        return None
    others = foreign_entries(path)
    if not others:
        return None
    return (f"holds {len(others)} entries that are not metric files ({_names(others)}); the server removes "
            "only prometheus_client's own files (counter_<pid>.db, gauge_*, histogram_*) and leaves these, "
            "but the metrics should have a folder of their own")
