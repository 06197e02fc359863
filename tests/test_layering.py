"""The layers of the code base, checked from the source: the front end and the core never import the
application or a backend; backends import only the front end and the core; the ONNX backend never torch."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support import REPO

APPLICATION = {"protodef.api", "protodef.cli", "protodef.check", "protodef.info", "protodef.plugins",
               "protodef.layer_table", "protodef.census_table", "protodef.convert", "protodef.verify",
               "protodef.__main__"}
APPLICATION_PACKAGES = ("protodef.train.",)     # the solver drives the API and the PyTorch backend


def is_application(module: str) -> bool:
    return module in APPLICATION or module.startswith(APPLICATION_PACKAGES)


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at any depth in the file (lazy imports count), resolved to dotted names."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def modules_under(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def application_imports(path: Path) -> set[str]:
    return {name for name in imports_of(path)
            if is_application(name) or name == "protodef" or name.startswith("protodef.__init__")}


@pytest.mark.parametrize("path", modules_under("converters"), ids=lambda p: str(p.relative_to(REPO)))
def test_backends_never_import_the_application(path):
    assert application_imports(path) == set()


def core_modules() -> list[Path]:
    """protodef's modules less the application (protodef/__init__.py is the application's front door)."""
    return [p for p in modules_under("protodef") + modules_under("caffe_proto")
            if not is_application(".".join(p.relative_to(REPO).with_suffix("").parts))
            and p != REPO / "protodef" / "__init__.py"]


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_the_core_never_imports_the_application_or_a_backend(path):
    imported = imports_of(path)
    assert application_imports(path) == set()
    assert {name for name in imported if name.split(".")[0] == "converters"} == set()


@pytest.mark.parametrize("path", modules_under("converters/onnx"), ids=lambda p: str(p.relative_to(REPO)))
def test_the_onnx_backend_never_imports_torch(path):
    assert {name for name in imports_of(path) if name.split(".")[0] == "torch"} == set()


def test_drawing_reads_neither_the_schema_nor_the_fillers():
    for path in modules_under("converters/graphviz"):
        imported = imports_of(path)
        assert not any(name.startswith("caffe_proto") for name in imported), path
        assert not any(name.startswith("protodef.attach") or name.startswith("protodef.fillers")
                       for name in imported), path
