"""The package's shape: the public names, private stages, and imports that run one way.

A maintainer finds a call's path by the folders (docs/design.md maps them);
these tests keep that map true as code moves.
"""

import ast
import importlib
from pathlib import Path

import analytics_posthog

PACKAGE = Path(analytics_posthog.__file__).parent
PUBLIC_MODULES = {
    "__init__",
    "__main__",
    "client",
    "errors",
    "mapping",
    "settings",
    "version",
    "integrations",
    "testing",
}
SEGMENT_MODULE_API = {
    "Client",
    "__version__",
    "default_client",
    "write_key",
    "host",
    "on_error",
    "debug",
    "log_handler",
    "send",
    "sync_mode",
    "max_queue_size",
    "gzip",
    "timeout",
    "max_retries",
    "oauth_client_id",
    "oauth_client_key",
    "oauth_key_id",
    "oauth_auth_server",
    "oauth_scope",
    "track",
    "identify",
    "group",
    "alias",
    "page",
    "screen",
    "flush",
    "join",
    "shutdown",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(
    tree: ast.AST, here: str, is_package: bool, modules: dict[str, Path]
) -> set[str]:
    """Every module of ours this one imports while it is imported itself.

    An import inside a function runs once the package is loaded and cannot
    leave a module half-initialised, so only import-time edges count.
    """
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("analytics_posthog"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("analytics_posthog"):
                # ``from pkg import module`` needs the module; ``from pkg import
                # name`` needs the package's own code.
                for alias in node.names:
                    found.add(
                        f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target
                    )
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        targets = runtime_imports(tree, name, path.name == "__init__.py", modules)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def test_public_names_are_segments_and_ours():
    ours = {
        "configure",
        "install_as_segment",
        "get_posthog_client",
        "posthog_api_key",
        "posthog_host",
    }
    exported = set(analytics_posthog.__all__)
    assert SEGMENT_MODULE_API <= exported
    assert ours & exported == ours
    for name in exported:
        assert hasattr(analytics_posthog, name), name


def test_only_public_modules_lack_an_underscore():
    top = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()}
    top = {n for n in top if n != "py" and not n.startswith("__pycache__")}
    top.discard("py.typed")
    public = {n for n in top if not n.startswith("_") or n in {"__init__", "__main__"}}
    assert public == PUBLIC_MODULES


def test_no_import_circles():
    graph = import_graph()
    circles = []
    state: dict[str, int] = {}

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                walk(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node, [node])
    assert circles == []


def test_only_the_patches_import_posthogs_and_segments_insides():
    allowed_public = {"posthog", "segment.analytics"}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "_patches" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            for name in names:
                root = name.split(".")[0]
                if root in {"posthog", "segment"} and name not in allowed_public:
                    offenders.append(f"{module_name(path)}: {name}")
    assert offenders == []


def test_users_import_paths_keep_working():
    for path in (
        "analytics_posthog.client",
        "analytics_posthog.integrations.django",
        "analytics_posthog.integrations.flask",
        "analytics_posthog.integrations.asgi",
        "analytics_posthog.integrations.celery",
        "analytics_posthog.integrations.serverless",
        "analytics_posthog.testing",
    ):
        importlib.import_module(path)
    assert analytics_posthog.Client.__module__ == "analytics_posthog.client"
    assert callable(analytics_posthog.install_as_segment)
