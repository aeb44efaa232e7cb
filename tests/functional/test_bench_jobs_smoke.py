#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""scripts/bench-jobs --smoke: every row of the table is produced, for
both daemons, and parses as numbers; the mirror's switch left the export
serving the target.  Speed is never asserted."""

import json
import os
import re
import subprocess
import sys

from harness import (assert_eq, blockd_binary, main, require_program,
                     source_root, test)

ROWS = [
    'mirror: time to READY (s)',
    'mirror: throughput (MiB/s)',
    'mirror+load: time to READY (s)',
    'mirror+load: guest IOPS before the job',
    'mirror+load: guest IOPS during the copy',
    'complete: job-complete QMP latency (ms)',
    'complete: job-complete to COMPLETED (ms)',
    'complete: guest I/O gap across it (ms)',
    'complete: longest guest I/O gap around it (ms)',
    'complete: longest guest I/O gap before the job (ms)',
    'complete: guest IOPS after the switch',
    'complete: export serves the target (1 = yes)',
    'backup: time (s)',
    'backup: throughput (MiB/s)',
    'backup+load: time (s)',
    'backup+load: throughput (MiB/s)',
    'backup+load: guest IOPS before the job',
    'backup+load: guest IOPS during the backup',
]

NUMBER = r'[0-9]+(?:\.[0-9]+)?'
# One repetition: a plain number; more: "median (min–max)".
CELL = re.compile(rf'^({NUMBER})(?: \(({NUMBER})–({NUMBER})\))?$')


def parse_table(text):
    """{measurement: (blockd, qsd, ratio)} from the markdown table."""
    rows = {}
    for line in text.splitlines():
        if not line.startswith('| ') or line.startswith('| measurement'):
            continue
        cells = [c.strip() for c in line.strip('|').split('|')]
        assert_eq(len(cells), 4, f'columns of {line!r}')
        rows[cells[0]] = tuple(cells[1:])
    return rows


def number(cell, what):
    m = CELL.match(cell)
    assert m, f'{what}: {cell!r} is not a number'
    return float(m.group(1))


@test
def test_smoke_produces_every_row(env):
    require_program('qemu-storage-daemon')
    require_program('qemu-img')
    out = env.path('results.md')
    raw = env.path('results.json')
    r = subprocess.run(
        ['/usr/bin/python3', os.path.join(source_root(), 'scripts',
                                          'bench-jobs'),
         '--smoke', '--blockd', blockd_binary(), '--out', out,
         '--json', raw, '--dir', env.dir],
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=300, cwd=env.dir)
    assert_eq(r.returncode, 0, f'exit status (stderr: {r.stderr})')
    with open(out) as f:
        text = f.read()
    assert_eq(r.stdout.strip(), text.strip(), 'stdout is the results file')
    rows = parse_table(text)
    assert_eq(list(rows), ROWS, 'rows')
    for name, (blockd, qsd, ratio) in rows.items():
        b = number(blockd, f'{name}, blockd')
        q = number(qsd, f'{name}, QSD')
        if q == 0:
            # A smoke copy may end before the guest completes anything.
            assert_eq(ratio, '-', f'{name}, ratio')
        else:
            number(ratio, f'{name}, ratio')
        if name.startswith('complete: export serves'):
            assert_eq((b, q), (1.0, 1.0), name)
    with open(raw) as f:
        samples = json.load(f)
    assert_eq(samples['metrics'], ROWS, 'metrics in the JSON')
    for server in ('blockd', 'qsd'):
        for name in ROWS:
            assert_eq(len(samples['samples'][server][name]), 1,
                      f'{server} samples of {name}')
    assert_eq(samples['failures'], [], 'runs that failed')
    leftovers = [n for n in os.listdir(env.dir) if n.startswith('bench-jobs-')]
    assert_eq(leftovers, [], 'work directories left behind')


if __name__ == '__main__':
    sys.exit(main())
