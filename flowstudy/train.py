"""Train one flow-matching run: ``python -m flowstudy.train [group=option] [key=value] ...``.

compose (Hydra) -> validate (typed Config) -> build -> fit -> evaluate -> result.json.
``python -m flowstudy.train --help`` lists the groups and every key. The command line lives in
``flowstudy.cli``, one run in ``flowstudy.run``, the loop in ``flowstudy.trainer``.
"""

from flowstudy.cli import main

if __name__ == "__main__":
    # main comes from an importable module: launchers that pickle the task function (joblib)
    # then pickle a reference to flowstudy.cli instead of a __main__ copy and all it refers to.
    main()
