"""README promises: the two commands at the top, and CI running exactly the test command."""

from __future__ import annotations

import re

from conftest import REPO


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (REPO / "README.md").read_text()
    blocks = _code_blocks(readme)
    main_cmd = blocks[0].strip().splitlines()[0]
    test_cmd = blocks[1].strip()
    assert readme.index("```bash") < readme.index("## ")  # the commands come first
    assert "-c constraints.txt torch==2.13.0" in main_cmd and "lsnet-deploy" in main_cmd
    assert "--weights random" in main_cmd
    assert "-c constraints.txt torch==2.13.0" in test_cmd and "pytest" in test_cmd
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_cmd in ci_lines


def test_constraints_pin_torch() -> None:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    assert "torch==2.13.0" in lines and "typing_extensions==4.12.2" in lines
    assert "numpy<2.4" in lines
