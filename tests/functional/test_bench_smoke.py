#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""scripts/bench --smoke runs end to end against every server (blockd,
blockd multiqueue, qemu-storage-daemon, qemu-nbd, nbdkit, the io_uring
ceiling), exits 0, writes its results file, and every row of every table
holds a number: the harness keeps working.  It asserts nothing about
speed."""

import os
import re
import shutil
import subprocess
import sys

from harness import (assert_eq, assert_in, blockd_binary, main, skip,
                     source_root, test)

SMOKE_TIMEOUT = 500

# How each server's rows are labelled in the tables.
LABELS = {
    'blockd': 'blockd',
    'blockd-mq': 'blockd (multiqueue, 2 iothreads)',
    'qsd': 'qemu-storage-daemon',
    'qemu-nbd': 'qemu-nbd',
    'nbdkit': 'nbdkit',
    'io_uring': 'fio io_uring',
}
NUMBER = re.compile(r'^[\d,]+(\.\d+)?[kM]?( \(|$)')


def bench(env, *args):
    cmd = [sys.executable, os.path.join(source_root(), 'scripts', 'bench'),
           '--smoke', '--no-install', '--dir', env.dir,
           '--blockd', blockd_binary(), *args]
    return subprocess.run(cmd, capture_output=True, text=True,
                          timeout=SMOKE_TIMEOUT, cwd=env.dir)


def table_rows(text, heading):
    """The body rows of the markdown table under @heading, as lists of
    cells (header and separator left out)."""
    assert_in(f'\n{heading}\n', text, 'results')
    section = text.split(f'\n{heading}\n', 1)[1].split('\n## ', 1)[0]
    lines = [line for line in section.splitlines() if line.startswith('|')]
    return [[cell.strip() for cell in line.strip('|').split(' | ')]
            for line in lines[2:]]


def server_of(label):
    """The server a row label names (the longest matching prefix)."""
    names = [n for n, prefix in LABELS.items() if label.startswith(prefix)]
    if not names:
        raise AssertionError(f'row of an unknown server: {label!r}')
    return max(names, key=lambda n: len(LABELS[n]))


def assert_number(cell, what):
    if not NUMBER.match(cell):
        raise AssertionError(f'{what}: {cell!r} is not a number')


def check_cells(text, planned):
    """Every (cell, server) that --list plans has a row with a number in
    every column but the ratio, and no row is extra."""
    groups = {'seq': '## Sequential 1 MiB, file-backed',
              'file': '## 4k random, file-backed',
              'null': '## 4k random, null backend'}
    seen = {}
    for heading in groups.values():
        cell = None
        for row in table_rows(text, heading):
            cell = row[0] or cell
            server = server_of(row[1])
            for i, column in ((2, 'rate'), (3, 'mean'), (4, 'p99')):
                assert_number(row[i], f'{cell} {server} {column}')
            if server != 'io_uring':
                assert_number(row[5], f'{cell} {server} CPU/IO')
            seen.setdefault(cell, []).append(server)
    assert_eq(seen, planned, 'rows of the cell tables')


@test
def test_smoke_run_has_every_row(env):
    listing = bench(env, '--list')
    assert_eq(listing.returncode, 0, 'exit status of --list')
    planned, extras = {}, []
    for line in listing.stdout.splitlines():
        name, *servers = line.split()
        if name.startswith('extra/'):
            extras.append(name)
        else:
            planned[name] = servers
    assert_eq(sorted({s for v in planned.values() for s in v}),
              sorted(LABELS), 'servers in the smoke matrix')

    output = env.path('results.md')
    r = bench(env, '--output', output)
    if r.returncode != 0:
        print(r.stderr)
    assert_eq(r.returncode, 0, 'exit status')
    with open(output) as f:
        text = f.read()
    assert_eq(r.stdout, text, 'stdout and the results file')
    check_cells(text, planned)

    assert_eq(extras, ['extra/rss', 'extra/startup', 'extra/qmp-nodes',
                       'extra/graph-change'], 'extra measurements')
    memory = table_rows(text, '## Memory')
    assert_eq(sorted(server_of(row[0]) for row in memory),
              sorted(set(LABELS) - {'io_uring'}), 'memory rows')
    for row in memory:
        assert_number(row[1], f'{row[0]} idle RSS')
        assert_number(row[2], f'{row[0]} RSS with connections')
    for heading, columns in (('## Start-up', (1,)),
                             ('## QMP with many nodes', (1, 2, 3, 4))):
        rows = table_rows(text, heading)
        assert_eq(sorted(server_of(row[0]) for row in rows),
                  ['blockd', 'qsd'], heading)
        for row in rows:
            for i in columns:
                assert_number(row[i], f'{heading} {row[0]}')
    graph = table_rows(text, '## Graph changes under load')
    assert_eq(sorted((server_of(row[0]), row[1]) for row in graph),
              sorted((s, p) for s in ('blockd', 'blockd-mq', 'qsd')
                     for p in ('baseline', 'add-del', 'set-iothread')),
              'graph-change rows')
    for row in graph:
        if server_of(row[0]).startswith('blockd'):
            # blockd must survive the loops; QSD 7.2 may abort, and its
            # row then says so instead.
            assert_eq(row[7], 'ok', f'{row[0]} {row[1]} outcome')
            assert_number(row[2], f'{row[0]} {row[1]} IOPS')
            assert_number(row[3], f'{row[0]} {row[1]} stall')
    assert_in('\n## Targets (issue 7)\n', text)
    assert_eq(sorted(os.listdir(env.dir)), ['results.md'], 'files left')


if __name__ == '__main__':
    for tool in ('fio', 'qemu-nbd', 'nbdkit', 'qemu-storage-daemon'):
        if not shutil.which(tool):
            skip(f'{tool} is not installed')
    main()
