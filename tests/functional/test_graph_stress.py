#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Graph changes from two QMP clients at once, on the names the daemon
reports, while four NBD clients write and verify (issue #12): no crash,
no sanitizer report, no verification failure, only the QMP errors that
the races between the clients explain, and exit status 0 on quit.

The workload is graphstress.py's.  Its budget is in operations, not
seconds: BLOCKD_TEST_STRESS_OPS graph changes per QMP client (default
3000).  On main before the fixes of #12, a run that survived did 1000
per client in 7 s under TSan and 2-4 s in the release build, on 2 cores;
the default leaves room for commands that wait longer once fixed, within
about a minute.  The NBD clients go on until the QMP clients are done.  The seed is printed; BLOCKD_TEST_SEED
replays its choices.  scripts/soak-graph runs the same workload for a
given time.
"""

import importlib.util
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import main, nbd_available, skip, test  # noqa: E402
from graphstress import Stress, test_seed  # noqa: E402

if importlib.util.find_spec('nbd') is None:
    skip('python3-libnbd is not installed (import nbd)')

OPS = int(os.environ.get('BLOCKD_TEST_STRESS_OPS', '3000'))
# Kinds of graph change that must have succeeded at least once in a run,
# or the workload did not test what it claims to.
MUST_SUCCEED = ['mirror', 'backup', 'cancel', 'move', 'export-add',
                'export-del', 'node-add', 'node-del']


@test
def test_graph_changes_under_verified_nbd_io(env):
    if not nbd_available(env):
        skip('this blockd has no NBD server')
    stress = Stress(env, test_seed())
    try:
        stress.run(ops=OPS)
    finally:
        counts = stress.report()
    peak = stress.finish()
    print(f'  daemon peak RSS (VmHWM): {peak // 1024} MiB')
    assert not stress.unexpected, \
        f'{len(stress.unexpected)} unexpected QMP errors, the first: ' \
        f'{stress.unexpected[:5]}'
    for kind in MUST_SUCCEED:
        assert counts.get(f'{kind} ok', 0) > 0, \
            f'no {kind} succeeded in {OPS} operations per client'
    assert counts.get('nbd writes', 0) > 0, 'the NBD clients wrote nothing'


if __name__ == '__main__':
    main()
