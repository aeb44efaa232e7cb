#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The NBD export works with real clients: nbdinfo, qemu-img, qemu-io,
nbdcopy, libnbd (every command and flag, and the errors a client can
provoke) and fio's nbd engine.  One behaviour per test.

    test_nbd_interop.py [--server=blockd|qsd] [TEST ...]

--server=qsd runs the same checks against qemu-storage-daemon, the oracle
these expectations were checked against (its exports then run in the main
loop: QSD 7.2 aborts when a client leaves an iothread export).  The
environment variable BLOCKD_TEST_SERVER does the same.
"""

import errno
import json
import mmap
import os
import random
import shutil
import subprocess

from harness import (SkipTest, assert_eq, assert_in, libnbd, main,
                     read_file, require_program, test)
from nbdserver import (NbdDaemon, check_server, raw_over_file,
                       server_binary)

nbd = libnbd()

for _tool in ['nbdinfo', 'nbdcopy', 'qemu-img', 'qemu-io']:
    require_program(_tool)

MiB = 1024 * 1024
IMAGE_SIZE = 64 * MiB
NBD_MAX_PAYLOAD = 32 * MiB
TOOL_TIMEOUT = 120


def serve(env, image, writable=True, nbd_opts='', export_opts=''):
    """The server under test exporting @image as 'disk' on a UNIX socket:
    raw over a file node (io_uring, O_DIRECT, discard=unmap), exported
    from iothread io0 (io1 idle beside it)."""
    blockdevs = raw_over_file(
        image, ',aio=io_uring,cache.direct=on,discard=unmap', ',discard=unmap')
    return NbdDaemon(env, blockdevs, writable=writable, iothread='io0',
                     iothreads=('io0', 'io1'), nbd_opts=nbd_opts,
                     export_opts=export_opts, binary=server_binary())


def run_tool(args, expect_rc=0, timeout=TOOL_TIMEOUT, cwd=None):
    r = subprocess.run(args, capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd)
    if expect_rc is not None and r.returncode != expect_rc:
        raise AssertionError(f'{" ".join(args)}: exit {r.returncode}, '
                             f'expected {expect_rc}\nstdout: {r.stdout}\n'
                             f'stderr: {r.stderr}')
    return r


# --- Images and files --------------------------------------------------------


def rng(name):
    """A random generator seeded from the test's name: reproducible runs."""
    return random.Random(f'test_nbd_interop:{name}')


def write_file(path, extents, size=IMAGE_SIZE):
    """A sparse file of @size with data only at @extents: (offset, bytes)."""
    with open(path, 'wb') as f:
        f.truncate(size)
        for offset, data in extents:
            f.seek(offset)
            f.write(data)
    return path


def read_file_direct(path, offset, length):
    """Read with O_DIRECT: what is on the disk, not in the page cache."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, length)     # page aligned, as O_DIRECT wants
        n = os.preadv(fd, [buf], offset)
        return bytes(buf[:n])
    finally:
        os.close(fd)


def file_map(path):
    """The file's extents by SEEK_DATA/SEEK_HOLE: [(offset, length, kind)]."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        extents = []
        offset = 0
        while offset < size:
            try:
                data = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError as e:
                if e.errno != errno.ENXIO:
                    raise
                data = size
            if data > offset:
                extents.append((offset, data - offset, 'hole'))
            if data >= size:
                break
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            extents.append((data, hole - data, 'data'))
            offset = hole
        return extents
    finally:
        os.close(fd)


def merge(extents):
    """Join neighbours of the same kind."""
    out = []
    for offset, length, kind in extents:
        if out and out[-1][2] == kind and out[-1][0] + out[-1][1] == offset:
            out[-1] = (out[-1][0], out[-1][1] + length, kind)
        else:
            out.append((offset, length, kind))
    return out


def kind_of(flags):
    return 'hole' if flags & nbd.STATE_HOLE else 'data'


def is_hole(path, offset, length):
    """True if [offset, offset+length) is one hole of the file."""
    for start, size, kind in file_map(path):
        if start <= offset and offset + length <= start + size:
            return kind == 'hole'
    return False


def is_allocated(path, offset, length):
    return all(kind == 'data' for start, size, kind in file_map(path)
               if start < offset + length and offset < start + size)


def expect_nbd_error(fn, errnums, what):
    """@fn() fails with one of @errnums (the errno the server sent)."""
    try:
        fn()
    except nbd.Error as e:
        if e.errnum not in errnums:
            raise AssertionError(
                f'{what}: errno {e.errnum} ({e.string}), expected one of '
                f'{[errno.errorcode[n] for n in errnums]}') from None
        return e
    raise AssertionError(f'{what}: succeeded, expected an error')


# Data, holes, data, hole, data: what --map and block status must report.
SPARSE = [(0, 1 * MiB), (8 * MiB, 2 * MiB), (63 * MiB, 1 * MiB)]
SPARSE_MAP = [(0, 1 * MiB, 'data'), (1 * MiB, 7 * MiB, 'hole'),
              (8 * MiB, 2 * MiB, 'data'), (10 * MiB, 53 * MiB, 'hole'),
              (63 * MiB, 1 * MiB, 'data')]


def sparse_image(env, name='disk.raw'):
    r = rng(name)
    image = write_file(env.path(name),
                       [(off, r.randbytes(length)) for off, length in SPARSE])
    if file_map(image) != SPARSE_MAP:
        raise SkipTest(f'the file system of {env.dir} does not keep holes '
                       f'exactly: {file_map(image)}')
    return image


def plain_image(env, name='disk.raw'):
    return write_file(env.path(name), [])


# --- nbdinfo -----------------------------------------------------------------


def nbdinfo_json(args):
    r = run_tool(['nbdinfo', '--json'] + args)
    return json.loads(r.stdout)


@test
def test_nbdinfo_size_and_flags(env):
    srv = serve(env, plain_image(env))
    info = nbdinfo_json([srv.uri])
    assert_eq(info['protocol'], 'newstyle-fixed')
    assert_eq(info['structured'], True, 'structured replies')
    export = info['exports'][0]
    assert_eq(export['export-name'], 'disk')
    assert_eq(export['export-size'], IMAGE_SIZE, 'size')
    assert_in('base:allocation', export['contexts'])
    flags = {k: export[k] for k in ['is_read_only', 'can_flush', 'can_fua',
                                    'can_trim', 'can_zero', 'can_fast_zero',
                                    'can_cache', 'can_df', 'can_multi_conn']}
    assert_eq(flags, {'is_read_only': False, 'can_flush': True,
                      'can_fua': True, 'can_trim': True, 'can_zero': True,
                      'can_fast_zero': True, 'can_cache': True,
                      'can_df': True, 'can_multi_conn': True}, 'flags')
    assert_eq(export['block_size_maximum'], NBD_MAX_PAYLOAD,
              'maximum block size')
    assert export['block_size_minimum'] <= 4096, export
    assert_eq(export['block_size_preferred'] >= export['block_size_minimum'],
              True, 'preferred >= minimum')
    srv.stop()


@test
def test_nbdinfo_sizes(env):
    for size in [4096, MiB + 3 * 4096, 1 << 40]:
        image = write_file(env.path(f'disk-{size}.raw'), [], size=size)
        srv = serve(env, image)
        export = nbdinfo_json([srv.uri])['exports'][0]
        assert_eq(export['export-size'], size, f'size of {image}')
        h = srv.connect()
        h.pwrite(b'\x99' * 4096, size - 4096)
        assert_eq(h.pread(4096, size - 4096), b'\x99' * 4096, 'the tail')
        h.shutdown()
        del h
        srv.stop()
        assert_eq(read_file(image, size - 4096), b'\x99' * 4096,
                  'file tail')
    # A size that O_DIRECT cannot write whole blocks of: read-only.
    size = 3 * MiB + 1000
    image = write_file(env.path('odd.raw'), [(size - 10, b'\x98' * 10)],
                       size=size)
    srv = serve(env, image, writable=False)
    export = nbdinfo_json([srv.uri])['exports'][0]
    # Exact, or rounded up to a 512-byte sector as QEMU does.
    assert_in(export['export-size'], [size, (size + 511) // 512 * 512],
              f'size of {image}')
    h = srv.connect()
    assert_eq(h.pread(20, size - 20), bytes(10) + b'\x98' * 10, 'the tail')
    h.shutdown()
    run_tool(['qemu-img', 'compare', '-f', 'raw', '-F', 'raw', image,
              srv.uri])
    srv.stop()


@test
def test_nbdinfo_read_only_export(env):
    srv = serve(env, plain_image(env), writable=False)
    export = nbdinfo_json([srv.uri])['exports'][0]
    assert_eq(export['is_read_only'], True, 'is_read_only')
    assert_eq(export['export-size'], IMAGE_SIZE, 'size')
    # A read-only export is consistent across connections.
    assert_eq(export['can_multi_conn'], True, 'can_multi_conn')
    srv.stop()


@test
def test_nbdinfo_no_multi_conn_with_one_connection(env):
    srv = serve(env, plain_image(env), nbd_opts=',max-connections=1')
    export = nbdinfo_json([srv.uri])['exports'][0]
    assert_eq(export['can_multi_conn'], False, 'can_multi_conn')
    assert_eq(export['is_read_only'], False, 'is_read_only')
    srv.stop()


@test
def test_nbdinfo_list(env):
    srv = serve(env, plain_image(env),
                    export_opts=',description=blockd test disk')
    info = nbdinfo_json(['--list', f'nbd+unix://?socket={srv.sock}'])
    names = [(e['export-name'], e.get('description'))
             for e in info['exports']]
    assert_eq(names, [('disk', 'blockd test disk')], 'exports')
    srv.stop()


def nbdinfo_map(uri):
    """nbdinfo --map as merged [(offset, length, 'data'|'hole')]."""
    r = run_tool(['nbdinfo', '--map', uri])
    extents = []
    for line in r.stdout.splitlines():
        offset, length, flags = (int(x) for x in line.split()[:3])
        extents.append((offset, length, kind_of(flags)))
    return merge(extents)


@test
def test_nbdinfo_map_sparse(env):
    image = sparse_image(env)
    srv = serve(env, image)
    assert_eq(nbdinfo_map(srv.uri), SPARSE_MAP, 'nbdinfo --map')
    # Data written through the export shows up in the map too.
    with_handle = srv.connect()
    with_handle.pwrite(b'\x11' * MiB, 32 * MiB, nbd.CMD_FLAG_FUA)
    del with_handle
    expected = merge(SPARSE_MAP[:3] + [(10 * MiB, 22 * MiB, 'hole'),
                                       (32 * MiB, MiB, 'data'),
                                       (33 * MiB, 30 * MiB, 'hole'),
                                       SPARSE_MAP[4]])
    assert_eq(nbdinfo_map(srv.uri), expected, 'map after a write')
    assert_eq(merge(file_map(image)), expected, 'the file agrees')
    srv.stop()


# --- qemu-img ----------------------------------------------------------------


@test
def test_qemu_img_info(env):
    srv = serve(env, plain_image(env))
    r = run_tool(['qemu-img', 'info', '--output=json', '-f', 'raw', srv.uri])
    info = json.loads(r.stdout)
    assert_eq(info['virtual-size'], IMAGE_SIZE, 'virtual-size')
    assert_eq(info['format'], 'raw', 'format')
    srv.stop()


@test
def test_qemu_img_convert_both_ways_and_compare(env):
    r = rng('convert')
    source = write_file(env.path('source.raw'),
                        [(0, r.randbytes(3 * MiB)),
                         (17 * MiB + 512, r.randbytes(5 * MiB + 1000)),
                         (40 * MiB, b'\0' * MiB),
                         (60 * MiB, r.randbytes(4 * MiB))])
    # The export starts with other data, so that a convert that skipped
    # the zero areas would show.
    image = write_file(env.path('disk.raw'),
                       [(0, b'\xee' * IMAGE_SIZE)])
    srv = serve(env, image)
    # file -> nbd
    run_tool(['qemu-img', 'convert', '-n', '-f', 'raw', '-O', 'raw',
              source, srv.uri])
    run_tool(['qemu-img', 'compare', '-f', 'raw', '-F', 'raw',
              source, srv.uri])
    # nbd -> file
    target = env.path('target.raw')
    run_tool(['qemu-img', 'convert', '-f', 'raw', '-O', 'raw',
              srv.uri, target])
    assert read_file(target) == read_file(source), 'target != source'
    run_tool(['qemu-img', 'compare', '-f', 'raw', '-F', 'raw',
              srv.uri, target])
    # compare notices a difference of one byte.
    h = srv.connect()
    h.pwrite(read_file(target, 50 * MiB, 4096)[:7] + b'\x01' +
             read_file(target, 50 * MiB + 8, 4088), 50 * MiB)
    h.flush()
    del h
    res = run_tool(['qemu-img', 'compare', '-f', 'raw', '-F', 'raw',
                    srv.uri, target], expect_rc=1)
    assert_in('Content mismatch at offset', res.stdout, 'compare')
    srv.stop()


# --- qemu-io -----------------------------------------------------------------


def qemu_io(uri, commands):
    args = ['qemu-io', '-f', 'raw']
    for c in commands:
        args += ['-c', c]
    r = run_tool(args + [uri])
    for bad in ['failed', 'error', 'Error', 'mismatch']:
        if bad in r.stdout or bad in r.stderr:
            raise AssertionError(f'qemu-io {commands}: {r.stdout}{r.stderr}')
    return r.stdout


@test
def test_qemu_io_patterns(env):
    image = plain_image(env)
    srv = serve(env, image)
    qemu_io(srv.uri, [
        'write -P 0xab 0 4M',
        'read -P 0xab 0 4M',
        # zero, with and without permission to unmap
        'write -z 1M 1M',
        'write -z -u 2M 512k',
        'read -P 0 1M 1536k',
        'read -P 0xab 0 1M',
        'read -P 0xab 2560k 1536k',
        # discard (discard=unmap: the file gets a hole, reads see zeroes)
        'write -P 0xcd 8M 2M',
        'discard 8M 1M',
        'read -P 0 8M 1M',
        'read -P 0xcd 9M 1M',
        # unaligned, with FUA, and in flight together
        'write -P 0x11 4097 3000',
        'read -P 0xab 0 4097',
        'read -P 0x11 4097 3000',
        'read -P 0xab 7097 1000',
        'write -f -P 0x22 16M 64k',
        'aio_write -P 0x31 20M 256k',
        'aio_write -P 0x32 21M 256k',
        'aio_write -P 0x33 22M 256k',
        'aio_flush',
        'readv -P 0x31 20M 128k 128k',
        'read -P 0x32 21M 256k',
        'read -P 0x33 22M 256k',
        'writev -P 0x44 30M 4k 64k 1k',
        'read -P 0x44 30M 69k',
        'flush',
    ])
    # What reached the file, read around the page cache.
    assert_eq(read_file_direct(image, 16 * MiB, 64 * 1024),
              b'\x22' * 65536, 'FUA write in the file')
    data = read_file_direct(image, 0, 10 * MiB)
    assert data[:4097] == b'\xab' * 4097
    assert data[4097:7097] == b'\x11' * 3000
    assert data[MiB:2560 * 1024] == bytes(1536 * 1024)
    assert data[8 * MiB:9 * MiB] == bytes(MiB)
    assert data[9 * MiB:] == b'\xcd' * MiB
    assert is_hole(image, 8 * MiB, MiB), file_map(image)
    srv.stop()


@test
def test_qemu_io_pattern_mismatch_detected(env):
    """The verification above is real: a wrong pattern is reported."""
    srv = serve(env, plain_image(env))
    r = run_tool(['qemu-io', '-f', 'raw', '-c', 'write -P 0x01 0 64k',
                  '-c', 'read -P 0x02 0 64k', srv.uri], expect_rc=None)
    assert_in('Pattern verification failed', r.stdout + r.stderr)
    srv.stop()


# --- nbdcopy -----------------------------------------------------------------


@test
def test_nbdcopy_both_ways(env):
    r = rng('nbdcopy')
    source = write_file(env.path('source.raw'),
                        [(0, r.randbytes(2 * MiB)),
                         (9 * MiB + 4096, r.randbytes(7 * MiB)),
                         (50 * MiB, r.randbytes(MiB + 17))])
    image = write_file(env.path('disk.raw'), [(0, b'\x77' * IMAGE_SIZE)])
    srv = serve(env, image)
    # file -> nbd (several connections: the export allows multi-conn)
    run_tool(['nbdcopy', '--connections=4', source, srv.uri])
    h = srv.connect()
    for off in range(0, IMAGE_SIZE, 8 * MiB):
        assert h.pread(8 * MiB, off) == read_file(source, off, 8 * MiB), \
            f'export differs from source in [{off}, +8M)'
    del h
    # nbd -> file
    target = env.path('target.raw')
    run_tool(['nbdcopy', srv.uri, target])
    assert read_file(target) == read_file(source), 'target != source'
    run_tool(['qemu-img', 'compare', '-f', 'raw', '-F', 'raw',
              srv.uri, target])
    srv.stop()


# --- libnbd: each command and flag -------------------------------------------


@test
def test_libnbd_pread_pwrite(env):
    image = sparse_image(env)
    srv = serve(env, image)
    h = srv.connect()
    assert_eq(h.get_size(), IMAGE_SIZE, 'size')
    assert h.pread(MiB, 0) == read_file(image, 0, MiB), 'existing data'
    assert h.pread(MiB, 2 * MiB) == bytes(MiB), 'a hole reads as zeroes'
    data = rng('pwrite').randbytes(3 * MiB + 512)
    h.pwrite(data, 20 * MiB + 4096)
    assert h.pread(len(data), 20 * MiB + 4096) == data, 'read back'
    # Across a data/hole boundary, and the last byte of the disk.
    assert h.pread(2 * MiB, 7 * MiB) == bytes(MiB) + read_file(image, 8 * MiB,
                                                              MiB)
    h.pwrite(b'\xff' * 512, IMAGE_SIZE - 512)
    assert_eq(h.pread(512, IMAGE_SIZE - 512), b'\xff' * 512, 'last block')
    h.shutdown()
    srv.stop()


@test
def test_libnbd_pwrite_fua_reaches_file(env):
    image = plain_image(env)
    srv = serve(env, image)
    h = srv.connect()
    assert h.can_fua()
    data = rng('fua').randbytes(MiB)
    h.pwrite(data, 12 * MiB, nbd.CMD_FLAG_FUA)
    # Acknowledged with FUA: on the disk now, without a flush.
    assert read_file_direct(image, 12 * MiB, MiB) == data, 'FUA write'
    h.shutdown()
    srv.stop()


@test
def test_libnbd_flush(env):
    image = plain_image(env)
    srv = serve(env, image)
    h = srv.connect()
    assert h.can_flush()
    data = rng('flush').randbytes(256 * 1024)
    h.pwrite(data, 4 * MiB)
    h.flush()
    assert read_file_direct(image, 4 * MiB, len(data)) == data, 'flushed'
    h.flush(0)
    h.shutdown()
    srv.stop()


@test
def test_libnbd_trim(env):
    image = write_file(env.path('disk.raw'), [(0, b'\x5a' * 8 * MiB)])
    srv = serve(env, image)
    h = srv.connect()
    assert h.can_trim()
    h.trim(2 * MiB, 2 * MiB)
    # discard=unmap on the file: the range is a hole and reads as zeroes.
    assert h.pread(2 * MiB, 2 * MiB) == bytes(2 * MiB), 'trimmed range'
    assert h.pread(MiB, MiB) == b'\x5a' * MiB, 'before'
    assert h.pread(MiB, 4 * MiB) == b'\x5a' * MiB, 'after'
    assert is_hole(image, 2 * MiB, 2 * MiB), file_map(image)
    h.trim(MiB, 6 * MiB, nbd.CMD_FLAG_FUA)
    assert h.pread(MiB, 6 * MiB) == bytes(MiB)
    h.shutdown()
    srv.stop()


@test
def test_libnbd_zero_flags(env):
    image = write_file(env.path('disk.raw'), [(0, b'\x5a' * 16 * MiB)])
    srv = serve(env, image)
    h = srv.connect()
    assert h.can_zero() and h.can_fast_zero()
    # Plain zero: the server may punch a hole.
    h.zero(MiB, 0)
    assert h.pread(MiB, 0) == bytes(MiB), 'zero'
    # NO_HOLE: zeroes, and the range stays allocated.
    h.zero(MiB, 2 * MiB, nbd.CMD_FLAG_NO_HOLE)
    assert h.pread(MiB, 2 * MiB) == bytes(MiB), 'zero NO_HOLE'
    assert is_allocated(image, 2 * MiB, MiB), file_map(image)
    # FAST_ZERO: done quickly, or refused with ENOTSUP and nothing changed.
    for flags, off in [(nbd.CMD_FLAG_FAST_ZERO, 4 * MiB),
                       (nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE,
                        6 * MiB)]:
        try:
            h.zero(MiB, off, flags)
        except nbd.Error as e:
            assert_eq(e.errnum, errno.ENOTSUP, f'FAST_ZERO flags {flags}')
            assert h.pread(MiB, off) == b'\x5a' * MiB, 'refused: unchanged'
        else:
            assert h.pread(MiB, off) == bytes(MiB), f'zero flags {flags}'
    h.zero(MiB, 8 * MiB, nbd.CMD_FLAG_FUA)
    assert read_file_direct(image, 8 * MiB, MiB) == bytes(MiB), 'zero FUA'
    # Larger than the largest payload: zero carries none, so that is fine.
    h.zero(48 * MiB, 16 * MiB)
    assert h.pread(MiB, 40 * MiB) == bytes(MiB)
    assert h.pread(MiB, 15 * MiB) == b'\x5a' * MiB, 'before the big zero'
    h.shutdown()
    srv.stop()


@test
def test_libnbd_cache(env):
    image = sparse_image(env)
    srv = serve(env, image)
    h = srv.connect()
    assert h.can_cache()
    h.cache(4 * MiB, 0)
    h.cache(NBD_MAX_PAYLOAD, 8 * MiB)
    assert h.pread(MiB, 8 * MiB) == read_file(image, 8 * MiB, MiB)
    h.shutdown()
    srv.stop()


def block_status(h, count, offset, flags=0):
    """base:allocation extents as [(offset, length, kind)]."""
    extents = []

    def extent(metacontext, off, entries, err):
        assert_eq(metacontext, nbd.CONTEXT_BASE_ALLOCATION, 'context')
        for i in range(0, len(entries), 2):
            extents.append((off, entries[i], kind_of(entries[i + 1])))
            off += entries[i]
        return 0

    h.block_status(count, offset, extent, flags)
    return extents


@test
def test_libnbd_block_status(env):
    image = sparse_image(env)
    srv = serve(env, image)
    h = srv.connect(meta=True)
    assert h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    # The whole disk, request by request as the server answers.
    extents = []
    offset = 0
    while offset < IMAGE_SIZE:
        got = block_status(h, IMAGE_SIZE - offset, offset)
        assert got and got[0][0] == offset, got
        extents += got
        offset = got[-1][0] + got[-1][1]
    assert_eq(merge([e for e in extents if e[0] < IMAGE_SIZE]), SPARSE_MAP,
              'block status')
    h.shutdown()
    srv.stop()


@test
def test_libnbd_block_status_req_one(env):
    srv = serve(env, sparse_image(env))
    h = srv.connect(meta=True)
    for offset, length, kind in SPARSE_MAP:
        # Asking across the whole disk: one extent, starting at offset.
        got = block_status(h, IMAGE_SIZE - offset, offset,
                           nbd.CMD_FLAG_REQ_ONE)
        assert_eq(len(got), 1, f'REQ_ONE at {offset}: {got}')
        assert_eq(got[0][0], offset, 'extent offset')
        assert_eq(got[0][2], kind, f'kind at {offset}')
        assert 0 < got[0][1] <= length, f'REQ_ONE at {offset}: {got}'
    # A request shorter than the extent: not longer than asked.
    got = block_status(h, 4096, 8 * MiB, nbd.CMD_FLAG_REQ_ONE)
    assert_eq(got, [(8 * MiB, 4096, 'data')], 'short REQ_ONE')
    h.shutdown()
    srv.stop()


@test
def test_libnbd_structured_read_holes_and_df(env):
    image = sparse_image(env)
    srv = serve(env, image)
    h = srv.connect()
    assert h.get_structured_replies_negotiated()
    assert h.can_df()
    expected = read_file(image, 0, 2 * MiB)

    def read_chunks(flags):
        chunks = []

        def chunk(buf, offset, status, err):
            chunks.append((offset, len(buf), status))
            return 0
        buf = h.pread_structured(2 * MiB, 0, chunk, flags)
        assert buf == expected, f'data (flags {flags})'
        return chunks

    chunks = read_chunks(0)
    assert_eq(sum(c[1] for c in chunks), 2 * MiB, f'chunks {chunks}')
    # [1M, 2M) is a hole: the server says so rather than sending zeroes.
    assert_in(nbd.READ_HOLE, [c[2] for c in chunks], f'chunks {chunks}')
    # DF: a single chunk of data.
    assert_eq(read_chunks(nbd.CMD_FLAG_DF), [(0, 2 * MiB, nbd.READ_DATA)],
              'DF')
    h.shutdown()
    srv.stop()


@test
def test_libnbd_simple_replies(env):
    image = sparse_image(env)
    srv = serve(env, image)
    h = srv.connect(structured=False)
    assert_eq(h.get_structured_replies_negotiated(), False, 'structured')
    assert h.pread(2 * MiB, 0) == read_file(image, 0, 2 * MiB)
    h.pwrite(b'\x42' * 4096, 5 * MiB)
    h.flush()
    assert_eq(h.pread(4096, 5 * MiB), b'\x42' * 4096, 'read back')
    # Errors come as simple replies too, and the connection goes on.
    h2 = srv.connect(structured=False, strict=False)
    expect_nbd_error(lambda: h2.pread(4096, IMAGE_SIZE), [errno.EINVAL],
                     'simple reply: read past the end')
    assert_eq(h2.pread(4096, 5 * MiB), b'\x42' * 4096, 'after the error')
    h.shutdown()
    h2.shutdown()
    srv.stop()


@test
def test_libnbd_unaligned_io(env):
    """A client that asks for no block sizes may use any alignment: the
    server reads, modifies and writes the blocks around it."""
    image = write_file(env.path('disk.raw'), [(0, b'\x5a' * 4 * MiB)])
    srv = serve(env, image)
    h = nbd.NBD()
    h.set_request_block_size(False)
    h.connect_uri(srv.uri)
    assert_eq(h.get_block_size(nbd.SIZE_MINIMUM) in (0, 1), True,
              'minimum block size for a client that did not ask')
    h.pwrite(b'\x01', 7)
    h.pwrite(b'\x02' * 3000, 4095)
    h.pwrite(b'\x03' * 5, MiB - 2, nbd.CMD_FLAG_FUA)
    h.zero(1000, 2 * MiB + 3)
    h.zero(777, 3 * MiB + 5000, nbd.CMD_FLAG_NO_HOLE)
    h.cache(1000, 3)
    expect = bytearray(b'\x5a' * 4 * MiB)
    expect[7:8] = b'\x01'
    expect[4095:7095] = b'\x02' * 3000
    expect[MiB - 2:MiB + 3] = b'\x03' * 5
    expect[2 * MiB + 3:2 * MiB + 1003] = bytes(1000)
    expect[3 * MiB + 5000:3 * MiB + 5777] = bytes(777)
    assert h.pread(4 * MiB, 0) == bytes(expect), 'read back'
    assert h.pread(3001, 4094) == bytes(expect[4094:7095]), 'unaligned read'
    h.flush()
    assert read_file_direct(image, 0, 4 * MiB) == bytes(expect), 'the file'
    h.shutdown()
    srv.stop()


@test
def test_block_size_minimum_as_qsd(env):
    """QSD advertises a minimum block size of 1 for a raw node over a
    file even with cache.direct=on (its block layer pads), so libnbd's
    defaults allow unaligned requests and scripts written for QSD that
    make them work unchanged."""
    srv = serve(env, plain_image(env))
    h = srv.connect()
    assert_eq(h.get_block_size(nbd.SIZE_MINIMUM), 1, 'minimum block size')
    h.pwrite(b'\x01' * 3, 5)
    assert_eq(h.pread(10, 0), bytes(5) + b'\x01' * 3 + bytes(2), 'data')
    h.shutdown()
    srv.stop()


# --- Errors ------------------------------------------------------------------


@test
def test_error_out_of_range(env):
    srv = serve(env, plain_image(env))
    h = srv.connect(strict=False, meta=True)
    h.pwrite(b'\x33' * 4096, 0)
    end = IMAGE_SIZE
    reads = [('read past the end', lambda: h.pread(4096, end)),
             ('read across the end', lambda: h.pread(8192, end - 4096)),
             ('read far away', lambda: h.pread(512, 1 << 60)),
             ('cache past the end', lambda: h.cache(4096, end)),
             ('block status past the end',
              lambda: block_status(h, 4096, end))]
    writes = [('write across the end',
               lambda: h.pwrite(b'x' * 8192, end - 4096)),
              ('zero past the end', lambda: h.zero(4096, end)),
              ('trim past the end', lambda: h.trim(4096, end))]
    for what, fn in reads:
        expect_nbd_error(fn, [errno.EINVAL], what)
        assert_eq(h.pread(4096, 0), b'\x33' * 4096, f'after {what}')
    for what, fn in writes:
        expect_nbd_error(fn, [errno.ENOSPC, errno.EINVAL], what)
        assert_eq(h.pread(4096, 0), b'\x33' * 4096, f'after {what}')
    # Nothing was written at the end.
    assert_eq(h.pread(4096, end - 4096), bytes(4096), 'last block')
    h.shutdown()
    srv.stop()


@test
def test_error_read_only_export(env):
    image = write_file(env.path('disk.raw'), [(0, b'\x66' * MiB)])
    srv = serve(env, image, writable=False)
    h = srv.connect(strict=False)
    assert h.is_read_only()
    for what, fn in [('pwrite', lambda: h.pwrite(b'x' * 4096, 0)),
                     ('pwrite FUA',
                      lambda: h.pwrite(b'x' * 4096, 0, nbd.CMD_FLAG_FUA)),
                     ('zero', lambda: h.zero(4096, 0)),
                     ('trim', lambda: h.trim(4096, 0))]:
        expect_nbd_error(fn, [errno.EPERM], what)
        assert_eq(h.pread(4096, 0), b'\x66' * 4096, f'after {what}')
    h.flush()
    h.shutdown()
    assert read_file(image, 0, MiB) == b'\x66' * MiB, 'file unchanged'
    srv.stop()


@test
def test_error_oversized_requests(env):
    srv = serve(env, plain_image(env))
    h = srv.connect(strict=False)
    h.pwrite(b'\x44' * 4096, 0)
    big = NBD_MAX_PAYLOAD + 4096
    expect_nbd_error(lambda: h.pread(big, 0),
                     [errno.EINVAL, errno.EOVERFLOW, errno.ENOMEM],
                     'read > 32 MiB')
    assert_eq(h.pread(4096, 0), b'\x44' * 4096, 'after the big read')
    # The server must skip the payload to stay in step with the client.
    expect_nbd_error(lambda: h.pwrite(b'\x55' * big, 0),
                     [errno.EINVAL, errno.EOVERFLOW, errno.ENOMEM],
                     'write > 32 MiB')
    assert_eq(h.pread(4096, 0), b'\x44' * 4096,
              'after the big write (nothing written)')
    # The largest allowed payload works.
    h.pwrite(b'\x66' * NBD_MAX_PAYLOAD, 0)
    assert h.pread(NBD_MAX_PAYLOAD, 0) == b'\x66' * NBD_MAX_PAYLOAD
    h.shutdown()
    srv.stop()


# --- Several connections -----------------------------------------------------


@test
def test_multi_conn_consistency(env):
    image = plain_image(env)
    srv = serve(env, image)
    writer, flusher, reader = (srv.connect() for _ in range(3))
    assert writer.can_multi_conn()
    r = rng('multi-conn')
    for i in range(32):
        offset = r.randrange(0, IMAGE_SIZE // 4096 - 64) * 4096
        data = r.randbytes(r.randrange(1, 64) * 4096)
        writer.pwrite(data, offset)
        flusher.flush()
        assert reader.pread(len(data), offset) == data, f'round {i}: read'
        assert read_file_direct(image, offset, len(data)) == data, \
            f'round {i}: file after the flush'
    for h in (writer, flusher, reader):
        h.shutdown()
    srv.stop()


# --- fio ---------------------------------------------------------------------


def fio_has_nbd():
    if not shutil.which('fio'):
        return False
    r = subprocess.run(['fio', '--enghelp=nbd'], capture_output=True,
                       text=True)
    return r.returncode == 0 and 'uri' in r.stdout


@test
def test_fio_verify(env):
    if not fio_has_nbd():
        raise SkipTest('fio is missing or lacks the nbd engine')
    srv = serve(env, plain_image(env))
    r = run_tool(['fio', '--name=verify', '--ioengine=nbd', f'--uri={srv.uri}',
                  '--rw=randwrite', '--bsrange=4k-128k', '--iodepth=16',
                  '--size=16M', '--numjobs=2', '--offset_increment=16M',
                  '--verify=crc32c', '--verify_fatal=1',
                  '--verify_backlog=128', '--verify_state_save=0',
                  '--group_reporting', '--output-format=json'],
                 cwd=env.dir)
    result = json.loads(r.stdout[r.stdout.index('{'):])
    job = result['jobs'][0]
    assert_eq(job['error'], 0, 'fio error')
    assert job['write']['io_bytes'] >= 32 * MiB, job['write']['io_bytes']
    assert job['read']['io_bytes'] >= 32 * MiB, 'fio verified everything'
    srv.stop()


if __name__ == '__main__':
    check_server()
    main()
