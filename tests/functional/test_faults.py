#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Injected I/O errors reach NBD clients as the matching NBD error, and
the connection and the daemon go on serving.

A blkdebug node (block/drivers/blkdebug.c) sits between the export and its file:
its inject-error rules fail chosen reads, writes, zeroes, trims and
flushes with a chosen errno before they reach the file.  Through libnbd
(structured replies, and simple replies) each failure must arrive as the
NBD error the errno maps to (docs/nbd.md), a failed write must leave the
file untouched, requests beside the failing ones must succeed on the same
connection, and a failed flush must never be reported as a success: the
next flush goes to the driver again (docs/reliability.md, section 1).
"""

import errno
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (QMP, assert_eq, libnbd, main,  # noqa: E402
                     nbd_available, read_file, skip, test)
from nbdserver import NbdDaemon, connect as nbd_connect  # noqa: E402

nbd = libnbd()

MiB = 1024 * 1024
IMAGE_SIZE = 16 * MiB
SECTOR = 512
BLOCK = 4096


def start(env, rules, iothread=True):
    """blockd exporting blkdebug(file) as 'disk', with @rules: a list of
    dicts of inject-error options."""
    if not nbd_available(env):
        skip('this blockd has no NBD server')
    image = env.make_image(size=IMAGE_SIZE)
    with open(image, 'r+b') as f:
        f.write(b'\xa5' * IMAGE_SIZE)
    dbg = 'driver=blkdebug,node-name=dbg0,image=file0,discard=unmap'
    for i, rule in enumerate(rules):
        for key, value in rule.items():
            dbg += f',inject-error.{i}.{key}={value}'
    srv = NbdDaemon(env, [f'driver=file,node-name=file0,filename={image},'
                          'cache.direct=on,aio=io_uring,discard=unmap', dbg],
                    'dbg0', iothread='io0' if iothread else None,
                    iothreads=('io0',))
    return srv.daemon, image, srv.uri


def connect(uri, structured=True):
    h = nbd_connect(uri, structured=structured)
    assert_eq(h.get_structured_replies_negotiated(), structured,
              'structured replies')
    return h


def expect_errno(what, fn, want):
    try:
        fn()
    except nbd.Error as e:
        # libnbd gives the errno's name ('EIO')
        assert_eq(e.errno, errno.errorcode[want], f'{what}: errno ({e})')
        return
    raise AssertionError(f'{what}: succeeded, expected '
                         f'{errno.errorcode[want]}')


def check_serves(env, uri, what):
    """A new client and QMP are served."""
    h = connect(uri)
    data = os.urandom(BLOCK)
    h.pwrite(data, IMAGE_SIZE - BLOCK)
    assert_eq(h.pread(BLOCK, IMAGE_SIZE - BLOCK), data, what)
    h.shutdown()
    qmp = QMP(env.path('qmp.sock'))
    assert_eq([e['id'] for e in qmp.cmd('query-block-exports')], ['exp0'],
              f'exports ({what})')
    qmp.close()


# Blocks (offsets) with a rule each; everything else is healthy.
READ_EIO = 1 * MiB
READ_ENOSPC_NOW = 2 * MiB
WRITE_ENOSPC = 3 * MiB
WRITE_EIO_NOW = 4 * MiB
WRITE_EDQUOT = 5 * MiB
WRITE_EROFS = 6 * MiB
WRITE_ENXIO = 7 * MiB
ZERO_EIO = 8 * MiB
TRIM_ENOSPC = 9 * MiB
HEALTHY = 12 * MiB

IO_RULES = [
    {'event': 'read_aio', 'errno': errno.EIO, 'sector': READ_EIO // SECTOR},
    {'event': 'read_aio', 'errno': errno.ENOSPC, 'immediately': 'on',
     'sector': READ_ENOSPC_NOW // SECTOR},
    {'event': 'write_aio', 'errno': errno.ENOSPC,
     'sector': WRITE_ENOSPC // SECTOR},
    {'event': 'write_aio', 'errno': errno.EIO, 'immediately': 'on',
     'sector': WRITE_EIO_NOW // SECTOR},
    {'event': 'write_aio', 'errno': errno.EDQUOT,
     'sector': WRITE_EDQUOT // SECTOR},
    {'event': 'write_aio', 'errno': errno.EROFS,
     'sector': WRITE_EROFS // SECTOR},
    {'event': 'write_aio', 'errno': errno.ENXIO,
     'sector': WRITE_ENXIO // SECTOR},
    {'event': 'pwrite_zeroes', 'errno': errno.EIO,
     'sector': ZERO_EIO // SECTOR},
    {'event': 'pdiscard', 'errno': errno.ENOSPC,
     'sector': TRIM_ENOSPC // SECTOR},
]


def io_errors_on_one_connection(env, structured, iothread):
    d, image, uri = start(env, IO_RULES, iothread=iothread)
    h = connect(uri, structured)
    pattern = b'\x5a' * BLOCK
    fua = nbd.CMD_FLAG_FUA
    # Each case three times: a failure is not a one-off and does not
    # break the connection; a good request in between must succeed.
    for rnd in range(3):
        cases = [
            ('read EIO', lambda: h.pread(BLOCK, READ_EIO), errno.EIO),
            ('read ENOSPC, immediately',
             lambda: h.pread(BLOCK, READ_ENOSPC_NOW), errno.ENOSPC),
            ('read covering the failing sector',
             lambda: h.pread(64 * 1024, READ_EIO - 8192), errno.EIO),
            ('write ENOSPC', lambda: h.pwrite(pattern, WRITE_ENOSPC),
             errno.ENOSPC),
            ('FUA write ENOSPC',
             lambda: h.pwrite(pattern, WRITE_ENOSPC, flags=fua),
             errno.ENOSPC),
            ('write EIO, immediately',
             lambda: h.pwrite(pattern, WRITE_EIO_NOW), errno.EIO),
            ('write EDQUOT', lambda: h.pwrite(pattern, WRITE_EDQUOT),
             errno.ENOSPC),
            ('write EROFS', lambda: h.pwrite(pattern, WRITE_EROFS),
             errno.EPERM),
            ('write ENXIO (no NBD error of its own)',
             lambda: h.pwrite(pattern, WRITE_ENXIO), errno.EIO),
            ('write zeroes EIO', lambda: h.zero(BLOCK, ZERO_EIO), errno.EIO),
            ('trim ENOSPC', lambda: h.trim(BLOCK, TRIM_ENOSPC),
             errno.ENOSPC),
        ]
        for what, fn, want in cases:
            expect_errno(f'round {rnd}: {what}', fn, want)
            data = os.urandom(BLOCK)
            h.pwrite(data, HEALTHY)
            assert_eq(h.pread(BLOCK, HEALTHY), data,
                      f'round {rnd}: after {what}')
    # A failed request never reached the file.
    for offset in (WRITE_ENOSPC, WRITE_EIO_NOW, WRITE_EDQUOT, WRITE_EROFS,
                   WRITE_ENXIO, ZERO_EIO, TRIM_ENOSPC):
        assert_eq(read_file(image, offset, BLOCK), b'\xa5' * BLOCK,
                  f'the file at {offset} after a failed request')
    # Beside the failing sectors, all is well.
    assert_eq(h.pread(BLOCK, READ_EIO + BLOCK), b'\xa5' * BLOCK,
              'the block after a failing one')
    h.pwrite(pattern, WRITE_ENOSPC + BLOCK, flags=fua)
    assert_eq(read_file(image, WRITE_ENOSPC + BLOCK, BLOCK), pattern,
              'FUA write beside a failing block')
    h.flush()
    h.shutdown()
    check_serves(env, uri, 'after the injected errors')
    d.stop()


@test
def test_io_errors_structured_replies(env):
    io_errors_on_one_connection(env, structured=True, iothread=True)


@test
def test_io_errors_simple_replies(env):
    io_errors_on_one_connection(env, structured=False, iothread=True)


@test
def test_io_errors_main_loop_export(env):
    io_errors_on_one_connection(env, structured=True, iothread=False)


@test
def test_errors_under_concurrent_load(env):
    """Many requests in flight, failing and not, interleaved: each gets its
    own answer, in any order, and the connection stays in step."""
    d, image, uri = start(env, IO_RULES)
    h = connect(uri)
    pending = {}
    for i in range(64):
        if i % 2:
            c = h.aio_pread(nbd.Buffer(BLOCK), READ_EIO)
            pending[c] = 'EIO'
            c = h.aio_pwrite(b'\x11' * BLOCK, WRITE_ENOSPC)
            pending[c] = 'ENOSPC'
        else:
            c = h.aio_pwrite(b'\x22' * BLOCK, HEALTHY + i * BLOCK)
            pending[c] = None
            c = h.aio_pread(nbd.Buffer(BLOCK), HEALTHY - i * BLOCK)
            pending[c] = None
    while pending:
        h.poll(-1)
        for c in list(pending):
            try:
                if not h.aio_command_completed(c):
                    continue
                got = None
            except nbd.Error as e:
                got = e.errno
            assert_eq(got, pending.pop(c), f'request {c}')
    h.flush()
    h.shutdown()
    check_serves(env, uri, 'after errors under load')
    d.stop()


@test
def test_failed_flush_is_not_success(env):
    """Rule 0 fails one flush with EIO, rule 1 the next one with ENOSPC.
    A flush that failed leaves nothing marked as flushed, so the second
    flush must reach the driver (and meet rule 1), even though nothing was
    written in between: had the daemon taken the failure as a success, it
    would skip that flush as clean and report success.  The third flush
    reaches the file and succeeds."""
    d, image, uri = start(env, [
        {'event': 'flush_to_disk', 'errno': errno.EIO, 'once': 'on'},
        {'event': 'flush_to_disk', 'errno': errno.ENOSPC, 'once': 'on'},
    ])
    h = connect(uri)
    other = connect(uri)
    data = os.urandom(BLOCK)
    h.pwrite(data, HEALTHY)
    expect_errno('first flush', h.flush, errno.EIO)
    # The connection goes on; another connection is served meanwhile.
    assert_eq(other.pread(BLOCK, HEALTHY), data, 'read on another client')
    expect_errno('second flush, nothing written since the failed one',
                 other.flush, errno.ENOSPC)
    h.flush()
    # Now the node is clean: a flush succeeds again and again.
    other.flush()
    h.flush()
    assert_eq(read_file(image, HEALTHY, BLOCK), data, 'the write')
    h.shutdown()
    other.shutdown()
    check_serves(env, uri, 'after the failed flushes')
    d.stop()


@test
def test_flush_always_failing(env):
    """A flush that always fails is never reported as a success once
    something was written: not right after the write, not again with
    nothing written since (the first failure marked nothing flushed).  (A
    flush before anything was ever written has nothing to make durable and
    may succeed without reaching the driver, as in QEMU.)"""
    d, image, uri = start(env, [
        {'event': 'flush_to_disk', 'errno': errno.EIO},
    ])
    h = connect(uri)
    for i in range(5):
        h.pwrite(b'\x33' * BLOCK, HEALTHY + i * BLOCK)
        for j in range(3):
            expect_errno(f'write {i}, flush {j}', h.flush, errno.EIO)
        assert_eq(h.pread(BLOCK, HEALTHY + i * BLOCK), b'\x33' * BLOCK,
                  f'read {i}')
    h.shutdown()
    qmp = QMP(env.path('qmp.sock'))
    assert_eq([e['id'] for e in qmp.cmd('query-block-exports')], ['exp0'],
              'exports')
    qmp.close()
    # At exit the daemon flushes the node, which fails: blockd must still
    # exit, and cleanly.
    d.stop()


if __name__ == '__main__':
    main()
