"""Every option the README and the guide name is one the daemon knows: a
renamed or misspelt option in the documentation fails here, not on a
reader's host (where it would only be a warning in the log)."""

import pathlib
import re

import pytest
from keystoneauth1 import loading as ks_loading

from monitor.conf import loading

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / 'README.md'] + sorted((ROOT / 'docs').rglob('*.md'))

# Options of other programs that the guide names on purpose: the
# migration guide maps masakari-monitors' masakarimonitors.conf to ours.
FOREIGN_GROUPS = {'introspectiveinstancemonitor', 'api', 'callback'}
FOREIGN_OPTIONS = {('DEFAULT', 'hostname')}

# `[group] option` alone in a code span.
INLINE = re.compile(r'`\[([A-Za-z_]+)\] ([a-z][a-z0-9_]*)`')
FENCE = re.compile(r'^(\s*)(```+|~~~+)\s*(\S*)')
SECTION = re.compile(r'^\s*\[([A-Za-z_]+)\]\s*$')
# `name = value`, also commented out (`#name = value`) as the sample has
# them; `# words` is a comment.
SETTING = re.compile(r'^\s*#?([a-z][a-z0-9_]*)\s*=')

# Authentication plugins the guide tells to use; their options are
# registered when the daemon loads the plugin.
AUTH_PLUGINS = ('password', 'v3applicationcredential')


def known_options():
    conf = loading.build_conf()
    known = set()
    for group, opts in [('DEFAULT', conf._opts)] + [
            (name, conf._groups[name]._opts) for name in conf._groups]:
        for info in opts.values():
            opt = info['opt']
            known.add((group, opt.dest))
            for old in opt.deprecated_opts:
                known.add((old.group or group, old.name.replace('-', '_')))
    for plugin in AUTH_PLUGINS:
        for opt in ks_loading.get_auth_plugin_conf_options(plugin):
            known.add(('notifier', opt.dest))
    return known


def named_options(text):
    """(line number, group, option) of each option ``text`` names."""
    for number, line in enumerate(text.splitlines(), 1):
        for match in INLINE.finditer(line):
            yield number, match[1], match[2]
    for start, block in ini_blocks(text):
        group = None
        for offset, line in enumerate(block.splitlines()):
            section = SECTION.match(line)
            if section:
                group = section[1]
                continue
            setting = SETTING.match(line)
            if setting and group:
                yield start + offset, group, setting[1]


def ini_blocks(text):
    """(first line number, text) of each fenced ``ini`` code block."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        marker, language = fence[2], fence[3].strip('{}').lower()
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(
                marker):
            end += 1
        if language in ('ini', 'cfg', 'dosini'):
            yield index + 2, '\n'.join(lines[index + 1:end])
        index = end + 1


def unknown_options(text, known):
    return ['line %d: [%s] %s' % (number, group, option)
            for number, group, option in named_options(text)
            if group not in FOREIGN_GROUPS
            and (group, option) not in FOREIGN_OPTIONS
            and (group, option) not in known]


@pytest.fixture(scope='module')
def known():
    return known_options()


@pytest.mark.parametrize('document', DOCUMENTS,
                         ids=[str(d.relative_to(ROOT)) for d in DOCUMENTS])
def test_every_option_a_document_names_exists(document, known):
    assert unknown_options(document.read_text(), known) == []


def test_the_documents_do_name_options(known):
    named = {(group, option) for document in DOCUMENTS
             for _line, group, option in named_options(document.read_text())}
    assert ('monitor', 'interval') in named
    assert ('notifier', 'driver') in named


def test_a_made_up_option_is_caught_inline_and_in_a_config_block(known):
    text = '\n'.join([
        'Set `[monitor] interval` and `[monitor] intervall`.',
        '',
        '```ini',
        '[recovery]',
        'action = reset',
        '#max_actions = 3',
        'max_tries = 5              # not an option',
        '',
        '[nonsense]',
        'anything = 1',
        '```',
    ])
    assert unknown_options(text, known) == [
        'line 1: [monitor] intervall',
        'line 7: [recovery] max_tries',
        'line 10: [nonsense] anything',
    ]


def test_a_masakari_monitors_option_is_not_taken_for_ours(known):
    text = '`[introspectiveinstancemonitor] guest_monitoring_interval`'
    assert unknown_options(text, known) == []
