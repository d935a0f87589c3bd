"""``python -m lsnet_deploy.cli``: the ``lsnet-deploy`` command."""

from __future__ import annotations

from .app import main

if __name__ == "__main__":
    main()
