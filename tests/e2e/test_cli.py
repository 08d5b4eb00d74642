"""One run through the real command line (``python -m flowstudy.train``): what it writes, and
the one-line errors it exits with."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..helpers import TINY, cli, name_of

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(("args", "expected"), [
    (["train.lr=(1"], "'train.lr=(1' is not a valid override (extraneous input '('); quote a "
     "value holding spaces, brackets or commas, e.g. 'name=\"a b\"'"),
    (["train.lr=1", "2"], "'2' is not an override (key=value); quote a value holding spaces, "
     "brackets or commas, e.g. 'name=\"a b\"'"),
    (["hydra.run.dir=afile"], "afile: File exists; hydra.run.dir (hydra.sweep.dir with -m) must "
     "be a directory that can be created and written"),
])
def test_command_line_mistakes_are_one_line_with_exit_2(tmp_path: Path, args: list[str],
                                                        expected: str) -> None:
    (tmp_path / "afile").write_text("")
    proc = cli([f"study_dir={tmp_path / 'study'}", *args], cwd=tmp_path)
    assert (proc.returncode, proc.stderr.strip()) == (2, f"flowstudy: error: {expected}")
    assert not (tmp_path / "study").exists()


TINY_NAME = name_of(TINY)


def test_an_unwritable_checkpoint_dir_is_refused_before_any_work(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = cli([*TINY, f"study_dir={tmp_path / 'study'}", f"checkpoint.dir={blocker}/ckpts",
                f"hydra.run.dir={tmp_path / 'out'}"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"flowstudy: error: checkpoint.dir: {blocker}/ckpts/"
                                   f"{TINY_NAME} is not a writable directory "
                                   f"(Not a directory)")
    assert not (tmp_path / "study").exists()
