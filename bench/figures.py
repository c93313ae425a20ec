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
    # (lowest, highest) of the samples behind a median, when there are
    # several.
    ours_spread: typing.Optional[tuple] = None
    peer_spread: typing.Optional[tuple] = None

    @property
    def ratio(self):
        """ours / peer: below 1 where ours is faster or smaller."""
        return ratio(self.ours, self.peer)


def say(line=''):
    sys.stdout.write(line + '\n')
    sys.stdout.flush()


def median(values):
    return statistics.median(values) if values else None


def ratio(numerator, denominator):
    """numerator / denominator, or None when either is missing or the
    denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def fmt(value, unit='', digits=2):
    if value is None:
        return 'n/a'
    return '%.*f %s' % (digits, value, unit) if unit else \
        '%.*f' % (digits, value)


def fmt_ratio(value, digits=1):
    return 'n/a' if value is None else '%.*f' % (digits, value)


def fmt_spread(spread, digits=1):
    """'12.1-14.0', or '' without one."""
    if spread is None:
        return ''
    return '%.*f-%.*f' % (digits, spread[0], digits, spread[1])


def table(figures):
    """The summary: one row per figure, each monitor's median (with the
    lowest and highest sample where there are several) and ours / peer."""
    rows = [('figure', 'ours', '(spread)', 'peer', '(spread)', 'ours/peer')]
    for figure in figures:
        rows.append((figure.label,
                     fmt(figure.ours, figure.unit, figure.digits),
                     fmt_spread(figure.ours_spread),
                     fmt(figure.peer, figure.unit, figure.digits),
                     fmt_spread(figure.peer_spread),
                     fmt_ratio(figure.ratio, 2)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        lines.append('  '.join([row[0].ljust(widths[0])] +
                               [cell.rjust(widths[i])
                                for i, cell in enumerate(row[1:], 1)]))
    return lines
