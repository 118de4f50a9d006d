"""The study package's modules import one another without a cycle (function-level imports included):
build -> publish -> analyze -> build was one; the key's names and reader live in eval/study/key.py."""
import ast
from pathlib import Path

import eval.study


def relative_imports(path: Path) -> set[str]:
    return {node.module.split(".")[0] for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}                       # 1 on the path, 2 done

    def visit(node, path):
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path + [node, dep]
            if dep not in state and (found := visit(dep, path + [node])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_study_modules_import_without_a_cycle():
    folder = Path(eval.study.__file__).parent
    graph = {p.stem: relative_imports(p) for p in folder.glob("*.py") if p.stem not in ("__init__", "__main__")}
    assert {"build", "analyze", "publish", "key"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
