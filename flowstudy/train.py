"""Train one flow-matching run: ``python -m flowstudy.train [group=option] [key=value] ...``.

compose (Hydra) -> validate (typed Config) -> build -> fit -> evaluate -> result.json.
``python -m flowstudy.train --help`` lists the groups and every key. The command line lives in
``flowstudy.cli``, one run in ``flowstudy.run``, the loop in ``flowstudy.trainer``.
"""

from flowstudy.interrupt import stop_from_the_start


def main() -> None:
    """``python -m flowstudy.train`` (``flowstudy-train``): Ctrl-C stops it from its first line,
    the seconds of imports included."""
    with stop_from_the_start():
        # The task function lives in flowstudy.cli, an importable module: launchers that pickle
        # it (joblib) pickle a reference to it, not a __main__ copy and all it refers to.
        from flowstudy.cli import main as run_command

        run_command()


if __name__ == "__main__":
    main()
