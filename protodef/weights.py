"""Read and write Caffe's binary weights (.caffemodel) without going through protobuf objects.

A caffemodel is a serialized NetParameter.  Only the parts that carry weights matter here: each layer's name,
type and blobs.  The reader walks the protobuf wire format itself, descends only into layer and blob messages,
skips every other field by its length, and reads float data straight from the file into preallocated numpy
arrays, so loading costs about one copy of the weights in memory and no Python object per value.

Facts of Caffe's format used here (src/caffe/proto/caffe.proto):

    NetParameter:      name = 1 (string), layers = 2 (V1LayerParameter), layer = 100 (LayerParameter)
    LayerParameter:    name = 1, type = 2 (string), blobs = 7
    V1LayerParameter:  layer = 1 (V0LayerParameter), name = 4, type = 5 (enum LayerType), blobs = 6
    V0LayerParameter:  name = 1, type = 2 (string), blobs = 50
    BlobProto:         num = 1, channels = 2, height = 3, width = 4 (legacy 4-D shape), data = 5 (packed float),
                       diff = 6 (packed float), shape = 7 (BlobShape), double_data = 8, double_diff = 9
    BlobShape:         dim = 1 (packed int64)
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from .errors import InputError, WeightsError
from .write import atomic_open

__all__ = ["CaffeModel", "LayerBlobs", "read_caffemodel", "write_caffemodel", "blob_message", "V1_LAYER_TYPES",
           "V0_LAYER_TYPES"]

# V1LayerParameter.LayerType: enum number -> name.
V1_LAYER_TYPES: dict[int, str] = {
    0: "NONE", 1: "ACCURACY", 2: "BNLL", 3: "CONCAT", 4: "CONVOLUTION", 5: "DATA", 6: "DROPOUT",
    7: "EUCLIDEAN_LOSS", 8: "FLATTEN", 9: "HDF5_DATA", 10: "HDF5_OUTPUT", 11: "IM2COL", 12: "IMAGE_DATA",
    13: "INFOGAIN_LOSS", 14: "INNER_PRODUCT", 15: "LRN", 16: "MULTINOMIAL_LOGISTIC_LOSS", 17: "POOLING",
    18: "RELU", 19: "SIGMOID", 20: "SOFTMAX", 21: "SOFTMAX_LOSS", 22: "SPLIT", 23: "TANH", 24: "WINDOW_DATA",
    25: "ELTWISE", 26: "POWER", 27: "SIGMOID_CROSS_ENTROPY_LOSS", 28: "HINGE_LOSS", 29: "MEMORY_DATA",
    30: "ARGMAX", 31: "THRESHOLD", 32: "DUMMY_DATA", 33: "SLICE", 34: "MVN", 35: "ABSVAL", 36: "SILENCE",
    37: "CONTRASTIVE_LOSS", 38: "EXP", 39: "DECONVOLUTION",
}

# V0 type strings -> the V1 enum name Caffe's upgrade (UpgradeV0LayerType) turns them into.
V0_LAYER_TYPES: dict[str, str] = {
    "accuracy": "ACCURACY", "bnll": "BNLL", "concat": "CONCAT", "conv": "CONVOLUTION", "data": "DATA",
    "dropout": "DROPOUT", "euclidean_loss": "EUCLIDEAN_LOSS", "flatten": "FLATTEN", "hdf5_data": "HDF5_DATA",
    "hdf5_output": "HDF5_OUTPUT", "im2col": "IM2COL", "images": "IMAGE_DATA", "infogain_loss": "INFOGAIN_LOSS",
    "innerproduct": "INNER_PRODUCT", "lrn": "LRN", "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS",
    "pool": "POOLING", "relu": "RELU", "sigmoid": "SIGMOID", "softmax": "SOFTMAX", "softmax_loss": "SOFTMAX_LOSS",
    "split": "SPLIT", "tanh": "TANH", "window_data": "WINDOW_DATA",
}

MAX_BLOB_AXES = 32  # Caffe's kMaxBlobAxes

_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5
_WIRE_NAMES = {_VARINT: "varint", _I64: "64-bit", _LEN: "length-delimited", _SGROUP: "start-group",
               _EGROUP: "end-group", _I32: "32-bit"}

_WINDOW = 1 << 16          # bytes read at a time for tags, lengths and names
_RUN_CHUNK = 1 << 16       # records per step when scanning unpacked repeated values
_DOUBLE_CHUNK = 1 << 20    # doubles converted per step
_LITTLE = sys.byteorder == "little"


@dataclass
class LayerBlobs:
    """One layer's parameter blobs, in file order.  legacy_shape[i] is True where blob i was shaped by the
    deprecated (num, channels, height, width) fields instead of a BlobShape."""

    name: str
    type: str
    blobs: list[np.ndarray] = field(default_factory=list)
    legacy_shape: list[bool] = field(default_factory=list)


@dataclass
class CaffeModel:
    name: str
    layers: list[LayerBlobs] = field(default_factory=list)


class _Malformed(Exception):
    """Internal: the bytes are not what they should be.  read_caffemodel turns it into a WeightsError."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class _BlobError(Exception):
    """Internal: a blob decoded fine but its content is inconsistent (count against shape, negative dims)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class _Scanner:
    """Sequential reader over a seekable raw file, with absolute positions and a small look-ahead window."""

    __slots__ = ("file", "size", "buf", "base", "pos", "field_at")

    def __init__(self, file, size: int):
        self.file = file
        self.size = size
        self.buf = b""
        self.base = 0
        self.pos = 0
        self.field_at = 0  # where the tag of the field being read starts, for messages

    def _window(self, n: int) -> tuple[bytes, int]:
        """Return (buffer, index of pos in it) with at least n bytes after pos, or up to the end of the file."""
        off = self.pos - self.base
        buf = self.buf
        if off < 0 or (off + n > len(buf) and self.base + len(buf) < self.size):
            self.file.seek(self.pos)
            buf = self.buf = self.file.read(max(n, _WINDOW))
            self.base = self.pos
            off = 0
        return buf, off

    def varint(self, end: int, what: str) -> int:
        buf, i = self._window(10)
        avail = min(len(buf) - i, end - self.pos)
        b = buf[i] if avail > 0 else 0x80
        if b < 0x80 and avail > 0:
            self.pos += 1
            return b
        result = 0
        shift = 0
        for k in range(min(avail, 10)):
            b = buf[i + k]
            result |= (b & 0x7F) << shift
            if b < 0x80:
                self.pos += k + 1
                return result & 0xFFFFFFFFFFFFFFFF
            shift += 7
        if avail >= 10:
            raise _Malformed(f"{what} at byte {self.pos} is a varint longer than 10 bytes")
        raise _Malformed(f"{what} at byte {self.pos} runs past {self._limit_name(end)}")

    def tag(self, end: int) -> int:
        self.field_at = self.pos
        return self.varint(end, "a field tag")

    def _limit_name(self, end: int) -> str:
        return "the end of the file" if end >= self.size else "the end of its enclosing message"

    def length(self, end: int, what: str) -> int:
        """Read a length prefix and check that the bytes it announces are there."""
        n = self.varint(end, f"the length of {what}")
        left = end - self.pos
        if n > left:
            where = self._limit_name(end)
            raise _Malformed(f"{what} at byte {self.field_at} declares {n} bytes but only {left} remain before {where}")
        return n

    def take(self, n: int) -> bytes:
        buf, i = self._window(n)
        self.pos += n
        return bytes(buf[i:i + n])

    def read_into(self, dest: memoryview) -> None:
        """Fill dest (a byte view) from pos onward; the caller has checked the bytes exist."""
        n = len(dest)
        off = self.pos - self.base
        done = 0
        if 0 <= off < len(self.buf):
            done = min(len(self.buf) - off, n)
            dest[:done] = self.buf[off:off + done]
        if done < n:
            self.file.seek(self.pos + done)
            while done < n:
                got = self.file.readinto(dest[done:])
                if not got:
                    raise _Malformed(f"the file ended at byte {self.pos + done} while reading it (did it shrink?)")
                done += got
        self.pos += n

    def skip(self, key: int, end: int, what: str) -> None:
        """Skip the value of a field whose key was just read."""
        wt = key & 7
        if key >> 3 == 0:
            raise _Malformed(f"invalid field number 0 at byte {self.field_at}")
        if wt == _VARINT:
            self.varint(end, what)
        elif wt == _LEN:
            n = self.length(end, what)
            self.pos += n
        elif wt == _I64 or wt == _I32:
            n = 8 if wt == _I64 else 4
            if self.pos + n > end:
                raise _Malformed(f"{what} at byte {self.field_at} runs past {self._limit_name(end)}")
            self.pos += n
        elif wt == _SGROUP:
            self._skip_group(key >> 3, end, what)
        elif wt == _EGROUP:
            raise _Malformed(f"unexpected end-group marker for field {key >> 3} at byte {self.field_at}")
        else:
            raise _Malformed(f"invalid protobuf wire type {wt} (field {key >> 3}) at byte {self.field_at}")

    def _skip_group(self, number: int, end: int, what: str) -> None:
        open_groups = [number]
        while open_groups:
            if self.pos >= end:
                raise _Malformed(f"group field {number} runs past {self._limit_name(end)}")
            if len(open_groups) > 64:
                raise _Malformed(f"groups nested more than 64 deep at byte {self.field_at}")
            key = self.tag(end)
            wt = key & 7
            if wt == _SGROUP:
                open_groups.append(key >> 3)
            elif wt == _EGROUP:
                if key >> 3 != open_groups[-1]:
                    raise _Malformed(f"end-group marker for field {key >> 3} at byte {self.field_at} "
                                     f"does not close group {open_groups[-1]}")
                open_groups.pop()
            else:
                self.skip(key, end, what)

    def fixed_run(self, end: int, tag: int, width: int, dtype: str, keep: bool) -> np.ndarray | None:
        """Read a run of unpacked fixed-width values: records of one tag byte followed by `width` bytes.

        pos is at the first tag byte.  Consumes every consecutive record that starts with the same tag byte and
        returns the values as a 1-D float32 array (or None when keep is False), without a Python step per value.
        """
        rec = 1 + width
        start = self.pos
        most = (end - start) // rec
        if most == 0:
            raise _Malformed(f"a {width * 8}-bit value at byte {start} runs past {self._limit_name(end)}")
        out = np.empty(most, dtype=np.float32) if keep else None
        chunk = np.empty(min(most, _RUN_CHUNK) * rec, dtype=np.uint8)
        n = 0
        while n < most:
            k = min(most - n, _RUN_CHUNK)
            view = chunk[:k * rec]
            self.read_into(memoryview(view))
            records = view.reshape(k, rec)
            breaks = np.flatnonzero(records[:, 0] != tag)
            m = int(breaks[0]) if breaks.size else k
            if keep and m:
                values = records[:m, 1:].view(dtype).reshape(m)
                with np.errstate(over="ignore"):   # doubles beyond float32 range become inf, as in Caffe
                    out[n:n + m] = values
            n += m
            if m < k:
                break
        self.pos = start + n * rec
        if not keep:
            return None
        if n == most:
            return out
        return out[:n].copy() if n * 2 < most else out[:n]


# --------------------------------------------------------------------------------------------- reading


def read_caffemodel(path: str | os.PathLike) -> CaffeModel:
    """Read the layer names, types and parameter blobs of a binary caffemodel.

    Blobs come back as float32 arrays shaped by their BlobShape, or by the legacy (num, channels, height,
    width) fields (then legacy_shape is True).  V1 layers get their LayerType enum name as type ('CONVOLUTION');
    V0 layers nested in V1 ones get the V1 name Caffe's upgrade maps their type to.  diff fields are skipped.
    Any broken input raises WeightsError naming the file.
    """
    where = os.fspath(path)
    if isinstance(where, bytes):
        where = os.fsdecode(where)
    try:
        handle = open(where, "rb", buffering=0)
    except OSError as exc:
        raise InputError(f"cannot open the caffemodel: {exc.strerror or exc}", where=where) from None
    with handle:
        try:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                raise WeightsError("the file is empty, not a caffemodel", where=where)
            reader = _NetReader(_Scanner(handle, size), where)
            return reader.read()
        except OSError as exc:
            raise InputError(f"cannot read the caffemodel: {exc.strerror or exc}", where=where) from None
        except MemoryError:
            raise WeightsError("not enough memory to load the weights", where=where) from None


class _LayerState:
    __slots__ = ("index", "name", "type", "blobs", "legacy", "v0")

    def __init__(self, index: int):
        self.index = index
        self.name: str | None = None
        self.type: str | None = None
        self.blobs: list[np.ndarray] = []
        self.legacy: list[bool] = []
        self.v0: _LayerState | None = None


class _NetReader:
    def __init__(self, scanner: _Scanner, where: str):
        self.sc = scanner
        self.where = where
        self.layer: _LayerState | None = None

    # Errors ---------------------------------------------------------------------------------------------

    def _fail(self, message: str) -> WeightsError:
        state = self.layer
        if state is None:
            return WeightsError(self._with_hint(message), where=self.where)
        name, kind = state.name, state.type
        if state.v0 is not None:   # a V0 layer's own name and type are the ones Caffe keeps
            name = state.v0.name if state.v0.name is not None else name
            kind = state.v0.type if state.v0.type is not None else kind
        if name is None:
            return WeightsError(f"layer #{state.index}: {message}", where=self.where)
        return WeightsError(message, where=self.where, layer=(name, kind))

    def _with_hint(self, message: str) -> str:
        head = self._head()
        if head.startswith(b"\x89HDF"):
            return f"{message} (this looks like an HDF5 file; only binary protobuf caffemodels are read)"
        if head and all(32 <= c < 127 or c in (9, 10, 13) for c in head):
            return f"{message} (this looks like a text file; is it a prototxt?)"
        return message

    def _head(self) -> bytes:
        pos = self.sc.pos
        try:
            self.sc.pos = 0
            return self.sc.take(min(64, self.sc.size))
        except OSError:
            return b""
        finally:
            self.sc.pos = pos

    # Structure ------------------------------------------------------------------------------------------

    def read(self) -> CaffeModel:
        sc = self.sc
        end = sc.size
        name = ""
        layers: list[LayerBlobs] = []
        try:
            while sc.pos < end:
                key = sc.tag(end)
                number, wt = key >> 3, key & 7
                if number == 1:
                    self._expect(key, _LEN, "NetParameter.name")
                    name = self._string(end, "the net name")
                elif number == 100 or number == 2:
                    what = "NetParameter.layer" if number == 100 else "NetParameter.layers"
                    self._expect(key, _LEN, what)
                    n = sc.length(end, f"{'layer' if number == 100 else 'V1 layer'} #{len(layers)}")
                    self.layer = _LayerState(len(layers))
                    if number == 100:
                        self._layer_v2(sc.pos + n)
                    else:
                        self._layer_v1(sc.pos + n)
                    layers.append(self._finish(self.layer))
                    self.layer = None
                else:
                    sc.skip(key, end, f"NetParameter field {number}")
        except _Malformed as exc:
            raise self._fail(f"not a valid caffemodel: {exc.message}") from None
        except _BlobError as exc:
            raise self._fail(exc.message) from None
        if not layers:
            raise self._fail("not a caffemodel: it holds no layers")
        return CaffeModel(name=name, layers=layers)

    def _expect(self, key: int, wt: int, what: str) -> None:
        if key & 7 != wt:
            raise _Malformed(f"{what} (field {key >> 3}) at byte {self.sc.field_at} has wire type "
                             f"{_WIRE_NAMES.get(key & 7, key & 7)}, expected {_WIRE_NAMES[wt]}")

    def _string(self, end: int, what: str) -> str:
        n = self.sc.length(end, what)
        return self.sc.take(n).decode("utf-8", errors="replace")

    def _finish(self, state: _LayerState) -> LayerBlobs:
        v0 = state.v0
        if v0 is not None:
            # Caffe's V0 -> V1 upgrade takes name, type and blobs from the nested V0 layer.
            name = v0.name if v0.name is not None else state.name
            kind = v0.type if v0.type is not None else state.type
            return LayerBlobs(name or "", kind or "", v0.blobs, v0.legacy)
        return LayerBlobs(state.name or "", state.type or "", state.blobs, state.legacy)

    def _layer_v2(self, end: int) -> None:
        sc, state = self.sc, self.layer
        while sc.pos < end:
            key = sc.tag(end)
            number = key >> 3
            if number == 1:
                self._expect(key, _LEN, "LayerParameter.name")
                state.name = self._string(end, "the layer name")
            elif number == 2:
                self._expect(key, _LEN, "LayerParameter.type")
                state.type = self._string(end, "the layer type")
            elif number == 7:
                self._expect(key, _LEN, "LayerParameter.blobs")
                self._blob(state, end)
            else:
                sc.skip(key, end, f"LayerParameter field {number}")

    def _layer_v1(self, end: int) -> None:
        sc, state = self.sc, self.layer
        while sc.pos < end:
            key = sc.tag(end)
            number = key >> 3
            if number == 4:
                self._expect(key, _LEN, "V1LayerParameter.name")
                state.name = self._string(end, "the layer name")
            elif number == 5:
                self._expect(key, _VARINT, "V1LayerParameter.type")
                value = sc.varint(end, "the layer type")
                state.type = V1_LAYER_TYPES.get(value, f"UNKNOWN_V1_TYPE_{value}")
            elif number == 6:
                self._expect(key, _LEN, "V1LayerParameter.blobs")
                self._blob(state, end)
            elif number == 1:
                self._expect(key, _LEN, "V1LayerParameter.layer")
                n = sc.length(end, "the nested V0 layer")
                if state.v0 is None:
                    state.v0 = _LayerState(state.index)
                self._layer_v0(state.v0, sc.pos + n)
            else:
                sc.skip(key, end, f"V1LayerParameter field {number}")

    def _layer_v0(self, v0: _LayerState, end: int) -> None:
        sc = self.sc
        while sc.pos < end:
            key = sc.tag(end)
            number = key >> 3
            if number == 1:
                self._expect(key, _LEN, "V0LayerParameter.name")
                v0.name = self._string(end, "the layer name")
            elif number == 2:
                self._expect(key, _LEN, "V0LayerParameter.type")
                raw = self._string(end, "the layer type")
                v0.type = V0_LAYER_TYPES.get(raw, raw)
            elif number == 50:
                self._expect(key, _LEN, "V0LayerParameter.blobs")
                self._blob(v0, end)
            else:
                sc.skip(key, end, f"V0LayerParameter field {number}")

    # Blobs ----------------------------------------------------------------------------------------------

    def _blob(self, state: _LayerState, parent_end: int) -> None:
        sc = self.sc
        index = len(state.blobs)
        n = sc.length(parent_end, f"blob {index}")
        end = sc.pos + n
        legacy: dict[int, int] = {}
        dims: list[int] | None = None
        floats: list[np.ndarray] = []
        doubles: list[np.ndarray] = []
        while sc.pos < end:
            key = sc.tag(end)
            number, wt = key >> 3, key & 7
            if 1 <= number <= 4:
                self._expect(key, _VARINT, f"BlobProto.{_LEGACY_NAMES[number]}")
                legacy[number] = _signed(sc.varint(end, f"BlobProto.{_LEGACY_NAMES[number]}"))
            elif number == 5 or number == 6:
                keep = number == 5
                label = "BlobProto.data" if keep else "BlobProto.diff"
                if wt == _LEN:
                    size = sc.length(end, f"the {label} of blob {index}")
                    if keep:
                        floats.append(self._packed(size, 4, "<f4", label))
                    else:
                        sc.pos += size
                elif wt == _I32:
                    values = self._unpacked(sc.field_at, end, key, 4, "<f4", keep)
                    if keep:
                        floats.append(values)
                else:
                    self._expect(key, _LEN, label)
            elif number == 8 or number == 9:
                keep = number == 8
                label = "BlobProto.double_data" if keep else "BlobProto.double_diff"
                if wt == _LEN:
                    size = sc.length(end, f"the {label} of blob {index}")
                    if keep:
                        doubles.append(self._packed(size, 8, "<f8", label))
                    else:
                        sc.pos += size
                elif wt == _I64:
                    values = self._unpacked(sc.field_at, end, key, 8, "<f8", keep)
                    if keep:
                        doubles.append(values)
                else:
                    self._expect(key, _LEN, label)
            elif number == 7:
                self._expect(key, _LEN, "BlobProto.shape")
                size = sc.length(end, f"the shape of blob {index}")
                if dims is None:
                    dims = []
                self._shape(dims, sc.pos + size, index)
            else:
                sc.skip(key, end, f"BlobProto field {number}")
        state.blobs.append(self._shaped(index, legacy, dims, floats, doubles, state))
        state.legacy.append(bool(legacy))

    def _packed(self, size: int, width: int, dtype: str, label: str) -> np.ndarray:
        sc = self.sc
        if size % width:
            raise _Malformed(f"packed {label} at byte {sc.field_at} has {size} bytes, not a multiple of {width}")
        count = size // width
        if width == 4:
            out = np.empty(count, dtype=np.float32)
            sc.read_into(memoryview(out).cast("B"))
            if not _LITTLE:
                out.byteswap(inplace=True)
            return out
        # Doubles: convert a bounded chunk at a time so peak memory stays near the float32 result.
        out = np.empty(count, dtype=np.float32)
        chunk = np.empty(min(count, _DOUBLE_CHUNK), dtype=dtype)
        done = 0
        while done < count:
            k = min(count - done, _DOUBLE_CHUNK)
            sc.read_into(memoryview(chunk[:k]).cast("B"))
            with np.errstate(over="ignore"):   # doubles beyond float32 range become inf, as in Caffe
                out[done:done + k] = chunk[:k]
            done += k
        return out

    def _unpacked(self, at: int, end: int, key: int, width: int, dtype: str, keep: bool) -> np.ndarray | None:
        sc = self.sc
        if sc.pos - at == 1:
            sc.pos = at
            return sc.fixed_run(end, key, width, dtype, keep)
        # A tag written in more bytes than needed: take this one value on its own.
        if sc.pos + width > end:
            raise _Malformed(f"a {width * 8}-bit value at byte {sc.field_at} runs past {sc._limit_name(end)}")
        if not keep:
            sc.pos += width
            return None
        with np.errstate(over="ignore"):
            return np.frombuffer(sc.take(width), dtype=dtype).astype(np.float32)

    def _shape(self, dims: list[int], end: int, index: int) -> None:
        sc = self.sc
        while sc.pos < end:
            key = sc.tag(end)
            number, wt = key >> 3, key & 7
            if number == 1 and wt == _LEN:
                size = sc.length(end, "BlobShape.dim")
                stop = sc.pos + size
                while sc.pos < stop:
                    self._add_dim(dims, sc.varint(stop, "a BlobShape.dim value"), index)
            elif number == 1:
                self._expect(key, _VARINT, "BlobShape.dim")
                self._add_dim(dims, sc.varint(end, "a BlobShape.dim value"), index)
            else:
                sc.skip(key, end, f"BlobShape field {number}")

    @staticmethod
    def _add_dim(dims: list[int], value: int, index: int) -> None:
        if len(dims) >= MAX_BLOB_AXES:
            raise _BlobError(f"blob {index} has more than {MAX_BLOB_AXES} axes in its shape (Caffe's limit)")
        dims.append(_signed(value))

    def _shaped(self, index: int, legacy: dict[int, int], dims: list[int] | None, floats: list[np.ndarray],
                doubles: list[np.ndarray], state: _LayerState) -> np.ndarray:
        # Caffe (Blob::FromProto) prefers the legacy 4-D fields whenever any of them is set.
        if legacy:
            shape = tuple(legacy.get(k, 0) for k in (1, 2, 3, 4))
        elif dims is not None:
            shape = tuple(dims)
        else:
            shape = ()
        if any(d < 0 for d in shape):
            raise _BlobError(f"blob {index} has a negative dimension in its shape {_show(shape)}")
        # Caffe reads double_data when there is any, else data.
        parts = doubles if any(p.size for p in doubles) else floats
        if not parts:
            values = np.empty(0, dtype=np.float32)
        elif len(parts) == 1:
            values = parts[0]
        else:
            values = np.concatenate(parts)
        needed = math.prod(shape)
        if values.size != needed:
            raise _BlobError(f"blob {index} has {values.size} values but its shape {_show(shape)} needs {needed}")
        return values.reshape(shape)


_LEGACY_NAMES = {1: "num", 2: "channels", 3: "height", 4: "width"}


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _show(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


# --------------------------------------------------------------------------------------------- writing


def write_caffemodel(path: str | os.PathLike, layers: Iterable[tuple[str, str, Sequence[np.ndarray]]],
                     name: str = "") -> None:
    """Write a V2 NetParameter holding each layer's name, type and blobs (BlobShape + packed float32 data).

    `layers` yields (name, type, [arrays]); arrays are stored as float32.  The file appears atomically.
    """
    with atomic_open(path, "wb") as out:
        if name:
            out.write(_text_field(1, name))
        for layer_name, layer_type, blobs in layers:
            arrays = []
            for i, blob in enumerate(blobs):
                try:
                    arrays.append(np.asarray(blob, dtype="<f4", order="C"))
                except (TypeError, ValueError) as exc:
                    raise WeightsError(f"blob {i} cannot be stored as float32: {exc}", where=os.fspath(path),
                                       layer=(layer_name, layer_type)) from None
            head = _text_field(1, layer_name) + _text_field(2, layer_type)
            blob_parts = [_blob_parts(a) for a in arrays]
            body = len(head) + sum(len(_key(7, _LEN)) + len(_varint(size)) + size for _, _, _, size in blob_parts)
            out.write(_key(100, _LEN) + _varint(body) + head)
            for before, data, after, size in blob_parts:
                out.write(_key(7, _LEN) + _varint(size) + before)
                if data is not None:
                    out.write(data)
                out.write(after)


def blob_message(array: np.ndarray) -> bytes:
    """One serialized BlobProto (BlobShape + packed float32 data), as write_caffemodel stores each blob."""
    before, data, after, _size = _blob_parts(np.asarray(array, dtype="<f4", order="C"))
    return before + (data.tobytes() if data is not None else b"") + after


def _blob_parts(a: np.ndarray) -> tuple[bytes, memoryview | None, bytes, int]:
    """(bytes before the data, the data, bytes after it, total message size) of one BlobProto."""
    dims = b"".join(_varint(d) for d in a.shape)
    shape_msg = (_key(1, _LEN) + _varint(len(dims)) + dims) if dims else b""
    after = _key(7, _LEN) + _varint(len(shape_msg)) + shape_msg
    if a.size:
        before = _key(5, _LEN) + _varint(a.nbytes)
        data = memoryview(a.reshape(-1)).cast("B")
        return before, data, after, len(before) + a.nbytes + len(after)
    return b"", None, after, len(after)


def _key(number: int, wt: int) -> bytes:
    return _varint(number << 3 | wt)


def _varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _text_field(number: int, text: str) -> bytes:
    data = text.encode("utf-8")
    return _key(number, _LEN) + _varint(len(data)) + data
