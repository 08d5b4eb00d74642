"""Vectors from a user's file (``.pt`` tensor or ``.npy`` array, shape [N, D]), checked on load."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import torch

from flowstudy.errors import UserError


class DataError(UserError):
    pass


def require_file(path: str) -> Path:
    p = Path(path)
    where = f"dataset.path={path}"
    try:
        p.stat()
    except OSError as e:  # is_file() says False for all of these alike
        what = {errno.ENOENT: "no such file", errno.ELOOP: "is a symbolic link loop"}.get(
            e.errno or 0, (e.strerror or str(e)).lower())
        raise DataError(f"{where}: {what}") from e
    if p.is_dir():
        raise DataError(f"{where}: is a directory; give the .pt or .npy file inside it")
    if not p.is_file():
        raise DataError(f"{where}: not a regular file")
    return p


def load_vectors(path: str) -> torch.Tensor:
    p = require_file(path)
    where = f"dataset.path={path}"
    try:
        if p.suffix == ".pt":
            data = torch.load(p, map_location="cpu", weights_only=True)
        elif p.suffix == ".npy":
            data = np.load(p, allow_pickle=False)
        else:
            raise DataError(f"{where}: unsupported file type {p.suffix!r}; use .pt or .npy")
    except DataError:
        raise
    except Exception as e:  # numpy and torch raise many types for unreadable files
        raise DataError(f"{where}: not a readable {p.suffix} file ({str(e).splitlines()[0]})"
                        ) from e
    if isinstance(data, np.ndarray):
        if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
            raise DataError(f"{where}: values are not numeric (dtype {data.dtype})")
        data = torch.from_numpy(np.ascontiguousarray(data))
    if not isinstance(data, torch.Tensor):
        keys = f" with keys {', '.join(map(str, list(data)[:5]))}" if isinstance(data, dict) else ""
        raise DataError(f"{where}: holds a {type(data).__name__}{keys}, expected one tensor "
                        f"[N, D] (save the tensor itself: torch.save(tensor, path))")
    # A tensor saved from a graph (requires_grad=True) would carry its autograd history into
    # every batch: the second backward would fail. The data are values only.
    data = data.detach()
    if data.layout != torch.strided:  # sparse COO/CSR: the same vectors, stored densely here
        data = data.to_dense()
    if data.is_complex() or data.dtype == torch.bool:
        raise DataError(f"{where}: values are not real numbers (dtype {data.dtype})")
    if data.ndim != 2:
        raise DataError(f"{where}: has shape {tuple(data.shape)}, expected [N, D]")
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise DataError(f"{where}: is empty (shape {tuple(data.shape)})")
    bad = (~torch.isfinite(data)).any(dim=1).nonzero().flatten()
    if bad.numel():
        raise DataError(f"{where}: {bad.numel()} rows hold NaN or Inf (first: row {bad[0].item()})")
    # Finite float64 values beyond float32's range would become Inf in the cast below.
    big = (data.abs() > torch.finfo(torch.float32).max).any(dim=1).nonzero().flatten()
    if big.numel():
        raise DataError(f"{where}: {big.numel()} rows hold values too large for float32 "
                        f"(|x| > 3.4e38; first: row {big[0].item()})")
    data = data.float()
    if data.shape[0] > 1 and bool((data == data[0]).all()):
        what = "all zero" if not data[0].any() else "all the same vector"
        raise DataError(f"{where}: its {data.shape[0]} rows are {what} (zero variance in every "
                        f"dimension); there is no distribution to learn")
    return data
