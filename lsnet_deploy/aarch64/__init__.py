"""Phone kernels on an x86 host: artifacts run with the aarch64 kernels of XNNPACK (LiteRT)
and ONNX Runtime, in an arm64 Debian Python under qemu-user.

:mod:`.environment` says where the environment is and how its interpreter is started,
:mod:`.setup` builds it (``lsnet-deploy setup-aarch64``), :mod:`.run` runs an artifact in it
(through the self-contained :mod:`._runner`). The comparison with PyTorch and with the host's
own run is :func:`lsnet_deploy.pipeline.validate` with ``arch="aarch64"``.
"""

from __future__ import annotations

from .environment import DEFAULT_CPU, SETUP_COMMAND, Aarch64Env, env_dir, find_env

__all__ = ["DEFAULT_CPU", "SETUP_COMMAND", "Aarch64Env", "env_dir", "find_env"]
