"""Checkpoints as ``.npz`` files: no pickle, atomic writes, clear errors.

:func:`save` writes a (possibly nested) dict of arrays and numbers, such as
``{"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}``.
Nested keys are joined with "/" in the file (an empty dict is kept as an
empty marker entry "name/"). Object arrays are refused, so a
checkpoint never needs pickle to load, and :func:`load` reads with
``allow_pickle=False``. The file is written to a temporary file in the same
directory and moved into place with ``os.replace``, so a crash never leaves a
half-written checkpoint under the final name.

:func:`load` returns the same nesting as :class:`Checkpoint` dicts (numbers
come back as 0-d arrays) that remember the file they came from, so that
``Module.load_state_dict`` names the file when the architecture does not fit.
"""

import math
import os
import tempfile
import zipfile
import zlib
from collections.abc import Mapping

import numpy as np

from .tensor import Tensor

__all__ = ["save", "load", "Checkpoint"]

SEPARATOR = "/"


class Checkpoint(dict):
    """A dict loaded by :func:`load`; ``path`` is the file it came from."""

    def __init__(self, *args, path=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.path = path


def _flatten(state, prefix, out):
    for key, value in state.items():
        if not isinstance(key, str) or not key or SEPARATOR in key:
            raise ValueError(f"checkpoint keys must be non-empty strings without {SEPARATOR!r}, "
                             f"got {prefix + str(key)!r}")
        name = prefix + key
        if isinstance(value, Mapping):
            if not value:  # kept as a marker entry "name/", so that load gives back {}
                out[name + SEPARATOR] = np.zeros(0)
            _flatten(value, name + SEPARATOR, out)
            continue
        array = np.asarray(value.data if isinstance(value, Tensor) else value)
        if array.dtype.hasobject:
            raise TypeError(f"checkpoint entry {name!r} is an object array ({type(value).__name__}); "
                            f"only numeric, bool and string arrays can be saved without pickle")
        out[name] = array
    return out


def save(state_dict, path):
    """Write a checkpoint to ``path`` atomically as ``.npz`` (no pickle).

    Parameters
    ----------
    state_dict : mapping of str to array_like or nested mapping
        Arrays, Tensors, numbers, bools and strings; nested dicts (such as an
        optimiser's state) are stored under "/"-joined keys.
    path : str or os.PathLike
        The file to write; its directory must exist. The name is used as given
        (no ".npz" is appended).

    Raises
    ------
    TypeError
        An entry is an object array (it would need pickle).
    ValueError
        A key is not a non-empty string or contains "/".
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"save: state_dict must be a mapping, got {type(state_dict).__name__}")
    arrays = _flatten(state_dict, "", {})
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _nest(flat, path):
    root = Checkpoint(path=path)
    for name, array in flat.items():
        node = root
        *parents, leaf = name.split(SEPARATOR)
        if not leaf:  # the marker of an empty group
            leaf = None
        for part in parents:
            child = node.setdefault(part, Checkpoint(path=path))
            if not isinstance(child, Checkpoint):
                raise ValueError(f"checkpoint {path}: entry {name!r} is nested under an array entry")
            node = child
        if leaf is None:
            continue
        if leaf in node:
            raise ValueError(f"checkpoint {path}: entry {name!r} collides with a nested group")
        node[leaf] = array
    return root


def load(path):
    """Read a checkpoint written by :func:`save` (never unpickles anything).

    Returns
    -------
    Checkpoint
        Nested dicts of ndarrays (numbers are 0-d arrays), each with ``.path``.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The file is not a readable ``.npz`` (truncated, corrupt, or another
        format), or it holds object arrays; the message names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    with open(path, "rb") as file:
        magic = file.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        problem = "it is empty" if not magic else "it does not start like a zip archive"
        raise ValueError(f"checkpoint {path} is not an .npz archive ({problem}; truncated or another format?)")
    try:
        with zipfile.ZipFile(path) as archive:
            flat = {}
            for member in archive.infolist():
                with archive.open(member) as file:
                    flat[member.filename.removesuffix(".npy")] = _read_member(file, member, path)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise ValueError(f"checkpoint {path} is truncated or corrupt: {error}") from None
    return _nest(flat, path)


def _read_member(file, member, path):
    """One ``.npy`` member, its header checked before anything is allocated."""
    name = member.filename
    try:
        if not name.endswith(".npy"):
            raise ValueError("it is not an .npy array")
        version = np.lib.format.read_magic(file)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(file)
    except ValueError as error:
        raise ValueError(f"checkpoint {path}: entry {name!r} is not a valid array ({error})") from None
    if dtype.hasobject:
        raise ValueError(f"checkpoint {path} holds object arrays, which would need pickle; refusing to load it")
    header_bytes = file.tell()
    data_bytes = math.prod(shape) * dtype.itemsize
    if header_bytes + data_bytes != member.file_size:
        raise ValueError(f"checkpoint {path} is corrupt: entry {name!r} declares shape {shape} of {dtype} "
                         f"({data_bytes} bytes) but holds {member.file_size - header_bytes} bytes")
    data = np.frombuffer(file.read(data_bytes), dtype=dtype)
    return data.reshape(shape, order="F" if fortran_order else "C").copy()
