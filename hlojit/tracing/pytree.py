"""Pytrees: nested tuples, lists, dicts, namedtuples and None around array leaves.

Jitted functions take and return pytrees. `flatten` turns one into a list of
leaves and a hashable `TreeDef` (part of the jit cache key); `unflatten`
rebuilds it from new leaves. As in JAX, dict keys are flattened in sorted
order, None is an empty node (it holds no leaf), and anything that is not a
container is a leaf.

`flatten_with_paths` also names each leaf by its path (`params['w']`,
`xs[0]`), which error messages and HLO parameter names use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

_LEAF, _NONE, _TUPLE, _LIST, _DICT, _NAMEDTUPLE = "leaf", "none", "tuple", "list", "dict", "namedtuple"


@dataclass(frozen=True)
class TreeDef:
    """The structure of a pytree without its leaves. Hashable and comparable."""

    kind: str
    data: Any = None  # dict keys, or the namedtuple class
    children: tuple[TreeDef, ...] = ()

    @property
    def num_leaves(self) -> int:
        if self.kind == _LEAF:
            return 1
        return sum(child.num_leaves for child in self.children)

    @property
    def is_leaf(self) -> bool:
        return self.kind == _LEAF

    def __str__(self) -> str:
        if self.kind == _LEAF:
            return "*"
        if self.kind == _NONE:
            return "None"
        inner = ", ".join(str(c) for c in self.children)
        if self.kind == _TUPLE:
            return f"({inner},)" if len(self.children) == 1 else f"({inner})"
        if self.kind == _LIST:
            return f"[{inner}]"
        if self.kind == _DICT:
            return "{" + ", ".join(f"{k!r}: {c}" for k, c in zip(self.data, self.children)) + "}"
        return f"{self.data.__name__}({inner})"


LEAF = TreeDef(_LEAF)


def _sorted_keys(d: dict) -> tuple:
    try:
        return tuple(sorted(d))
    except TypeError:  # keys of mixed, unorderable types keep their insertion order
        return tuple(d)


def _children(node: Any) -> tuple[str, Any, list[tuple[str, Any]]] | None:
    """(kind, data, [(path suffix, child)]) for a container node, None for a leaf."""
    if node is None:
        return _NONE, None, []
    if isinstance(node, tuple):
        if hasattr(type(node), "_fields"):
            return _NAMEDTUPLE, type(node), [(f".{f}", v) for f, v in zip(node._fields, node)]
        return _TUPLE, None, [(f"[{i}]", v) for i, v in enumerate(node)]
    if isinstance(node, list):
        return _LIST, None, [(f"[{i}]", v) for i, v in enumerate(node)]
    if isinstance(node, dict):
        keys = _sorted_keys(node)
        return _DICT, keys, [(f"[{k!r}]", node[k]) for k in keys]
    return None


def flatten_with_paths(tree: Any, prefix: str = "",
                       is_leaf: Callable[[Any], bool] | None = None) -> tuple[list[tuple[str, Any]], TreeDef]:
    """The leaves with their paths (`prefix['w'][0]`), and the tree's structure."""
    if is_leaf is not None and is_leaf(tree):
        return [(prefix, tree)], LEAF
    parts = _children(tree)
    if parts is None:
        return [(prefix, tree)], LEAF
    kind, data, children = parts
    leaves: list[tuple[str, Any]] = []
    defs = []
    for suffix, child in children:
        child_leaves, child_def = flatten_with_paths(child, prefix + suffix, is_leaf)
        leaves.extend(child_leaves)
        defs.append(child_def)
    return leaves, TreeDef(kind, data, tuple(defs))


def flatten(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> tuple[list[Any], TreeDef]:
    """The leaves of `tree` in order, and its structure."""
    pairs, treedef = flatten_with_paths(tree, "", is_leaf)
    return [leaf for _, leaf in pairs], treedef


def unflatten(treedef: TreeDef, leaves: Iterable[Any]) -> Any:
    """Rebuild a pytree of structure `treedef` from `leaves` (exactly `treedef.num_leaves` of them)."""
    leaves = list(leaves)
    if len(leaves) != treedef.num_leaves:
        raise ValueError(f"the tree structure {treedef} has {treedef.num_leaves} leaves, got {len(leaves)}")
    iterator = iter(leaves)
    return _build(treedef, iterator)


def _build(treedef: TreeDef, leaves) -> Any:
    kind = treedef.kind
    if kind == _LEAF:
        return next(leaves)
    if kind == _NONE:
        return None
    children = [_build(c, leaves) for c in treedef.children]
    if kind == _TUPLE:
        return tuple(children)
    if kind == _LIST:
        return children
    if kind == _DICT:
        return dict(zip(treedef.data, children))
    return treedef.data(*children)


def tree_map(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """Apply `fn` to corresponding leaves of trees with the same structure."""
    leaves, treedef = flatten(tree)
    others = []
    for other in rest:
        other_leaves, other_def = flatten(other)
        if other_def != treedef:
            raise ValueError(f"tree structures differ: {treedef} and {other_def}")
        others.append(other_leaves)
    return unflatten(treedef, [fn(*group) for group in zip(leaves, *others)])


__all__ = ["LEAF", "TreeDef", "flatten", "flatten_with_paths", "tree_map", "unflatten"]
