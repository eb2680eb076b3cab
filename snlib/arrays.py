"""Array inputs shared by ``snlib.evaluation`` and ``snlib.reranking``: conversion to numpy, distance-matrix
checks (2-D, real, finite) and the block size that bounds their working memory."""
from __future__ import annotations

import numpy as np
import torch

#: Elements of the largest temporary block (rows x columns); bounds the working memory.
BLOCK_ELEMENTS = 1 << 22


def to_numpy(array, name: str) -> np.ndarray:
    """``array`` (numpy array, torch tensor on any device, or nested sequence) as a numpy array."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        if array.dtype in (torch.float16, torch.bfloat16):
            array = array.float()
        return array.numpy()
    try:
        return np.asarray(array)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(array).__name__}") from err


def as_distance_matrix(array, name: str) -> np.ndarray:
    """A 2-D real matrix with at least one row and one column (float16 widened to float32, ints to float64)."""
    a = to_numpy(array, name)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {a.shape}")
    if a.dtype.kind in "iub":
        a = a.astype(np.float64)
    elif a.dtype == np.float16:
        a = a.astype(np.float32)
    elif a.dtype.kind != "f":
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {a.shape}): it needs at least one query and one gallery image")
    return a


def check_finite(block: np.ndarray, name: str, row_offset: int = 0) -> np.ndarray:
    """Raise a ValueError naming the first NaN or infinite entry of ``block`` (rows counted from row_offset)."""
    finite = np.isfinite(block)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise ValueError(
            f"{name}[{row + row_offset}, {col}] is {block[row, col]}: distances must be finite "
            "(NaN usually comes from NaN features, e.g. a diverged model)"
        )
    return block


def check_finite_rows(matrix: np.ndarray, name: str) -> None:
    """check_finite over ``matrix`` one block of rows at a time (no full-size temporary)."""
    step = rows_per_block(matrix.shape[1])
    for start in range(0, matrix.shape[0], step):
        check_finite(matrix[start:start + step], name, start)


def rows_per_block(num_columns: int) -> int:
    """How many rows of ``num_columns`` entries fit in one working block."""
    return max(1, BLOCK_ELEMENTS // max(num_columns, 1))
