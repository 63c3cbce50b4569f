"""Instruction attributes: their value types, their text forms, and the table of known names.

The table `ATTRIBUTES` maps an attribute name (as it appears in HLO text) to
its kind; the parser and printer both dispatch on that kind, so a new
attribute is one line here. Structured values (windows, convolution dimension
labels, slices, padding) are frozen dataclasses that know their own text.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, Iterator, Mapping


class AttrKind(enum.Enum):
    INT = "integer"
    BOOL = "true or false"
    DIMS = "a list of integers like {1,0}"
    COMPUTATION = "a computation name"
    COMPUTATION_LIST = "a list of computation names like {a, b}"
    WINDOW = "a window like {size=2x2 stride=2x2}"
    CONV_DIMS = "dimension labels like bf01_oi01->bf01"
    SLICE = "slices like {[0:4], [0:8:2]}"
    PADDING = "padding like 1_2x0_3 (low_high[_interior] per dimension)"
    IDENT = "a keyword"
    STRING = "a quoted string"
    RAW = "any balanced text (kept verbatim, no meaning to hlojit)"
    RAW_SEMANTIC = "balanced text that is kept verbatim and has meaning"


ATTRIBUTES: dict[str, AttrKind] = {
    # common
    "dimensions": AttrKind.DIMS,
    "index": AttrKind.INT,
    "to_apply": AttrKind.COMPUTATION,
    "condition": AttrKind.COMPUTATION,
    "body": AttrKind.COMPUTATION,
    "calls": AttrKind.COMPUTATION,
    "select": AttrKind.COMPUTATION,
    "scatter": AttrKind.COMPUTATION,
    "true_computation": AttrKind.COMPUTATION,
    "false_computation": AttrKind.COMPUTATION,
    "branch_computations": AttrKind.COMPUTATION_LIST,
    "direction": AttrKind.IDENT,
    "type": AttrKind.IDENT,  # compare type: FLOAT, TOTALORDER, SIGNED, UNSIGNED
    "iota_dimension": AttrKind.INT,
    # dot
    "lhs_batch_dims": AttrKind.DIMS,
    "rhs_batch_dims": AttrKind.DIMS,
    "lhs_contracting_dims": AttrKind.DIMS,
    "rhs_contracting_dims": AttrKind.DIMS,
    # convolution and windows
    "window": AttrKind.WINDOW,
    "dim_labels": AttrKind.CONV_DIMS,
    "feature_group_count": AttrKind.INT,
    "batch_group_count": AttrKind.INT,
    # slicing and padding
    "slice": AttrKind.SLICE,
    "padding": AttrKind.PADDING,
    "dynamic_slice_sizes": AttrKind.DIMS,
    # gather
    "offset_dims": AttrKind.DIMS,
    "collapsed_slice_dims": AttrKind.DIMS,
    "start_index_map": AttrKind.DIMS,
    "operand_batching_dims": AttrKind.DIMS,
    "start_indices_batching_dims": AttrKind.DIMS,
    "index_vector_dim": AttrKind.INT,
    "slice_sizes": AttrKind.DIMS,
    "indices_are_sorted": AttrKind.BOOL,
    # scatter
    "update_window_dims": AttrKind.DIMS,
    "inserted_window_dims": AttrKind.DIMS,
    "scatter_dims_to_operand_dims": AttrKind.DIMS,
    "input_batching_dims": AttrKind.DIMS,
    "scatter_indices_batching_dims": AttrKind.DIMS,
    "unique_indices": AttrKind.BOOL,
    # sort / topk
    "is_stable": AttrKind.BOOL,
    "k": AttrKind.INT,
    "largest": AttrKind.BOOL,
    # rng
    "algorithm": AttrKind.IDENT,
    # custom call and fusion
    "custom_call_target": AttrKind.STRING,
    "api_version": AttrKind.IDENT,
    "kind": AttrKind.IDENT,  # fusion kind: kLoop, kInput, kOutput
    "output_to_operand_aliasing": AttrKind.RAW_SEMANTIC,
    # carried along, no meaning to hlojit
    "metadata": AttrKind.RAW,
    "sharding": AttrKind.RAW,
    "frontend_attributes": AttrKind.RAW,
    "backend_config": AttrKind.RAW,
    "precision_config": AttrKind.RAW,
    "operand_precision": AttrKind.RAW,
    "result_accuracy": AttrKind.RAW,
    "statistics": AttrKind.RAW,
    "origin": AttrKind.RAW,
    "schedule": AttrKind.RAW,
    "control-predecessors": AttrKind.RAW,
    "custom_call_has_side_effect": AttrKind.BOOL,
    "custom_call_schedule": AttrKind.IDENT,
    "operand_layout_constraints": AttrKind.RAW,
    "parameter_replication": AttrKind.RAW,
}

# Attributes that do not change what an instruction computes: passes may drop them,
# CSE ignores them, and structural comparisons can skip them.
NON_SEMANTIC = frozenset(name for name, kind in ATTRIBUTES.items() if kind is AttrKind.RAW)


# --- structured values --------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowDim:
    size: int
    stride: int = 1
    pad_lo: int = 0
    pad_hi: int = 0
    lhs_dilate: int = 1
    rhs_dilate: int = 1
    reversal: bool = False


@dataclass(frozen=True)
class Window:
    """A window over each dimension (reduce-window, convolution, select-and-scatter)."""

    dims: tuple[WindowDim, ...]

    @property
    def rank(self) -> int:
        return len(self.dims)

    def to_text(self) -> str:
        parts = ["size=" + "x".join(str(d.size) for d in self.dims)] if self.dims else []
        if any(d.stride != 1 for d in self.dims):
            parts.append("stride=" + "x".join(str(d.stride) for d in self.dims))
        if any(d.pad_lo or d.pad_hi for d in self.dims):
            parts.append("pad=" + "x".join(f"{d.pad_lo}_{d.pad_hi}" for d in self.dims))
        if any(d.lhs_dilate != 1 for d in self.dims):
            parts.append("lhs_dilate=" + "x".join(str(d.lhs_dilate) for d in self.dims))
        if any(d.rhs_dilate != 1 for d in self.dims):
            parts.append("rhs_dilate=" + "x".join(str(d.rhs_dilate) for d in self.dims))
        if any(d.reversal for d in self.dims):
            parts.append("rhs_reversal=" + "x".join(str(int(d.reversal)) for d in self.dims))
        return "{" + " ".join(parts) + "}"

    @staticmethod
    def from_text(text: str) -> Window:
        """Parse the inside of `window={...}` (without the braces)."""
        fields: dict[str, list[str]] = {}
        for item in text.split():
            key, eq, value = item.partition("=")
            if not eq or key not in _WINDOW_KEYS:
                raise ValueError(f"bad window field {item!r}; expected one of {', '.join(_WINDOW_KEYS)}=...")
            fields[key] = value.split("x")
        if "size" not in fields:
            raise ValueError("window has no size=")
        rank = len(fields["size"])
        for key, values in fields.items():
            if len(values) != rank:
                raise ValueError(f"window {key}= has {len(values)} dimensions, size= has {rank}")

        def ints(key: str, default: int) -> list[int]:
            return [_int(v, key) for v in fields[key]] if key in fields else [default] * rank

        pads = [_pad_pair(v) for v in fields["pad"]] if "pad" in fields else [(0, 0)] * rank
        dims = tuple(
            WindowDim(size, stride, lo, hi, ld, rd, bool(rev))
            for size, stride, (lo, hi), ld, rd, rev in zip(
                ints("size", 1), ints("stride", 1), pads, ints("lhs_dilate", 1),
                ints("rhs_dilate", 1), ints("rhs_reversal", 0),
            )
        )
        return Window(dims)

    @staticmethod
    def simple(sizes, strides=None, pads=None) -> Window:
        strides = strides or [1] * len(sizes)
        pads = pads or [(0, 0)] * len(sizes)
        return Window(tuple(WindowDim(s, st, lo, hi) for s, st, (lo, hi) in zip(sizes, strides, pads)))


_WINDOW_KEYS = ("size", "stride", "pad", "lhs_dilate", "rhs_dilate", "rhs_reversal")


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected an integer in {what}, got {text!r}") from None


def _pad_pair(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(-?\d+)_(-?\d+)", text)
    if not m:
        raise ValueError(f"expected low_high padding like 1_2, got {text!r}")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class ConvDims:
    """Convolution dimension numbers, written `bf01_oi01->bf01`.

    Each letter's position is a dimension number: b/f are the batch and feature
    dimensions of the input and output, i/o the kernel's input and output
    feature dimensions, and the digits 0,1,.. the spatial dimensions in order.
    """

    input_batch: int
    input_feature: int
    input_spatial: tuple[int, ...]
    kernel_input_feature: int
    kernel_output_feature: int
    kernel_spatial: tuple[int, ...]
    output_batch: int
    output_feature: int
    output_spatial: tuple[int, ...]

    @property
    def num_spatial(self) -> int:
        return len(self.input_spatial)

    def to_text(self) -> str:
        def labels(rank: int, named: dict[int, str], spatial: tuple[int, ...]) -> str:
            chars = [""] * rank
            for dim, ch in named.items():
                chars[dim] = ch
            for i, dim in enumerate(spatial):
                chars[dim] = str(i)
            return "".join(chars)

        rank = self.num_spatial + 2
        lhs = labels(rank, {self.input_batch: "b", self.input_feature: "f"}, self.input_spatial)
        rhs = labels(rank, {self.kernel_input_feature: "i", self.kernel_output_feature: "o"}, self.kernel_spatial)
        out = labels(rank, {self.output_batch: "b", self.output_feature: "f"}, self.output_spatial)
        return f"{lhs}_{rhs}->{out}"

    @staticmethod
    def from_text(text: str) -> ConvDims:
        m = re.fullmatch(r"([a-z0-9]+)_([a-z0-9]+)->([a-z0-9]+)", text)
        if not m:
            raise ValueError(f"expected dim_labels like bf01_oi01->bf01, got {text!r}")
        lhs, rhs, out = m.groups()
        if not (len(lhs) == len(rhs) == len(out)):
            raise ValueError(f"dim_labels parts have different ranks: {text!r}")

        def parse(part: str, letters: str) -> tuple[int, int, tuple[int, ...]]:
            expected = set(letters) | {str(i) for i in range(len(part) - 2)}
            if set(part) != expected or len(part) != len(expected):
                raise ValueError(
                    f"dim_labels part {part!r} must hold {letters[0]!r}, {letters[1]!r} and "
                    f"the digits 0..{len(part) - 3} once each"
                )
            spatial = tuple(part.index(str(i)) for i in range(len(part) - 2))
            return part.index(letters[0]), part.index(letters[1]), spatial

        ib, if_, isp = parse(lhs, "bf")
        ki, ko, ksp = parse(rhs, "io")
        ob, of, osp = parse(out, "bf")
        return ConvDims(ib, if_, isp, ki, ko, ksp, ob, of, osp)

    @staticmethod
    def default(num_spatial: int) -> ConvDims:
        """`bf01_oi01->bf01`-style labels (NCHW input, OIHW kernel)."""
        sp = tuple(range(2, 2 + num_spatial))
        return ConvDims(0, 1, sp, 1, 0, sp, 0, 1, sp)


@dataclass(frozen=True)
class SliceDim:
    start: int
    limit: int
    stride: int = 1


def slice_to_text(dims: tuple[SliceDim, ...]) -> str:
    # As XLA prints it: strides are written for every dimension as soon as one is not 1.
    strided = any(d.stride != 1 for d in dims)

    def one(d: SliceDim) -> str:
        return f"[{d.start}:{d.limit}:{d.stride}]" if strided else f"[{d.start}:{d.limit}]"

    return "{" + ", ".join(one(d) for d in dims) + "}"


def slice_from_text(text: str) -> tuple[SliceDim, ...]:
    """Parse the inside of `slice={...}`."""
    items = re.findall(r"\[([^\]]*)\]", text)
    rest = re.sub(r"\[[^\]]*\]", "", text).replace(",", "").strip()
    if rest:
        raise ValueError(f"unexpected {rest!r} in slice; expected [start:limit] or [start:limit:stride]")
    dims = []
    for item in items:
        parts = [p.strip() for p in item.split(":")]
        if len(parts) not in (2, 3):
            raise ValueError(f"slice dimension [{item}] must be [start:limit] or [start:limit:stride]")
        nums = [_int(p, "slice") for p in parts]
        dims.append(SliceDim(*nums))
    return tuple(dims)


@dataclass(frozen=True)
class PadDim:
    lo: int
    hi: int
    interior: int = 0


def padding_to_text(dims: tuple[PadDim, ...]) -> str:
    def one(d: PadDim) -> str:
        return f"{d.lo}_{d.hi}" if d.interior == 0 else f"{d.lo}_{d.hi}_{d.interior}"

    return "x".join(one(d) for d in dims)


def padding_from_text(text: str) -> tuple[PadDim, ...]:
    dims = []
    for item in text.split("x"):
        m = re.fullmatch(r"(-?\d+)_(-?\d+)(?:_(\d+))?", item)
        if not m:
            raise ValueError(f"expected padding low_high[_interior] like 1_2 or 0_0_1, got {item!r}")
        dims.append(PadDim(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)))
    return tuple(dims)


@dataclass(frozen=True)
class Raw:
    """Attribute text kept verbatim (metadata and the like)."""

    text: str


# --- the frozen attribute mapping ----------------------------------------------------------------


class Attrs(Mapping[str, Any]):
    """An immutable, hashable name -> value mapping; insertion order is kept for printing."""

    __slots__ = ("_items", "_dict", "_hash")

    def __init__(self, items: Mapping[str, Any] | None = None, **kwargs: Any):
        d = dict(items or {})
        d.update(kwargs)
        self._dict = d
        self._items = tuple(d.items())
        self._hash = None

    def __getitem__(self, key: str) -> Any:
        return self._dict[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._dict)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._items))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Attrs):
            return self._dict == other._dict
        return NotImplemented

    def replace(self, **changes: Any) -> Attrs:
        """A copy with some values changed; a value of None removes the key."""
        d = dict(self._dict)
        for k, v in changes.items():
            if v is None:
                d.pop(k, None)
            else:
                d[k] = v
        return Attrs(d)

    def semantic(self) -> Attrs:
        """Without the attributes that carry no meaning (metadata, ...)."""
        return Attrs({k: v for k, v in self._items if k not in NON_SEMANTIC})

    def __repr__(self) -> str:
        return f"Attrs({self._dict!r})"


EMPTY_ATTRS = Attrs()
