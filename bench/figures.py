"""Figures the benchmarks measured, and how they are printed.

Every benchmark prints its own detail lines as it goes and returns
``Figure`` values; run_all gathers them into the summary table. A figure
has a value per monitor ('ours', 'peer'); a monitor that did not run has
None.
"""

import statistics
import sys
import typing


class Figure(typing.NamedTuple):
    key: str      # e.g. 'sweep_duration hung=2'
    label: str    # e.g. 'sweep, 2 hung agents (median)'
    unit: str     # 's', 'MiB'
    ours: typing.Optional[float]
    peer: typing.Optional[float]
    digits: int = 2

    @property
    def ratio(self):
        return ratio(self.peer, self.ours)


def say(line=''):
    sys.stdout.write(line + '\n')
    sys.stdout.flush()


def median(values):
    return statistics.median(values) if values else None


def ratio(peer, ours):
    """peer / ours, or None when either is missing or ours is zero."""
    if peer is None or ours is None or ours == 0:
        return None
    return peer / ours


def fmt(value, unit='', digits=2):
    if value is None:
        return 'n/a'
    return '%.*f %s' % (digits, value, unit) if unit else \
        '%.*f' % (digits, value)


def fmt_ratio(value):
    return 'n/a' if value is None else '%.1f' % value


def table(figures):
    """The summary: one row per figure, peer / ours in the last column."""
    rows = [('figure', 'ours', 'peer', 'peer/ours')]
    for figure in figures:
        rows.append((figure.label,
                     fmt(figure.ours, figure.unit, figure.digits),
                     fmt(figure.peer, figure.unit, figure.digits),
                     fmt_ratio(figure.ratio)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        lines.append('  '.join([row[0].ljust(widths[0])] +
                               [cell.rjust(widths[i])
                                for i, cell in enumerate(row[1:], 1)]))
    return lines
