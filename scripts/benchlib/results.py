# SPDX-License-Identifier: GPL-2.0-or-later
"""Cells of the matrix, samples, and number formatting."""

import dataclasses
import statistics

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

# Pause between QMP commands of the graph-change loop: a busy management
# client, not a denial-of-service.
GRAPH_CHANGE_PAUSE = 0.01
# The graph-change measurement: the load alone, then with each loop.
GRAPH_PHASES = ('baseline', 'add-del', 'set-iothread')

# --- Cells ------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Cell:
    """One fio job shape on one backend."""
    backend: str      # 'file' (the raw image) or 'null'
    rw: str           # fio's rw=
    bs: int
    iodepth: int
    conns: int        # fio jobs, one NBD connection each

    @property
    def sequential(self):
        return self.rw in ('read', 'write')

    @property
    def name(self):
        kind = {'read': 'seqread', 'write': 'seqwrite',
                'randrw': 'randrw70'}.get(self.rw, self.rw)
        size = f'{self.bs // MIB}m' if self.bs >= MIB else f'{self.bs // KIB}k'
        return f'{self.backend}/{kind}-{size}-qd{self.iodepth}-c{self.conns}'

    @property
    def group(self):
        if self.sequential:
            return 'Sequential 1 MiB, file-backed'
        if self.backend == 'file':
            return '4k random, file-backed'
        return '4k random, null backend'


def full_matrix():
    cells = []
    for backend in ('file', 'null'):
        for rw in ('randread', 'randwrite', 'randrw'):
            for iodepth in (1, 32):
                for conns in (1, 4):
                    cells.append(Cell(backend, rw, 4 * KIB, iodepth, conns))
        if backend == 'file':
            cells += [Cell('file', 'read', MIB, 8, 1),
                      Cell('file', 'write', MIB, 8, 1)]
    return cells


def smoke_matrix():
    return [Cell('file', 'randread', 4 * KIB, 32, 1),
            Cell('file', 'randrw', 4 * KIB, 1, 4),
            Cell('file', 'write', MIB, 8, 1),
            Cell('null', 'randwrite', 4 * KIB, 32, 1)]


EXTRAS = ('extra/rss', 'extra/startup', 'extra/qmp-nodes',
          'extra/graph-change')


# --- Results ------------------------------------------------------------------

@dataclasses.dataclass
class Sample:
    """One fio run."""
    iops: float
    mibs: float
    lat_mean_us: float
    lat_p99_us: float
    ios: int
    cpu_us_per_io: float = None


@dataclasses.dataclass
class Row:
    """The samples of one server in one cell (or one extra measurement)."""
    label: str = ''
    samples: list = dataclasses.field(default_factory=list)
    status: str = None          # instead of numbers: why there are none
    notes: list = dataclasses.field(default_factory=list)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def percentile(values, p):
    """Nearest-rank percentile of @values (0 < p <= 100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def fmt(v, digits=3):
    """@v with about @digits significant digits; '—' for None."""
    if v is None:
        return '—'
    if v >= 10 ** digits:
        return f'{v:,.0f}'
    if v == 0:
        return '0'
    decimals = max(0, digits - 1 - int(f'{abs(v):e}'.split('e')[1]))
    return f'{v:.{decimals}f}'


def fmt_iops(v):
    if v is None:
        return '—'
    if v >= 1e6:
        return f'{v / 1e6:.2f}M'
    if v >= 1e3:
        return f'{v / 1e3:.1f}k'
    return f'{v:.0f}'


def fmt_spread(values, formatter):
    values = [v for v in values if v is not None]
    if not values:
        return '—'
    text = formatter(median(values))
    if len(values) > 1:
        text += f' ({formatter(min(values))}–{formatter(max(values))})'
    return text


def md_escape(text):
    return text.replace('|', '\\|').replace('\n', ' ')


def table(header, rows):
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '|'.join('---' for _ in header) + '|']
    lines += ['| ' + ' | '.join(md_escape(str(c)) for c in row) + ' |'
              for row in rows]
    return '\n'.join(lines)


def rotate(items, rep):
    if not items:
        return []
    shift = rep % len(items)
    return items[shift:] + items[:shift]


def longest_gap_ms(path):
    """The longest gap between consecutive completions in a fio latency
    log (first column: ms since the job started)."""
    times = []
    try:
        with open(path) as f:
            for line in f:
                head = line.split(',', 1)[0]
                if head.strip().isdigit():
                    times.append(int(head))
    except OSError:
        return None
    times.sort()
    return max((b - a for a, b in zip(times, times[1:])), default=None)

