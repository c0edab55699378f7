"""The one exception type for errors a user can cause (bad file, wrong size, missing weights),
and ``Stopped``, for work given up by whoever asked for it."""

from __future__ import annotations

import importlib
import importlib.metadata
import shlex
import threading


class EdgefillError(Exception):
    """A problem with the user's input or setup; the message says what to do about it.

    The CLI prints it as a single line without a traceback and exits with status 2.
    """


class Stopped(Exception):
    """A call given up through its ``stop`` event: nobody is waiting for its result."""


def check_stop(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise Stopped


def require_extra(extra: str, purpose: str, *modules: str) -> None:
    """Raise one EdgefillError naming the pip extra when a module ``purpose`` needs is missing.

    ``modules`` are import names; ``"a|b"`` accepts either (a package that renamed its module).
    Checked up front, so a command fails in one line instead of a traceback half way through.
    """
    for entry in modules:
        names = entry.split("|")
        if not any(_importable(name) for name in names):
            raise EdgefillError(
                f"{purpose} needs the optional package {names[0]!r}, which is not installed: "
                + install_hint(extra)
            )


def install_hint(extra: str) -> str:
    """The pip command that installs the packages of one of edgefill's extras, read from this
    installation's metadata. Not "pip install 'edgefill[extra]'": edgefill is on no package
    index, so pip would look for another project of that name there."""
    try:
        requires = importlib.metadata.requires("edgefill") or []
    except importlib.metadata.PackageNotFoundError:
        requires = []
    marker = f'extra == "{extra}"'
    packages = [r.split(";")[0].strip() for r in requires if marker in r.replace("'", '"')]
    if not packages:  # an extra newer than this installation's metadata
        return f"pip install -e '.[{extra}]' in the edgefill checkout"
    return "pip install " + " ".join(shlex.quote(p) for p in packages)


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True
