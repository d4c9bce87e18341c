"""The import graph of platform/, billing/ and workers/, read statically (ast):
every import statement counts, at the top of a module or inside a function,
class or `if` — a function-level import still closes a cycle, it only hides it.

- workers/ (the training and compression library a Celery task calls) imports
  neither Django nor any platform app nor config;
- no two modules import each other, directly or round a longer loop;
- between apps (platform/<app>, billing, workers) the cycles are exactly the
  declared allow-list below, so no new one can appear.
No Django here: the source is read, never imported.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# (folder on sys.path, the top-level names under it that are ours)
SOURCE_ROOTS = ((REPO_ROOT / "platform", None), (REPO_ROOT, ("billing", "workers")))

# Django and the Django-side libraries the platform builds on: none inside workers/.
DJANGO_SIDE = {"django", "rest_framework", "drf_spectacular", "drf_spectacular_sidecar", "axes", "whitenoise",
               "storages", "environ"}

# Module cycles still open, each with the way out. An entry that is no longer a
# cycle fails the test too: delete it, so the list only shrinks.
KNOWN_MODULE_CYCLES = {
    # selectors.eta delegates to estimates.eta; estimates.method_of asks selectors.job_method. The way out
    # (issue 13's kind registry, in progress): "the method of a job's kind" moves into the kind declaration,
    # below both, and estimates reads it there.
    frozenset({"jobs.estimates", "jobs.selectors"}): "job_method moves to the kind declaration (issue 13)",
}

# The app layering, bottom to top: an app may import those below it. config (settings, URLs, the Celery
# app) is the composition root on top: nothing imports it (tasks are rung by name, and code that needs the
# Celery app takes celery.current_app).
LAYERS = ("workers", "core", "tenancy", "audit", "accounts", "catalog", "corpora", "registry", "billing", "jobs",
          "serving", "openai_compat", "dashboard", "config")

# Imports that still point up the layering, each closing an app-level cycle. This is the allow-list of app
# cycles: the graph without these edges must be acyclic, and every edge listed must still exist and still
# close a cycle (delete it once it does not). Issue 13 removed billing -> jobs (usage segments moved into
# billing's metering, jobs record usage through one call and the quote moved to jobs) and core/corpora ->
# billing (limits come from tenancy.entitlements, whose provider billing registers).
ALLOWED_APP_BACK_EDGES = {
    ("corpora", "registry"): "corpora.limits counts uploaded models against the storage quota",
    ("core", "tenancy"): "core.api resolves the request's organization and actor",
    ("core", "accounts"): "core's seed_demo command creates the demo users",
    ("core", "corpora"): "core's `lathe` template tags format corpora.parsing's confidence levels",
    ("tenancy", "accounts"): "tenancy.services creates users on invitation",
    ("tenancy", "audit"): "tenancy.services records audit entries",
}


def discover(roots=SOURCE_ROOTS) -> dict[str, Path]:
    """Dotted module name → file, for every .py file of ours."""
    modules = {}
    for root, tops in roots:
        paths = root.rglob("*.py") if tops is None else (p for top in tops for p in (root / top).rglob("*.py"))
        for path in paths:
            if "__pycache__" in path.parts:
                continue
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imported_names(module: str, path: Path) -> list[tuple[str, int]]:
    """(dotted name, line) for every import in the file, wherever it stands.
    `from a import b` yields a.b (a submodule, or a name resolved to `a` later)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            names += [(f"{source}.{alias.name}", node.lineno) for alias in node.names]
    return names


def build_graph(modules: dict[str, Path]):
    """module → {imported module of ours: line}, and module → [(external top-level name, line)].
    Importing a.b.c also runs a/__init__ and a/b/__init__: those count too (but not
    the importer's own packages, which are always initialised before it)."""
    graph, external = {}, defaultdict(list)
    for module, path in modules.items():
        own_packages = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        edges = graph[module] = {}
        for name, line in imported_names(module, path):
            parts = name.split(".")
            target = next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in modules),
                          None)
            if target is None:
                external[module].append((parts[0], line))
                continue
            chain = [".".join(target.split(".")[:i]) for i in range(1, target.count(".") + 2)]
            for reached in chain:
                if reached != module and reached in modules and reached not in own_packages:
                    edges.setdefault(reached, line)
    return graph, external


def cycles(graph: dict[str, dict]) -> list[set[str]]:
    """The strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def describe(component: set[str], graph: dict[str, dict], modules: dict[str, Path] | None = None) -> str:
    lines = []
    for source in sorted(component):
        for target, line in sorted(graph[source].items()):
            if target in component:
                where = f" ({modules[source].relative_to(REPO_ROOT)}:{line})" if modules else ""
                lines.append(f"  {source} -> {target}{where}")
    return "\n".join(lines)


def app_of(module: str) -> str:
    return module.split(".")[0]


def app_graph(graph: dict[str, dict]) -> dict[str, dict[str, list[str]]]:
    """app → {app it imports: ["module -> module", ...]}."""
    apps = {app_of(m): {} for m in graph}
    for source, targets in graph.items():
        for target in targets:
            if app_of(source) != app_of(target):
                apps[app_of(source)].setdefault(app_of(target), []).append(f"{source} -> {target}")
    return apps


def reaches(graph: dict[str, dict], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo += list(graph.get(node, ()))
    return False


MODULES = discover()
GRAPH, EXTERNAL = build_graph(MODULES)
APPS = app_graph(GRAPH)


def test_the_walk_sees_every_app_and_nested_imports():
    assert set(LAYERS) == set(APPS), "an app is missing from LAYERS (or a folder from the walk)"
    # A function-level import is an edge: jobs.staging imports registry.validation inside a function.
    assert "registry.validation" in GRAPH["jobs.staging"]


def test_workers_import_neither_django_nor_the_platform():
    ours = {app_of(m) for m in MODULES} - {"workers"}
    offending = [f"{MODULES[m].relative_to(REPO_ROOT)}:{line} imports {name}"
                 for m in MODULES if app_of(m) == "workers"
                 for name, line in EXTERNAL[m] if name in DJANGO_SIDE or name.startswith("django")]
    offending += [f"{MODULES[m].relative_to(REPO_ROOT)}:{line} imports {target}"
                  for m in MODULES if app_of(m) == "workers"
                  for target, line in GRAPH[m].items() if app_of(target) in ours]
    assert not offending, "workers/ must stay Django-free:\n" + "\n".join(offending)


def test_no_import_cycle_between_modules():
    found = {frozenset(c): c for c in cycles(GRAPH)}
    new = [describe(c, GRAPH, MODULES) for key, c in found.items() if key not in KNOWN_MODULE_CYCLES]
    assert not new, "modules import each other in a circle:\n" + "\n\n".join(new)
    gone = [sorted(key) for key in KNOWN_MODULE_CYCLES if key not in found]
    assert not gone, f"no longer a cycle, delete from KNOWN_MODULE_CYCLES: {gone}"


def test_app_cycles_are_exactly_the_allow_list():
    without = {a: {b: 0 for b in targets if (a, b) not in ALLOWED_APP_BACK_EDGES} for a, targets in APPS.items()}
    new = cycles(without)
    assert not new, "a new import cycle between apps:\n" + "\n\n".join(
        "\n".join(f"  {a} -> {b}: {', '.join(APPS[a][b][:3])}" for a in sorted(c) for b in without[a] if b in c)
        for c in new)
    stale = [edge for edge in ALLOWED_APP_BACK_EDGES if edge[1] not in APPS[edge[0]]
             or not reaches(APPS, edge[1], edge[0])]
    assert not stale, f"these no longer close an app cycle, delete them from ALLOWED_APP_BACK_EDGES: {stale}"
    # The allow-list is exactly the imports against the layering.
    rank = {app: i for i, app in enumerate(LAYERS)}
    upward = {(a, b) for a, targets in APPS.items() for b in targets if rank[b] > rank[a]}
    assert upward == set(ALLOWED_APP_BACK_EDGES), (
        f"against the layering but not allowed: {sorted(upward - set(ALLOWED_APP_BACK_EDGES))}; "
        f"allowed but gone: {sorted(set(ALLOWED_APP_BACK_EDGES) - upward)}")
    assert not any("config" in targets for app, targets in APPS.items() if app != "config"), "config is imported"


def test_the_checks_catch_a_hidden_cycle_and_django_in_workers(tmp_path):
    """The walker itself can fail: a function-level import closing a loop, a
    relative import, and Django inside a worker module are all seen."""
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "services.py").write_text("from . import tasks\n")
    (tmp_path / "shop" / "tasks.py").write_text("def run():\n    from shop.services import x\n")
    (tmp_path / "workers").mkdir()
    (tmp_path / "workers" / "train.py").write_text("import torch\n\ndef f():\n    from django.conf import settings\n")
    modules = discover(((tmp_path, ("shop", "workers")),))
    graph, external = build_graph(modules)
    assert [sorted(c) for c in cycles(graph)] == [["shop.services", "shop.tasks"]]
    assert ("django", 4) in external["workers.train"] and ("torch", 1) in external["workers.train"]
