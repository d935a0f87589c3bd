"""The ``lsnet-deploy`` command line (typer): a thin root and one module per command group.

* :mod:`.app`: the root: the app, ``--verbose`` / ``--version``, :data:`EXIT_CODES`, :func:`main`;
* :mod:`._common`: consoles, option aliases, choice enums derived from the registries, JSON
  output, progress, logging (the only CLI module the leaves import);
* :mod:`.models`: ``models``, ``info``, ``predict``;
* :mod:`.export`: ``export``, ``validate``, ``quant-report``;
* :mod:`.bench`: the ``bench`` group (``host``, ``coreml``, ``android``, ``ios-harness``,
  ``import``);
* :mod:`.report`: ``report``.

Commands parse options and print; the work is the library's (:mod:`lsnet_deploy.pipeline`,
:mod:`lsnet_deploy.describe`, :mod:`lsnet_deploy.bench`).
"""

from __future__ import annotations

from .app import EXIT_CODES, app, main

__all__ = ["EXIT_CODES", "app", "main"]
