"""A small PNG line chart, written with zlib alone (no plotting library
needed to run the benchmarks).

    data = panels(800, 200, [[(values, (200, 0, 0), (low, high))]])

Panels stacked top to bottom, each a frame with grid lines at the
quarters of its value range and its series drawn as lines over it. It
carries no text: the tool that writes it prints the axes' ranges.
"""

import struct
import zlib

WHITE = (255, 255, 255)
GREY = (220, 220, 220)
BLACK = (0, 0, 0)


class Canvas:
    def __init__(self, width, height, background=WHITE):
        self.width = width
        self.height = height
        self.rows = [bytearray(bytes(background) * width)
                     for _ in range(height)]

    def dot(self, x, y, color):
        if 0 <= x < self.width and 0 <= y < self.height:
            self.rows[y][3 * x:3 * x + 3] = bytes(color)

    def line(self, x0, y0, x1, y1, color):
        """Bresenham's line from (x0, y0) to (x1, y1)."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        error = dx + dy
        while True:
            self.dot(x0, y0, color)
            if x0 == x1 and y0 == y1:
                return
            twice = 2 * error
            if twice >= dy:
                error += dy
                x0 += sx
            if twice <= dx:
                error += dx
                y0 += sy

    def png(self):
        raw = b''.join(b'\x00' + bytes(row) for row in self.rows)

        def chunk(kind, data):
            body = kind + data
            return (struct.pack('>I', len(data)) + body
                    + struct.pack('>I', zlib.crc32(body) & 0xffffffff))

        header = struct.pack('>IIBBBBB', self.width, self.height, 8, 2, 0,
                             0, 0)
        return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header)
                + chunk(b'IDAT', zlib.compress(raw, 9)) + chunk(b'IEND', b''))


def panels(width, panel_height, series_per_panel, margin=8):
    """One PNG of panels stacked top to bottom; ``series_per_panel`` is a
    list, per panel, of (values, color, (low, high)). Returns the bytes."""
    canvas = Canvas(width, panel_height * len(series_per_panel))
    for index, series in enumerate(series_per_panel):
        top = index * panel_height + margin
        bottom = (index + 1) * panel_height - margin
        left, right = margin, width - margin
        for quarter in range(1, 4):
            y = bottom - (bottom - top) * quarter // 4
            canvas.line(left, y, right, y, GREY)
        canvas.line(left, top, right, top, BLACK)
        canvas.line(left, bottom, right, bottom, BLACK)
        canvas.line(left, top, left, bottom, BLACK)
        canvas.line(right, top, right, bottom, BLACK)
        for values, color, (low, high) in series:
            if len(values) < 2:
                continue
            span = (high - low) or 1.0
            points = []
            for n, value in enumerate(values):
                x = left + (right - left) * n // (len(values) - 1)
                y = bottom - int((bottom - top) * (value - low) / span)
                points.append((x, min(bottom, max(top, y))))
            for (x0, y0), (x1, y1) in zip(points, points[1:]):
                canvas.line(x0, y0, x1, y1, color)
    return canvas.png()
