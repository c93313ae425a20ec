"""The package's layout is its architecture: each concern in its own
package, imports only going downward, each outside library behind the one
package that is its edge.

Read from the source (every import statement, function-local ones
included, and every module named to ``importlib.import_module``), so a
shortcut through a deferred import is caught like any other.
"""

import ast
import pathlib
import re

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / 'monitor'

# Lower layers first; a module may import its own layer and those below.
# Packages on one line are one layer: they may not import each other.
LAYERS = (
    ('base',),
    ('health',),
    ('store',),
    ('virt', 'notify'),
    ('daemon',),
    ('conf',),
    ('cmd',),
)
BASE_MODULES = ('errors', 'masking', 'concurrency', 'crash_points')

# Outside libraries and the only package (or base module) that may use
# each of them.
EDGES = {
    'libvirt': 'virt',
    'libvirt_qemu': 'virt',
    'requests': 'notify',
    'keystoneauth1': 'notify',
    'eventlet': 'concurrency',
}

MAX_LINES = 500
MAX_TOP_LEVEL_MODULES = 6


def modules():
    found = {}
    for path in sorted(PACKAGE.rglob('*.py')):
        parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
        if parts[-1] == '__init__':
            parts = parts[:-1]
        found['.'.join(parts)] = path
    return found


def area(module):
    """'health', 'virt', ... or 'base' for a top-level module."""
    parts = module.split('.')
    if len(parts) == 2 and parts[1] in BASE_MODULES:
        return 'base'
    if len(parts) >= 3:
        return parts[1]
    return None  # monitor/__init__.py


def layer_of(name):
    for index, names in enumerate(LAYERS):
        if name in names:
            return index
    raise AssertionError('no layer for %s' % name)


def imported(module, path):
    """Every module ``module`` imports: (name, line)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == '__init__.py' else module.rpartition(
        '.')[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parent = package.split('.')
                parent = parent[:len(parent) - node.level + 1]
                base = '.'.join(parent + ([base] if base else []))
            for alias in node.names:
                yield '%s.%s' % (base, alias.name), node.lineno
                yield base, node.lineno
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and re.fullmatch(r'monitor(\.\w+)+', node.value)):
            # Module names handed to importlib.
            yield node.value, node.lineno


def own_imports(module, path, known):
    for name, line in imported(module, path):
        while name and name not in known:
            name = name.rpartition('.')[0]
        if name and name != module and name != 'monitor':
            yield name, line


def test_there_are_few_modules_at_the_top_of_the_package():
    top = [path.name for path in PACKAGE.glob('*.py')]
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


@pytest.mark.parametrize('module', sorted(modules()))
def test_imports_only_go_downward(module):
    known = modules()
    mine = area(module)
    if mine is None:
        return
    wrong = []
    for name, line in own_imports(module, known[module], known):
        theirs = area(name)
        if theirs is None:
            continue
        if layer_of(theirs) > layer_of(mine) or (
                theirs != mine
                and layer_of(theirs) == layer_of(mine)):
            wrong.append('%s (line %d)' % (name, line))
    assert not wrong, '%s imports upward or sideways: %s' % (module, wrong)


def test_no_import_cycle():
    known = modules()
    graph = {module: {name for name, _line in own_imports(module, path,
                                                          known)}
             for module, path in known.items()}
    visiting, done, cycles = set(), set(), []

    def visit(module, trail):
        if module in done:
            return
        if module in visiting:
            cycles.append(trail[trail.index(module):] + [module])
            return
        visiting.add(module)
        for name in sorted(graph.get(module, ())):
            visit(name, trail + [module])
        visiting.discard(module)
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert not cycles


@pytest.mark.parametrize('library', sorted(EDGES))
def test_each_outside_library_is_used_only_at_its_edge(library):
    edge = EDGES[library]
    users = []
    for module, path in modules().items():
        for name, line in imported(module, path):
            if name.split('.')[0] != library:
                continue
            parts = module.split('.')
            if edge in parts[1:]:
                continue
            users.append('%s (line %d)' % (module, line))
    assert not users, '%s used outside %s: %s' % (library, edge, users)


@pytest.mark.parametrize('module', sorted(modules()))
def test_no_module_is_too_long_to_read_in_one_sitting(module):
    lines = modules()[module].read_text().count('\n')
    assert lines <= MAX_LINES, '%s has %d lines' % (module, lines)


def test_each_package_says_what_it_holds():
    for init in PACKAGE.glob('*/__init__.py'):
        assert ast.get_docstring(ast.parse(init.read_text())), init
