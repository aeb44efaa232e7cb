#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The NBD server against real clients: nbdinfo for what is advertised,
libnbd for every command and flag (data checked in the image file
itself), the errors the spec names with the connection going on, simple
and structured replies, the handshake's option handling on a raw socket,
multi-conn consistency, connection limits and timeouts, connect/
disconnect cycles against an iothread export, and the QMP side
(query-block-exports, block-export-del, BLOCK_EXPORT_DELETED)."""

import errno
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (  # noqa: E402
    assert_eq, assert_in, assert_qmp_error, libnbd, main, nbd_available,
    read_file, require_program, skip, test,
)
from nbdserver import NbdDaemon, raw_over_file  # noqa: E402

nbd = libnbd()

MiB = 1024 * 1024
SIZE = 64 * MiB

NBD_MAGIC = 0x4e42444d41474943
OPTS_MAGIC = 0x49484156454F5054
REP_MAGIC = 0x0003e889045565a9
REQUEST_MAGIC = 0x25609513
OPT_ABORT, OPT_LIST, OPT_GO, OPT_STRUCTURED_REPLY = 2, 3, 7, 8
REP_ACK, REP_SERVER, REP_INFO = 1, 2, 3
REP_ERR_UNSUP = (1 << 31) | 1
REP_ERR_INVALID = (1 << 31) | 3
REP_ERR_TOO_BIG = (1 << 31) | 9

_checked = False


def start(env, export='', server='', iothreads=(), size=SIZE, node='disk0',
          image='disk.raw'):
    """A daemon with a raw-over-file node @node and an NBD export 'disk'
    (@export appended to its options; None: no export)."""
    global _checked
    if not _checked:
        if not nbd_available(env):
            skip('this blockd has no NBD server yet')
        _checked = True
    path = env.make_image(image, size)
    srv = NbdDaemon(env, raw_over_file(path, node=node), node,
                    writable=False, export_opts=export or '',
                    exports=[] if export is None else None,
                    iothreads=iothreads, nbd_opts=server)
    return srv.daemon, path, srv.sock


def connect(sock, name='disk', structured=True, meta=True, strict=True):
    h = nbd.NBD()
    h.set_export_name(name)
    h.set_request_structured_replies(structured)
    if meta:
        h.add_meta_context('base:allocation')
    if not strict:
        h.set_strict_mode(0)
    h.connect_unix(sock)
    return h


def uri(sock, name='disk'):
    return f'nbd+unix:///{name}?socket={sock}'


def assert_nbd_error(fn, errnum, what=''):
    try:
        fn()
    except nbd.Error as e:
        assert_eq(e.errnum, errnum, f'{what} errno ({e.string})')
        return e
    raise AssertionError(f'{what}: the command succeeded')


def extents(h, offset, length, flags=0):
    """base:allocation extents as [(length, flags), ...]."""
    got = []

    def cb(metacontext, off, entries, err):
        assert_eq(metacontext, 'base:allocation')
        got.extend(zip(entries[0::2], entries[1::2]))
        return 0
    h.block_status(length, offset, cb, flags)
    return got


def qmp_call(qmp, command, **args):
    """qmp.cmd() for commands with a 'name' argument."""
    resp = qmp.cmd_raw(command, {k.replace('_', '-'): v
                                 for k, v in args.items()})
    assert 'error' not in resp, f'{command}: {resp}'
    return resp['return']


def nbdinfo(sock, name='disk'):
    require_program('nbdinfo')
    out = subprocess.run(['nbdinfo', '--json', uri(sock, name)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)['exports'][0]


# --- What the server advertises ---------------------------------------------

@test
def test_nbdinfo_writable_export(env):
    d, path, sock = start(env, ',writable=on')
    info = nbdinfo(sock)
    assert_eq(info['export-size'], SIZE, 'size')
    assert_eq(info['export-name'], 'disk')
    assert_in('base:allocation', info['contexts'])
    for flag in ('can_flush', 'can_fua', 'can_trim', 'can_zero',
                 'can_fast_zero', 'can_df', 'can_cache', 'can_multi_conn'):
        assert_eq(info[flag], True, flag)
    assert_eq(info['is_read_only'], False, 'read-only')
    assert_eq(info['block_size_maximum'], 32 * MiB, 'maximum block size')
    assert_eq(info['block_size_preferred'], 4096, 'preferred block size')
    d.stop()


@test
def test_nbdinfo_readonly_export(env):
    d, path, sock = start(env, '')
    info = nbdinfo(sock)
    assert_eq(info['is_read_only'], True, 'read-only')
    assert_eq((info['can_trim'], info['can_zero']), (False, False),
              'no trim/zero on a read-only export')
    assert_eq(info['can_multi_conn'], True, 'multi-conn')
    d.stop()


@test
def test_no_multi_conn_with_one_connection(env):
    d, path, sock = start(env, ',writable=on', server=',max-connections=1')
    h = connect(sock)
    assert_eq(h.can_multi_conn(), False, 'multi-conn with max-connections=1')
    h.shutdown()
    d.stop()


@test
def test_list_info_and_default_export(env):
    d, path, sock = start(env, ',writable=on,description=the-disk')
    h = nbd.NBD()
    h.set_opt_mode(True)
    h.connect_unix(sock)
    names = []
    h.opt_list(lambda name, desc: names.append((name, desc)) or 0)
    assert_eq(names, [('disk', 'the-disk')], 'NBD_OPT_LIST')
    h.set_export_name('nope')
    assert_nbd_error(h.opt_info, errno.ENOENT, 'INFO of a missing export')
    h.set_export_name('disk')
    h.set_full_info(True)
    h.opt_info()
    assert_eq(h.get_size(), SIZE, 'INFO size')
    assert_eq(h.get_export_description(), 'the-disk', 'description')
    h.opt_abort()
    # The empty name picks the only export.
    h = connect(sock, name='')
    assert_eq(h.get_size(), SIZE, 'default export')
    h.shutdown()
    d.stop()


# --- Commands ---------------------------------------------------------------

@test
def test_write_fua_then_read_the_file(env):
    d, path, sock = start(env, ',writable=on')
    h = connect(sock)
    data = bytes(range(256)) * 256      # 64 KiB
    h.pwrite(data, 1 * MiB, nbd.CMD_FLAG_FUA)
    assert_eq(read_file(path, 1 * MiB, len(data)), data, 'file after FUA')
    assert_eq(h.pread(len(data), 1 * MiB), data, 'read back')
    # Unaligned, small and large requests.
    h.pwrite(b'xyz', 12345)
    h.flush()
    assert_eq(read_file(path, 12345, 3), b'xyz', 'unaligned write')
    big = os.urandom(4 * MiB + 512)
    h.pwrite(big, 8 * MiB)
    assert_eq(h.pread(len(big), 8 * MiB), big, '4 MiB read back')
    h.flush()
    assert_eq(read_file(path, 8 * MiB, len(big)), big, 'file after flush')
    h.shutdown()
    d.stop()


@test
def test_trim_zero_and_block_status(env):
    d, path, sock = start(env, ',writable=on')
    h = connect(sock)
    assert_eq(h.can_meta_context('base:allocation'), True, 'meta context')
    assert_eq(extents(h, 0, SIZE), [(SIZE, 3)], 'empty image: hole+zero')
    h.pwrite(b'\xaa' * (2 * MiB), 0, nbd.CMD_FLAG_FUA)
    ext = extents(h, 0, 4 * MiB)
    assert_eq(ext[0], (2 * MiB, 0), 'data extent')
    assert_eq(ext[1][1], 3, 'then hole+zero')
    assert_eq(extents(h, 0, 4 * MiB, nbd.CMD_FLAG_REQ_ONE), [(2 * MiB, 0)],
              'REQ_ONE')
    # Zero with NO_HOLE keeps the blocks; without, it may punch them.
    h.zero(64 * 1024, 0, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA)
    assert_eq(read_file(path, 0, 64 * 1024), bytes(64 * 1024), 'zeroed')
    h.zero(1 * MiB, 1 * MiB)
    assert_eq(h.pread(1 * MiB, 1 * MiB), bytes(1 * MiB), 'zeroed read')
    h.pwrite(b'\xbb' * 4096, 8 * MiB)
    h.trim(MiB, 8 * MiB, nbd.CMD_FLAG_FUA)
    h.cache(MiB, 0)
    h.flush()
    h.shutdown()
    d.stop()


@test
def test_fast_zero(env):
    d, path, sock = start(env, ',writable=on')
    h = connect(sock)
    assert_eq(h.can_fast_zero(), True)
    try:
        h.zero(1 * MiB, 0, nbd.CMD_FLAG_FAST_ZERO)
        assert_eq(h.pread(4096, 0), bytes(4096), 'fast zero result')
    except nbd.Error as e:
        assert_eq(e.errnum, errno.ENOTSUP, 'a fast zero fails only so')
    h.pwrite(b'ok', 0)
    h.shutdown()
    d.stop()


@test
def test_structured_read_reports_holes(env):
    d, path, sock = start(env, ',writable=on')
    h = connect(sock)
    h.pwrite(b'\xcc' * (1 * MiB), 1 * MiB, nbd.CMD_FLAG_FUA)
    chunks = []

    def chunk(buf, offset, status, err):
        chunks.append((offset, len(buf), status))
        return 0
    buf = h.pread_structured(3 * MiB, 0, chunk)
    assert_eq(bytes(buf), bytes(MiB) + b'\xcc' * MiB + bytes(MiB), 'data')
    kinds = sorted((o, n, s) for o, n, s in chunks)
    assert_eq(kinds, [(0, MiB, nbd.READ_HOLE), (MiB, MiB, nbd.READ_DATA),
                      (2 * MiB, MiB, nbd.READ_HOLE)], 'chunks')
    # DF: one data chunk, holes as zeroes.
    chunks.clear()
    h.pread_structured(3 * MiB, 0, chunk, nbd.CMD_FLAG_DF)
    assert_eq(chunks, [(0, 3 * MiB, nbd.READ_DATA)], 'DF chunks')
    h.shutdown()
    d.stop()


@test
def test_simple_replies(env):
    d, path, sock = start(env, ',writable=on')
    h = connect(sock, structured=False, meta=False)
    assert_eq(h.get_structured_replies_negotiated(), False)
    assert_eq(h.can_df(), False, 'no DF without structured replies')
    h.pwrite(b'simple', 4096, nbd.CMD_FLAG_FUA)
    assert_eq(read_file(path, 4096, 6), b'simple')
    assert_eq(h.pread(6, 4096), b'simple', 'simple read')
    h.set_strict_mode(0)
    # An error on a simple read: header only, and the stream goes on.
    assert_nbd_error(lambda: h.pread(4096, SIZE), errno.EINVAL,
                     'simple read past the end')
    assert_eq(h.pread(6, 4096), b'simple', 'read after the error')
    h.shutdown()
    d.stop()


# --- Errors; the connection goes on -----------------------------------------

@test
def test_out_of_range_requests(env):
    d, path, sock = start(env, ',writable=on')
    for structured in (True, False):
        h = connect(sock, structured=structured, meta=structured,
                    strict=False)
        assert_nbd_error(lambda: h.pread(4096, SIZE - 512), errno.EINVAL,
                         'read past the end')
        assert_nbd_error(lambda: h.pwrite(b'x' * 4096, SIZE - 512),
                         errno.ENOSPC, 'write past the end')
        assert_nbd_error(lambda: h.zero(4096, SIZE), errno.ENOSPC,
                         'zero past the end')
        assert_nbd_error(lambda: h.trim(4096, SIZE), errno.EINVAL,
                         'trim past the end')
        if structured:
            assert_nbd_error(lambda: extents(h, SIZE, 4096), errno.EINVAL,
                             'block status past the end')
        h.pwrite(b'still here', 0)
        assert_eq(h.pread(10, 0), b'still here', 'connection goes on')
        h.shutdown()
    d.stop()


@test
def test_readonly_export_refuses_writes(env):
    d, path, sock = start(env, '')
    h = connect(sock, strict=False)
    assert_eq(h.is_read_only(), True)
    assert_nbd_error(lambda: h.pwrite(b'x' * 512, 0), errno.EPERM, 'write')
    assert_nbd_error(lambda: h.trim(512, 0), errno.EPERM, 'trim')
    assert_nbd_error(lambda: h.zero(512, 0), errno.EPERM, 'zero')
    assert_eq(h.pread(512, 0), bytes(512), 'reads work')
    h.flush()
    h.shutdown()
    assert_eq(read_file(path, 0, 512), bytes(512), 'image untouched')
    d.stop()


@test
def test_oversized_requests(env):
    d, path, sock = start(env, ',writable=on')
    for structured in (True, False):
        h = connect(sock, structured=structured, strict=False)
        # The refused write's 33 MiB payload is skipped: still in sync.
        assert_nbd_error(lambda: h.pwrite(b'\x11' * (33 * MiB), 0),
                         errno.EINVAL, 'write of 33 MiB')
        assert_nbd_error(lambda: h.pread(33 * MiB, 0), errno.EINVAL,
                         'read of 33 MiB')
        h.pwrite(b'in sync', 0)
        assert_eq(h.pread(7, 0), b'in sync', 'stream in sync')
        h.shutdown()
    assert_eq(read_file(path, 4096, 16), bytes(16), 'nothing written')
    d.stop()


@test
def test_bad_magic_closes_only_that_connection(env):
    d, path, sock = start(env, ',writable=on')
    good = connect(sock)
    s = raw_handshake(sock)
    s.sendall(b'\xde\xad\xbe\xef' * 7)
    s.settimeout(10)
    assert_eq(s.recv(1), b'', 'bad magic: the server hangs up')
    s.close()
    good.pwrite(b'fine', 0)
    assert_eq(good.pread(4, 0), b'fine', 'other connection unaffected')
    good.shutdown()
    d.stop()


# --- The handshake on a raw socket --------------------------------------------

def recv_exact(s, n):
    buf = b''
    while len(buf) < n:
        got = s.recv(n - len(buf))
        if not got:
            raise AssertionError(f'EOF after {len(buf)} of {n} bytes')
        buf += got
    return buf


def send_option(s, opt, data=b''):
    s.sendall(struct.pack('>QII', OPTS_MAGIC, opt, len(data)) + data)


def recv_reply(s):
    magic, opt, rtype, length = struct.unpack('>QIII', recv_exact(s, 20))
    assert_eq(magic, REP_MAGIC, 'option reply magic')
    return opt, rtype, recv_exact(s, length)


def raw_greeting(sock):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(sock)
    magic, opts_magic, flags = struct.unpack('>QQH', recv_exact(s, 18))
    assert_eq((magic, opts_magic), (NBD_MAGIC, OPTS_MAGIC), 'greeting')
    assert_eq(flags, 3, 'FIXED_NEWSTYLE | NO_ZEROES')
    return s


def raw_handshake(sock, name=b'disk'):
    """A raw connection in transmission phase (simple replies)."""
    s = raw_greeting(sock)
    s.sendall(struct.pack('>I', 3))
    send_option(s, OPT_GO, struct.pack('>I', len(name)) + name +
                struct.pack('>H', 0))
    while True:
        opt, rtype, data = recv_reply(s)
        if rtype == REP_ACK:
            return s
        assert_eq(rtype, REP_INFO, 'GO reply')


@test
def test_unknown_option_gets_unsup(env):
    d, path, sock = start(env, ',writable=on')
    s = raw_greeting(sock)
    s.sendall(struct.pack('>I', 3))
    send_option(s, 99, b'some data the server must skip')
    opt, rtype, msg = recv_reply(s)
    assert_eq((opt, rtype), (99, REP_ERR_UNSUP), 'unknown option')
    # The handshake goes on.
    send_option(s, OPT_LIST, b'unexpected')
    assert_eq(recv_reply(s)[1], REP_ERR_INVALID, 'LIST with data')
    send_option(s, OPT_STRUCTURED_REPLY)
    assert_eq(recv_reply(s)[1], REP_ACK, 'structured reply')
    send_option(s, OPT_STRUCTURED_REPLY)
    assert_eq(recv_reply(s)[1], REP_ERR_INVALID, 'structured reply twice')
    send_option(s, 1234, b'x' * (100 * 1024))
    assert_eq(recv_reply(s)[1], REP_ERR_TOO_BIG, 'oversized option')
    send_option(s, OPT_LIST)
    opt, rtype, data = recv_reply(s)
    assert_eq(rtype, REP_SERVER, 'LIST entry')
    assert_eq(data[4:4 + struct.unpack('>I', data[:4])[0]], b'disk')
    assert_eq(recv_reply(s)[1], REP_ACK, 'LIST end')
    send_option(s, OPT_ABORT)
    assert_eq(recv_reply(s)[1], REP_ACK, 'ABORT')
    s.close()
    d.stop()


@test
def test_raw_simple_request(env):
    """One request by hand: header parsing and the simple reply."""
    d, path, sock = start(env, ',writable=on')
    s = raw_handshake(sock)
    payload = b'raw!' * 128
    s.sendall(struct.pack('>IHHQQI', REQUEST_MAGIC, 1, 1, 0x1234, 0, 512) +
              payload)
    magic, err, handle = struct.unpack('>IIQ', recv_exact(s, 16))
    assert_eq((magic, err, handle), (0x67446698, 0, 0x1234), 'write reply')
    s.sendall(struct.pack('>IHHQQI', REQUEST_MAGIC, 0, 0, 0x5678, 0, 512))
    magic, err, handle = struct.unpack('>IIQ', recv_exact(s, 16))
    assert_eq((err, handle), (0, 0x5678), 'read reply')
    assert_eq(recv_exact(s, 512), payload, 'read data')
    # An unknown command: EINVAL, and the stream goes on.
    s.sendall(struct.pack('>IHHQQI', REQUEST_MAGIC, 0, 42, 9, 0, 0))
    assert_eq(struct.unpack('>IIQ', recv_exact(s, 16))[1:], (22, 9),
              'unknown command')
    s.sendall(struct.pack('>IHHQQI', REQUEST_MAGIC, 0, 2, 0, 0, 0))  # DISC
    assert_eq(s.recv(1), b'', 'DISC closes')
    s.close()
    d.stop()


# --- Several connections ------------------------------------------------------

@test
def test_multi_conn_consistency(env):
    d, path, sock = start(env, ',writable=on,iothread.0=io0,iothread.1=io1',
                          iothreads=['io0', 'io1'])
    h1, h2, h3 = connect(sock), connect(sock), connect(sock)
    assert_eq(h1.can_multi_conn(), True)
    for i in range(8):
        data = bytes([i]) * 65536
        h1.pwrite(data, i * MiB)
        h2.flush()
        assert_eq(h3.pread(len(data), i * MiB), data, f'round {i}')
        assert_eq(read_file(path, i * MiB, len(data)), data, 'file')
    qmp = env.qmp()
    [info] = qmp.cmd('query-block-exports')
    assert_eq(info['x-blockd-clients'], 3, 'clients')
    assert_eq(info['x-blockd-iothreads'], ['io0', 'io1'], 'iothreads')
    for h in (h1, h2, h3):
        h.shutdown()
    d.stop()


@test
def test_max_connections(env):
    d, path, sock = start(env, ',writable=on', server=',max-connections=2')
    h1, h2 = connect(sock), connect(sock)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sock)
    assert_eq(s.recv(1), b'', 'third client refused: closed at once')
    s.close()
    h1.shutdown()
    deadline = time.monotonic() + 10
    while True:
        try:
            h3 = connect(sock)
            break
        except nbd.Error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert_eq(h3.pread(4, 0), bytes(4), 'a slot freed up')
    h2.shutdown()
    h3.shutdown()
    d.stop()


@test
def test_handshake_timeout(env):
    d, path, sock = start(env, '', server=',handshake-max-seconds=1')
    s = raw_greeting(sock)
    s.settimeout(20)
    start_t = time.monotonic()
    assert_eq(s.recv(1), b'', 'idle handshake dropped')
    elapsed = time.monotonic() - start_t
    assert elapsed > 0.5, f'dropped after {elapsed:.2f} s, not ~1 s'
    s.close()
    h = connect(sock)
    assert_eq(h.get_size(), SIZE, 'server still serves')
    h.shutdown()
    d.stop()


@test
def test_connect_disconnect_cycles_iothread(env):
    d, path, sock = start(env, ',writable=on,iothread=io0',
                          iothreads=['io0'])
    for i in range(200):
        if i % 4 == 3:
            # Leave without NBD_CMD_DISC, with a request in flight.
            s = raw_handshake(sock)
            s.sendall(struct.pack('>IHHQQI', REQUEST_MAGIC, 0, 0, i, 0,
                                  65536))
            s.close()
        elif i % 4 == 2:
            s = raw_greeting(sock)      # half-done handshake
            s.close()
        else:
            h = connect(sock)
            h.pwrite(struct.pack('>I', i), 4 * i)
            assert_eq(h.pread(4, 4 * i), struct.pack('>I', i))
            if i % 2:
                h.shutdown()
            del h                       # closes without DISC otherwise
    assert d.running, 'daemon died'
    h = connect(sock)
    assert_eq(h.pread(4, 0), struct.pack('>I', 0), 'still serving')
    h.shutdown()
    qmp = env.qmp()
    deadline = time.monotonic() + 10
    while qmp.cmd('query-block-exports')[0]['x-blockd-clients'] != 0:
        assert time.monotonic() < deadline, 'clients never left'
        time.sleep(0.05)
    d.stop()


# --- Drains and moves under I/O -------------------------------------------

def io_workers(sock, nworkers, stop, errors, counts):
    """Clients that write and verify their own regions until @stop."""
    def work(k):
        try:
            h = connect(sock)
            i = 0
            while not stop.is_set():
                off = (k * 32 + i % 32) * 65536
                data = os.urandom(65536)
                h.pwrite(data, off, nbd.CMD_FLAG_FUA if i % 8 == 0 else 0)
                if h.pread(len(data), off) != data:
                    errors.append(f'worker {k}: mismatch at {off}')
                i += 1
            counts[k] = i
            h.shutdown()
        except Exception as e:  # noqa: BLE001 -- reported by the test
            errors.append(f'worker {k}: {e!r}')
    threads = [threading.Thread(target=work, args=(k,))
               for k in range(nworkers)]
    for t in threads:
        t.start()
    return threads


def moves_under_io(env, export, expect_iothreads):
    d, path, sock = start(env, ',writable=on' + export,
                          iothreads=['io0', 'io1'])
    qmp = env.qmp()
    stop, errors, counts = threading.Event(), [], {}
    threads = io_workers(sock, 3, stop, errors, counts)
    time.sleep(0.2)
    for target in ['io1', None, 'io0'] * 5:
        qmp_call(qmp, 'x-blockdev-set-iothread', node_name='disk0',
                 iothread=target, force=True)
        [info] = qmp.cmd('query-block-exports')
        expect = expect_iothreads or ([target] if target else [])
        assert_eq(info['x-blockd-iothreads'], expect, 'where clients run')
        # A graph change: a parent above the exported node, and back.
        qmp_call(qmp, 'blockdev-add', driver='raw', node_name='top',
                 file='disk0', read_only=True, force_share=True)
        qmp_call(qmp, 'blockdev-del', node_name='top')
        time.sleep(0.02)
    stop.set()
    for t in threads:
        t.join(60)
    assert_eq(errors, [], 'client errors')
    assert all(counts.get(k, 0) > 0 for k in range(3)), counts
    assert d.running, 'daemon died'
    d.stop()


@test
def test_node_moves_under_io(env):
    """A single-iothread export follows its node; clients keep going."""
    moves_under_io(env, ',iothread=io0', None)


@test
def test_multiqueue_node_moves_under_io(env):
    """Multiqueue connections stay on their iothreads when the node moves."""
    moves_under_io(env, ',iothread.0=io0,iothread.1=io1', ['io0', 'io1'])


@test
def test_fixed_iothread_refuses_moves(env):
    d, path, sock = start(env, ',writable=on,iothread=io0,fixed-iothread=on',
                          iothreads=['io0', 'io1'])
    qmp = env.qmp()
    assert_qmp_error(lambda: qmp.cmd('x-blockdev-set-iothread',
                                     node_name='disk0', iothread='io1',
                                     force=True),
                     "Cannot change iothread of active block export 'exp0' "
                     "(it has fixed-iothread=on)")
    h = connect(sock)
    h.pwrite(b'fixed', 0)
    h.shutdown()
    assert_eq(qmp.cmd('query-block-exports')[0]['x-blockd-iothreads'],
              ['io0'])
    d.stop()


@test
def test_shutdown_with_clients(env):
    """SIGTERM with clients connected, busy and idle, and a half-done
    handshake: the daemon closes them all and exits cleanly."""
    d, path, sock = start(env, ',writable=on,iothread=io0',
                          iothreads=['io0'])
    idle = connect(sock)
    half = raw_greeting(sock)
    stop, errors, counts = threading.Event(), [], {}
    threads = io_workers(sock, 2, stop, errors, counts)
    time.sleep(0.3)
    d.stop()
    stop.set()
    for t in threads:
        t.join(60)
    assert_eq(half.recv(1), b'', 'handshake closed')
    half.close()
    assert_nbd_error(lambda: idle.pread(512, 0), errno.ENOTCONN, 'idle')


# --- QMP ---------------------------------------------------------------------

@test
def test_query_and_counters(env):
    d, path, sock = start(env, ',writable=on')
    h = connect(sock)
    h.pwrite(b'\x01' * 8192, 0)
    h.pread(4096, 0)
    qmp = env.qmp()
    [info] = qmp.cmd('query-block-exports')
    assert_eq({k: info[k] for k in ('id', 'type', 'node-name',
                                    'shutting-down')},
              {'id': 'exp0', 'type': 'nbd', 'node-name': 'disk0',
               'shutting-down': False}, "QEMU's fields")
    assert_eq(info['x-blockd-clients'], 1)
    assert_eq(info['x-blockd-requests'], 2)
    assert_eq(info['x-blockd-bytes-written'], 8192)
    assert_eq(info['x-blockd-bytes-read'], 4096)
    assert_eq(info['x-blockd-iothreads'], [])
    h.shutdown()
    d.stop()


@test
def test_export_del_safe_and_hard(env):
    d, path, sock = start(env, ',writable=on')
    qmp = env.qmp()
    h = connect(sock)
    assert_qmp_error(lambda: qmp.cmd('block-export-del', id='exp0'),
                     "export 'exp0' still in use")
    assert_qmp_error(lambda: qmp.cmd('block-export-del', id='nope'),
                     "Export 'nope' is not found")
    qmp.cmd('block-export-del', id='exp0', mode='hard')
    ev = qmp.event('BLOCK_EXPORT_DELETED')
    assert_eq(ev['data'], {'id': 'exp0'}, 'event data')
    assert_nbd_error(lambda: h.pread(512, 0), errno.ENOTCONN,
                     'disconnected client')
    assert_eq(qmp.cmd('query-block-exports'), [], 'gone')
    # The node is free again: blockdev-del works, a new export too.
    qmp_call(qmp, 'block-export-add', type='nbd', id='exp1',
             node_name='disk0', name='disk')
    h = connect(sock)
    h.shutdown()
    qmp.cmd('block-export-del', id='exp1')
    qmp.event('BLOCK_EXPORT_DELETED')
    qmp.cmd('blockdev-del', node_name='disk0')
    d.stop()


@test
def test_export_add_errors(env):
    d, path, sock = start(env, None)
    qmp = env.qmp()
    add = qmp.cmd

    def fails(desc, **args):
        args.setdefault('type', 'nbd')
        args.setdefault('id', 'e0')
        args.setdefault('node_name', 'disk0')
        assert_qmp_error(lambda: add('block-export-add', **args), desc)
    fails("Cannot find device='' nor node-name='nope'", node_name='nope')
    fails('iothread "io9" not found', iothread='io9')
    fails('allocation-depth is not supported by blockd',
          **{'allocation-depth': True})
    add('block-export-add', type='nbd', id='e0', node_name='disk0')
    fails("Block export id 'e0' is already in use")
    fails("NBD server already has export named 'disk0'", id='e1')
    assert_qmp_error(lambda: add('nbd-server-start', addr={
        'type': 'unix', 'data': {'path': env.path('x.sock')}}),
        'NBD server already running')
    add('nbd-server-stop')
    assert_eq(add('query-block-exports'), [], 'stop removes NBD exports')
    assert_qmp_error(lambda: add('nbd-server-stop'), 'NBD server not running')
    fails('NBD server not running', id='e2')
    assert_qmp_error(lambda: add('nbd-server-start', addr={
        'type': 'unix', 'data': {'path': sock}}, tls_creds='tls0'),
        "TLS is not supported by blockd: 'tls-creds' and 'tls-authz' "
        "cannot be used")
    d.stop()


@test
def test_inet_listener_and_stop_with_half_handshake(env):
    d, path, sock = start(env, None)
    qmp = env.qmp()
    qmp.cmd('nbd-server-stop')
    # Find a free port, then listen on it.
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    qmp.cmd('nbd-server-start', addr={
        'type': 'inet', 'data': {'host': '127.0.0.1', 'port': str(port)}})
    qmp_call(qmp, 'block-export-add', type='nbd', id='e0', node_name='disk0',
             name='disk', writable=True)
    h = nbd.NBD()
    h.connect_uri(f'nbd://127.0.0.1:{port}/disk')
    h.pwrite(b'tcp', 0)
    half = socket.create_connection(('127.0.0.1', port), timeout=10)
    assert_eq(len(recv_exact(half, 18)), 18, 'greeting over TCP')
    qmp.cmd('nbd-server-stop')
    assert_eq(half.recv(1), b'', 'half-done handshake closed by stop')
    half.close()
    assert_nbd_error(lambda: h.pread(3, 0), errno.ENOTCONN, 'client closed')
    assert_eq(qmp.cmd('query-block-exports'), [])
    assert d.running
    d.stop()


if __name__ == '__main__':
    main()
