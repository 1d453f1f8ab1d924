"""Bounds on what a config file may cost to load: its size, its YAML alias expansion, its nesting.

A config is trusted more than traffic, but a reload runs inside the serving process, so a broken or
hostile file (billion laughs, a 1 GB file, 100,000 nested brackets) must give one error line in
bounded time, never hang the process or raise something other than ConfigError.
"""

from __future__ import annotations

import yaml

MAX_CONFIG_BYTES = 1 << 20  # real Higress configs are a few KiB; PyYAML parses ~1 MB/s
MAX_YAML_NODES = 100_000  # nodes after alias expansion (billion laughs expands 9^9 from ~100)


def too_big(path: str) -> str:
    return f"{path}: larger than the {MAX_CONFIG_BYTES} bytes a config file may have"


def check_yaml_expansion(root: yaml.Node | None) -> None:
    """Raise a YAML error (with the position of the first alias) when aliases expand the document
    beyond MAX_YAML_NODES nodes. Linear in the composed size: shared nodes are counted once each
    and their expanded size is memoised."""
    if root is None:
        return
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            total = 1 + sum(sizes[id(c)] for c in _children(node))
            sizes[key] = total
            if total > MAX_YAML_NODES:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"aliases expand this document beyond {MAX_YAML_NODES} nodes (a YAML bomb?)",
                    node.start_mark,
                )
            continue
        if key in sizes:
            continue
        if key in on_path:  # a recursive alias: PyYAML would loop; reject it
            raise yaml.constructor.ConstructorError(None, None, "recursive alias", node.start_mark)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []
