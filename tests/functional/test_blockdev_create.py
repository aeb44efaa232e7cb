#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""blockdev-create of files, against qemu-storage-daemon 7.2: the job's
status sequence and query-jobs entries, the file (size, allocated blocks,
emptied if it existed), the errors before and inside the job, and the
image lock that keeps creation off a file another process writes.

    test_blockdev_create.py [TEST ...]
"""

import os
import signal

from harness import (QMPError, assert_eq, assert_in, main, qsd_binary,
                     read_file, test)

MiB = 1024 * 1024


def create(qmp, job, **options):
    """Run blockdev-create to the end: its statuses, its query-jobs entry
    (without the id), then dismiss it."""
    qmp.cmd('blockdev-create', job_id=job, options=options)
    seen = qmp.job_statuses(job, last='concluded')
    entry = [j for j in qmp.cmd('query-jobs') if j['id'] == job][0]
    del entry['id']
    qmp.cmd('job-dismiss', id=job)
    return seen, entry


def run_both(env, flow):
    """@flow(env, qmp, tag) on blockd and on QSD; both results."""
    results = []
    for tag, binary in (('blockd', None), ('qsd', qsd_binary())):
        d = env.start([], binary=binary)
        qmp = env.qmp()
        results.append(flow(env, qmp, tag))
        qmp.close()
        d.stop(signal.SIGTERM, expect_rc=0)
    return results


def allocated(path):
    return os.stat(path).st_blocks * 512


@test
def test_preallocation_modes_like_qsd(env):
    def flow(env, qmp, tag):
        out = []
        for mode in ('off', 'falloc', 'full'):
            path = env.path(f'{tag}-{mode}.img')
            seen, entry = create(qmp, f'c-{mode}', driver='file',
                                 filename=path, size=3 * MiB,
                                 preallocation=mode)
            out.append((mode, seen, entry, os.path.getsize(path),
                        allocated(path) >= 3 * MiB))
        return out
    ours, theirs = run_both(env, flow)
    assert_eq(ours, theirs, 'blockd vs QSD')
    for mode, seen, entry, size, full in ours:
        assert_eq(seen, ['created', 'running', 'waiting', 'pending',
                         'concluded'], f'{mode}: statuses')
        assert_eq(size, 3 * MiB, f'{mode}: size')
        assert_eq(full, mode != 'off', f'{mode}: blocks allocated')
        assert 'error' not in entry, entry


@test
def test_existing_file_emptied_like_qsd(env):
    def flow(env, qmp, tag):
        path = env.path(f'{tag}-old.img')
        with open(path, 'wb') as f:
            f.write(b'\xaa' * (2 * MiB))
        create(qmp, 'c0', driver='file', filename=path, size=MiB)
        return read_file(path)
    ours, theirs = run_both(env, flow)
    assert_eq(ours, theirs, 'blockd vs QSD')
    assert_eq(ours, bytes(MiB), 'the old data is gone')


@test
def test_errors_like_qsd(env):
    def flow(env, qmp, tag):
        out = []
        for options in ({'driver': 'null-co'}, {'driver': 'raw'}):
            try:
                qmp.cmd('blockdev-create', job_id='x', options=options)
                out.append('ok')
            except QMPError as e:
                out.append(e.desc)
        seen, entry = create(qmp, 'c1', driver='file',
                             filename=env.path('no/such/dir.img'),
                             size=MiB)
        out.append((seen, entry.get('error', '').replace(env.dir, 'D')))
        return out
    ours, theirs = run_both(env, flow)
    assert_eq(ours, theirs, 'blockd vs QSD')
    assert_eq(ours[0], 'Driver does not support blockdev-create')
    assert_eq(ours[2][1],
              "Could not create 'D/no/such/dir.img': No such file or "
              "directory")


@test
def test_argument_errors_name_the_key(env):
    env.start([])
    qmp = env.qmp()
    for options, key in (({'driver': 'file', 'filename': env.path('a')},
                          'options.size'),
                         ({'driver': 'file', 'size': MiB},
                          'options.filename'),
                         ({'driver': 'file', 'filename': env.path('a'),
                           'size': MiB, 'preallocation': 'sideways'},
                          'options.preallocation'),
                         ({'driver': 'file', 'filename': env.path('a'),
                           'size': MiB, 'bogus': 1}, 'options.bogus')):
        try:
            qmp.cmd('blockdev-create', job_id='x', options=options)
            raise AssertionError(f'{options}: accepted')
        except QMPError as e:
            assert_in(key, e.desc, f'{options}')
    assert_eq(qmp.cmd('query-jobs'), [], 'no job after refusals')
    assert not os.path.exists(env.path('a')), 'nothing created'


@test
def test_metadata_preallocation_refused_before_the_file_changes(env):
    env.start([])
    qmp = env.qmp()
    path = env.path('keep.img')
    with open(path, 'wb') as f:
        f.write(b'\x55' * 4096)
    seen, entry = create(qmp, 'c0', driver='file', filename=path, size=MiB,
                         preallocation='metadata')
    assert_eq(entry.get('error'),
              'Unsupported preallocation mode: metadata')
    assert_eq(read_file(path), b'\x55' * 4096, 'the file is untouched')


@test
def test_file_in_use_by_qsd_is_not_created(env):
    """QSD writes the image: creating it again would destroy its data."""
    path = env.path('busy.img')
    with open(path, 'wb') as f:
        f.write(b'\x11' * MiB)
    qsd = env.start(['--blockdev',
                     f'driver=file,node-name=f0,filename={path}',
                     '--blockdev', 'driver=raw,node-name=r0,file=f0',
                     '--nbd-server',
                     f'addr.type=unix,addr.path={env.path("qsd.sock")}',
                     '--export', 'type=nbd,id=e0,node-name=r0,writable=on'],
                    binary=qsd_binary(), sock='qsd-qmp.sock')
    env.start([])
    qmp = env.qmp()
    seen, entry = create(qmp, 'c0', driver='file', filename=path, size=MiB)
    # QSD's export shares write but not resize: resize is what conflicts.
    assert entry.get('error', '').startswith('Failed to get "resize" lock'), \
        entry
    assert_eq(read_file(path), b'\x11' * MiB, "QSD's image is untouched")
    qsd.stop(signal.SIGTERM, expect_rc=0)


if __name__ == '__main__':
    main()
