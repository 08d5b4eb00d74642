"""The bundled real data set: sentence embeddings made by scripts/make_embeddings.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

import flowstudy.data
from flowstudy.data.files import load_vectors

BUILTIN = Path(flowstudy.data.__file__).parent / "builtin"
NPY = BUILTIN / "minilm_stdlib.npy"
RECORD = json.loads(NPY.with_suffix(".json").read_text())


def test_file_matches_its_record_and_loads_as_unit_vectors() -> None:
    assert hashlib.sha256(NPY.read_bytes()).hexdigest() == RECORD["sha256"]
    stored = np.load(NPY, mmap_mode="r")
    assert stored.dtype == np.float16 and str(stored.dtype) == RECORD["dtype"]
    x = load_vectors(str(NPY))
    assert x.dtype == torch.float32  # the loader widens float16 for training
    assert x.shape == (RECORD["N"], RECORD["D"]) == (8000, 384)
    torch.testing.assert_close(x.norm(dim=1), torch.ones(len(x)), atol=2e-3, rtol=0)
    assert torch.unique(x, dim=0).shape[0] == len(x)  # distinct sentences, distinct rows


def test_rows_are_real_embeddings_of_their_sentences() -> None:
    text = NPY.with_name(RECORD["text"])
    assert hashlib.sha256(text.read_bytes()).hexdigest() == RECORD["text_sha256"]
    lines = text.read_text().splitlines()
    assert len(lines) == RECORD["N"] and all(line.count("\t") == 1 for line in lines)
    # Sentence embeddings cluster: a sentence's nearest neighbour is far closer than a random
    # pair, which random unit vectors in 384-d (cosine ~ 0 +- 0.05) would never show.
    x = load_vectors(str(NPY))
    cos = x[:500] @ x.T
    cos[torch.arange(500), torch.arange(500)] = -1
    assert cos.max(dim=1).values.median() > 0.5
    assert abs(cos.mean().item()) < 0.2

