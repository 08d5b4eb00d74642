"""Vectors from a user's file (``.pt`` tensor or ``.npy`` array, shape [N, D]), checked on load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from flowstudy.errors import UserError


class DataError(UserError):
    pass


def require_file(path: str) -> Path:
    p = Path(path)
    if not p.is_file():
        where = f"dataset.path={path}"
        raise DataError(f"{where}: no such file" if not p.exists() else f"{where}: not a file")
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
        raise DataError(f"{where}: holds a {type(data).__name__}, expected one tensor [N, D]")
    if data.is_complex() or data.dtype == torch.bool:
        raise DataError(f"{where}: values are not real numbers (dtype {data.dtype})")
    if data.ndim != 2:
        raise DataError(f"{where}: has shape {tuple(data.shape)}, expected [N, D]")
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise DataError(f"{where}: is empty (shape {tuple(data.shape)})")
    data = data.float()
    bad = (~torch.isfinite(data)).any(dim=1).nonzero().flatten()
    if bad.numel():
        raise DataError(f"{where}: {bad.numel()} rows hold NaN or Inf (first: row {bad[0].item()})")
    return data
