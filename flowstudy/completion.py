"""Bash (and zsh, through bashcompinit) completion for ``flowstudy-report``, in the form Hydra
gives ``flowstudy-train``: ``eval "$(flowstudy-report --shell-completion install=bash)"``.

The installed function asks the program itself (``--shell-completion query=bash`` with the
shell's ``COMP_LINE``), so ``--group <TAB>`` offers the groups of the study on disk.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

INSTALL = """_{name}_completion()
{{
    COMPREPLY=($(COMP_LINE="$COMP_LINE" COMP_POINT="$COMP_POINT" \\
                 {prog} --shell-completion query=bash 2>/dev/null))
}}
complete -o default -F _{name}_completion {prog}"""


def candidates(parser: argparse.ArgumentParser, line: str,
               values: dict[str, Callable[[argparse.Namespace], list[str]]]) -> list[str]:
    """What may come next on ``line``: an option's value (its choices, or ``values[option]`` of
    the options given so far), else the options. Nothing for a path: the shell completes files."""
    words = line.split()[1:]  # without the program
    typed = "" if not words or line.endswith(" ") else words.pop()
    previous = words[-1] if words else ""
    action = next((a for a in parser._actions if previous in a.option_strings), None)
    if action is not None and action.nargs != 0:
        if action.choices:
            options = [str(c) for c in action.choices]
        elif action.dest in values:
            given, _ = parser.parse_known_args(words[:-1])
            options = values[action.dest](given)
        else:
            return []
    else:
        options = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    return sorted(o for o in options if o.startswith(typed))


def shell_completion(request: str, script: str, parser: argparse.ArgumentParser,
                     values: dict[str, Callable[[argparse.Namespace], list[str]]]) -> str:
    """The answer to ``--shell-completion install=bash`` or ``query=bash`` for the console
    script ``script``."""
    if request == "install=bash":
        return INSTALL.format(name=script.replace("-", "_"), prog=script)
    if request == "query=bash":
        return " ".join(candidates(parser, os.environ.get("COMP_LINE", script), values))
    raise SystemExit(f"{script}: --shell-completion takes install=bash or query=bash, "
                     f"not {request!r}")
