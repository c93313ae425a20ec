"""A strict reader of the Prometheus text exposition format, for tests.

It checks what a scraper relies on (HELP and TYPE before a family's
samples, sample names belonging to their family, well-formed labels and
values, no series twice) and returns the samples for assertions.
"""

import re

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
_UNESCAPE = {'\\\\': '\\', '\\"': '"', '\\n': '\n'}
_SUFFIXES = {'counter': ('',), 'gauge': ('',),
             'histogram': ('_bucket', '_sum', '_count')}


class Exposition:
    def __init__(self, families, samples):
        # name -> (type, help)
        self.families = families
        # (name, frozenset of (label, value)) -> float
        self.samples = samples

    def value(self, name, **labels):
        return self.samples[(name, frozenset(labels.items()))]

    def series(self, name):
        """{frozenset(labels): value} of one sample name."""
        return {labels: v for (n, labels), v in self.samples.items()
                if n == name}


def _labels(text):
    pairs = []
    pos = 0
    while pos < len(text):
        match = _LABEL.match(text, pos)
        assert match, 'bad labels: %r' % text
        value = re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group(0)],
                       match.group(2))
        pairs.append((match.group(1), value))
        pos = match.end()
        if pos < len(text):
            assert text[pos] == ',', 'bad labels: %r' % text
            pos += 1
    names = [name for name, _ in pairs]
    assert len(names) == len(set(names)), 'label twice: %r' % text
    return frozenset(pairs)


def parse(text):
    assert text.endswith('\n'), 'the exposition must end with a newline'
    families = {}
    samples = {}
    current = None
    helps = {}
    for line in text[:-1].split('\n'):
        if line.startswith('# HELP '):
            name, _, help_text = line[len('# HELP '):].partition(' ')
            assert name not in families and name not in helps, name
            helps[name] = help_text
        elif line.startswith('# TYPE '):
            name, _, kind = line[len('# TYPE '):].partition(' ')
            assert kind in _SUFFIXES, line
            assert name in helps and name not in families, \
                'TYPE %s without HELP first, or twice' % name
            families[name] = (kind, helps[name])
            current = name
        else:
            match = _SAMPLE.match(line)
            assert match, 'not a sample line: %r' % line
            name, labels, value = match.groups()
            assert current is not None, 'sample before any TYPE: %r' % line
            kind = families[current][0]
            assert name in [current + s for s in _SUFFIXES[kind]], \
                '%s is not part of family %s' % (name, current)
            key = (name, _labels(labels or ''))
            assert key not in samples, 'series twice: %r' % line
            samples[key] = float(value)
    return Exposition(families, samples)
