"""Plain-text tables for the operators' command-line tools."""


def format_table(header, rows):
    """``header`` and ``rows`` as left-aligned columns two spaces apart."""
    widths = [max(len(str(cell)) for cell in column)
              for column in zip(header, *rows)]
    lines = []
    for row in (header, *rows):
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths)]
        lines.append('  '.join(cells).rstrip())
    return '\n'.join(lines)
