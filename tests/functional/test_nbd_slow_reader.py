#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""An NBD client that never reads its replies cannot freeze the daemon
(issue #12, finding 8).

The stuck client (a raw client, nbdraw.py) negotiates, pipelines 64
NBD_CMD_READs of 32 MiB and keeps its socket open without reading a byte
of the replies.  The test waits until the server has started replying
(the socket turns readable), so the server is held up on that client.
Then, each a test:

- a draining command returns: x-blockdev-set-iothread of the exported node
  (force) and blockdev-mirror of it (its job then cancelled and gone);
- a second monitor gets answers to query-version, query-jobs and
  query-block-exports while the first waits on such a command;
- a new NBD client connects, writes and reads back, while such a command
  is under way;
- with four stuck clients the daemon's RSS stays within four budgets
  (block-export-add's x-blockd-buffer-budget: the default, 32 MiB, and
  4 MiB) above its idle RSS;
- SIGTERM ends the daemon with four stuck clients still connected, with
  and without a draining command under way: exit status 0, and every
  write a normal client had acknowledged (FUA, or a flush after it) is in
  the image file;
- block-export-del mode=hard, sent on another monitor while a draining
  command waits, is answered, and the stuck clients are disconnected.

A command that "waits" is one that drains the stuck client's node.  The
tests do not depend on whether it is still waiting when the other
request arrives (a daemon whose drain does not wait on the peer answers
it first): both are sent, both replies must come, both must be right.
Nothing is timed; every wait is bounded (the QMP client's timeout,
BOUND for NBD and sockets), so a hang fails the test.
"""

import os
import select
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (EXIT_TIMEOUT, SkipTest, assert_eq,  # noqa: E402
                     assert_no_sanitizer_report, blockd_binary, libnbd, main,
                     nbd_available, peak_rss_kib, rss_kib,
                     sanitized_binary, skip, test)
from graphlib import Jobs, failing_daemon, pipeline  # noqa: E402
from nbdraw import CMD_READ, RawClient  # noqa: E402
from nbdserver import NbdDaemon  # noqa: E402

nbd = libnbd()

MiB = 1024 * 1024
KiB = 1024
SIZE = 64 * MiB
STUCK_READS = 64
STUCK_READ_SIZE = 32 * MiB
DEFAULT_BUDGET = 32 * MiB
# How long an NBD client or a socket may wait for the daemon.
BOUND = EXIT_TIMEOUT
# RSS allowed beyond four budgets and the idle RSS, for what connecting
# costs besides request data: per connection its receive buffer,
# coroutine stack and request structures, per iothread what its first
# requests leave in the allocator's pools, and the normal client's
# requests.  Measured on main (ab5d4e4, gcc, 2 cores): five clients that
# each write 64 KiB and read 64 KiB add 632 KiB, every time.  8 MiB
# leaves room for the budget's own bookkeeping and for a daemon that
# lets a request in while the connection holds just under its budget
# (the 4 MiB test's 1 MiB reads, x 4 connections); it is a quarter of one
# stuck 32 MiB read, so a connection holding a request beyond its budget
# still fails the test.
SLACK_KIB = 8 * 1024


class Stuck:
    """A raw NBD client that pipelined @reads READs of @size bytes and
    reads nothing back."""

    def __init__(self, sock, reads=STUCK_READS, size=STUCK_READ_SIZE):
        self.client = RawClient(sock, timeout=BOUND)
        self.client.handshake()
        for i in range(reads):
            self.client.request(CMD_READ, (i * size) % SIZE, size)

    def wait_replying(self):
        """Until the server has sent part of a reply (bounded)."""
        readable, _, _ = select.select([self.client.sock], [], [], BOUND)
        assert readable, f'no reply data within {BOUND} s'

    def close(self):
        self.client.close()


class Client:
    """python3-libnbd with every wait bounded by BOUND: a daemon that
    does not answer fails the test instead of blocking it."""

    def __init__(self, sock, name='disk'):
        self.h = nbd.NBD()
        self.h.set_export_name(name)
        self.h.aio_connect_unix(sock)
        self._wait(lambda: not self.h.aio_is_connecting(), 'the handshake')
        assert self.h.aio_is_ready(), 'the handshake failed'

    def _wait(self, done, what):
        deadline = time.monotonic() + BOUND
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f'{what}: no answer within {BOUND} s')
            self.h.poll(max(1, int(left * 1000)))

    def _command(self, cookie, what):
        self._wait(lambda: self.h.aio_command_completed(cookie), what)

    def pread(self, n, offset):
        buf = nbd.Buffer(n)
        self._command(self.h.aio_pread(buf, offset), f'read at {offset}')
        return bytes(buf.to_bytearray())

    def pwrite(self, data, offset, fua=False):
        flags = nbd.CMD_FLAG_FUA if fua else 0
        self._command(self.h.aio_pwrite(data, offset, flags=flags),
                      f'write at {offset}')

    def flush(self):
        self._command(self.h.aio_flush(), 'flush')

    def close(self):
        self.h.aio_disconnect()
        self._wait(lambda: self.h.aio_is_closed(), 'disconnect')


def start(env, budget=None):
    """blockd with disk0 (64 MiB) and tgt0 (for mirrors), iothreads io0
    and io1, two monitors (qmp.sock, qmp1.sock), export 'disk' of disk0
    in io0 (with x-blockd-buffer-budget @budget if given): the daemon,
    both monitors and the NBD socket."""
    if not nbd_available(env):
        skip('this blockd has no NBD server')
    image = env.make_image('disk.raw', SIZE)
    target = env.make_image('tgt.raw', SIZE)
    srv = NbdDaemon(env, [f'driver=file,node-name=disk0,filename={image}',
                          f'driver=file,node-name=tgt0,filename={target}'],
                    exports=[], iothreads=('io0', 'io1'),
                    extra=env.monitor_args('qmp1.sock', 'qmp1'))
    d, sock = srv.daemon, srv.sock
    d.wait_socket(env.path('qmp1.sock'))
    qmp, qmp1 = env.qmp(), env.qmp('qmp1.sock')
    args = dict(type='nbd', id='exp0', node_name='disk0', name='disk',
                writable=True, iothread='io0')
    if budget is not None:
        args['x_blockd_buffer_budget'] = budget
    qmp.cmd('block-export-add', **args)
    return d, qmp, qmp1, sock


def stuck_clients(sock, count=1, **kw):
    clients = [Stuck(sock, **kw) for _ in range(count)]
    for c in clients:
        c.wait_replying()
    return clients


def send_draining_command(qmp):
    """Send x-blockdev-set-iothread of the stuck clients' node (io0 to
    io1), which drains it, without waiting for the reply."""
    qmp.client.send_message({
        'execute': 'x-blockdev-set-iothread', 'id': 'draining',
        'arguments': {'node-name': 'disk0', 'iothread': 'io1',
                      'force': True}})


def draining_command_reply(qmp):
    """The reply to send_draining_command() (bounded); events that come
    first are kept."""
    while True:
        msg = qmp.client.recv_message(EXIT_TIMEOUT)
        if 'event' in msg:
            qmp.client.events.append(msg)
            continue
        assert_eq(msg, {'return': {}, 'id': 'draining'},
                  'the draining command')
        return


def served(sock, offset=0):
    """A new client writes 64 KiB and reads it back."""
    c = Client(sock)
    data = os.urandom(64 * KiB)
    c.pwrite(data, offset)
    assert_eq(c.pread(len(data), offset) == data, True,
              'a new client reads back what it wrote')
    c.close()


def quit_cleanly(d, qmp):
    d.quit(qmp)
    assert_no_sanitizer_report(d.stderr)


# --- (a) draining commands return ------------------------------------------

@test
def test_set_iothread_returns_with_a_stuck_reader(env):
    d, qmp, _, sock = start(env)
    stuck = stuck_clients(sock)
    with failing_daemon(d, 'x-blockdev-set-iothread with a stuck reader'):
        for io in ('io1', 'io0'):
            qmp.cmd('x-blockdev-set-iothread', node_name='disk0',
                    iothread=io, force=True)
            exports = qmp.cmd('query-block-exports')
            assert_eq(exports[0]['x-blockd-iothreads'], [io],
                      'the export followed its node')
    stuck[0].close()
    quit_cleanly(d, qmp)


@test
def test_mirror_returns_with_a_stuck_reader(env):
    d, qmp, _, sock = start(env)
    stuck = stuck_clients(sock)
    jobs = Jobs(qmp)
    with failing_daemon(d, 'blockdev-mirror with a stuck reader'):
        qmp.cmd('blockdev-mirror', job_id='m0', device='disk0',
                target='tgt0', sync='full')
        qmp.cmd('job-cancel', id='m0')
        jobs.gone('m0')
    stuck[0].close()
    quit_cleanly(d, qmp)


# --- (b) another monitor is answered ------------------------------------------

@test
def test_second_monitor_answered_while_a_drain_waits(env):
    d, qmp, qmp1, sock = start(env)
    stuck = stuck_clients(sock)
    with failing_daemon(d, 'queries while a drain waits'):
        send_draining_command(qmp)
        version, jobs, exports = pipeline(qmp1, [
            ('query-version', None), ('query-jobs', None),
            ('query-block-exports', None)])
        draining_command_reply(qmp)
    assert 'qemu' in version['return'], version
    assert_eq(jobs['return'], [], 'query-jobs')
    assert_eq([(e['id'], e['node-name']) for e in exports['return']],
              [('exp0', 'disk0')], 'query-block-exports')
    stuck[0].close()
    quit_cleanly(d, qmp)


# --- (c) a new client is served -------------------------------------------

@test
def test_new_client_served_while_a_drain_waits(env):
    d, qmp, _, sock = start(env)
    stuck = stuck_clients(sock)
    with failing_daemon(d, 'a new client while a drain waits'):
        send_draining_command(qmp)
        served(sock, offset=SIZE - MiB)
        draining_command_reply(qmp)
    stuck[0].close()
    quit_cleanly(d, qmp)


# --- (d) memory is bounded by the budget ---------------------------------

def rss_bounded(env, budget, reads, size):
    """Four stuck clients of @reads reads of @size each: RSS stays
    within 4 x @budget (the default if None) of the idle RSS, + SLACK."""
    if sanitized_binary(blockd_binary()):
        raise SkipTest('RSS says nothing under a sanitizer')
    d, qmp, _, sock = start(env, budget)
    idle = rss_kib(d.pid)
    stuck = stuck_clients(sock, 4, reads=reads, size=size)
    with failing_daemon(d, 'four stuck clients'):
        # A round trip through the export's iothread: what the stuck
        # connections asked for before has been read in by now.
        served(sock)
        peak = peak_rss_kib(d.pid)
        now = rss_kib(d.pid)
    limit = idle + 4 * (budget or DEFAULT_BUDGET) // KiB + SLACK_KIB
    print(f'  RSS idle {idle} KiB, with 4 stuck clients {now} KiB '
          f'(peak {peak} KiB), limit {limit} KiB')
    for c in stuck:
        c.close()
    quit_cleanly(d, qmp)
    assert peak <= limit, \
        f'peak RSS {peak} KiB over {limit} KiB (idle {idle} KiB + 4 x ' \
        f'{(budget or DEFAULT_BUDGET) // MiB} MiB + {SLACK_KIB} KiB)'


@test
def test_rss_within_default_budget_with_four_stuck_readers(env):
    rss_bounded(env, None, STUCK_READS, STUCK_READ_SIZE)


@test
def test_rss_within_4mib_budget_with_four_stuck_readers(env):
    # Reads of 1 MiB, so that a budget of 4 MiB can hold whole requests:
    # 64 MiB asked per connection, 16 times the budget.
    rss_bounded(env, 4 * MiB, STUCK_READS, 1 * MiB)


# --- (e) SIGTERM -----------------------------------------------------------

def sigterm_keeps_writes(env, during_drain):
    """Acknowledged writes, four stuck clients (and, if @during_drain, a
    draining command sent), SIGTERM: exit status 0 and the writes are in
    the image."""
    d, qmp, _, sock = start(env)
    image = env.path('disk.raw')
    c = Client(sock)
    fua = os.urandom(MiB)
    c.pwrite(fua, 0, fua=True)
    flushed = os.urandom(MiB)
    c.pwrite(flushed, MiB)
    c.flush()
    stuck = stuck_clients(sock, 4)
    if during_drain:
        send_draining_command(qmp)
    d.proc.send_signal(signal.SIGTERM)
    d.wait(expect_rc=0)
    assert_no_sanitizer_report(d.stderr)
    with open(image, 'rb') as f:
        assert_eq(f.read(MiB) == fua, True, 'the FUA write is in the file')
        assert_eq(f.read(MiB) == flushed, True,
                  'the flushed write is in the file')
    for s in stuck:
        s.close()


@test
def test_sigterm_with_stuck_readers_keeps_acknowledged_writes(env):
    sigterm_keeps_writes(env, during_drain=False)


@test
def test_sigterm_during_a_drain_with_stuck_readers_keeps_writes(env):
    sigterm_keeps_writes(env, during_drain=True)


# --- (f) block-export-del mode=hard is heard ---------------------------------

@test
def test_hard_export_del_answered_while_a_drain_waits(env):
    d, qmp, qmp1, sock = start(env)
    stuck = stuck_clients(sock, 2)
    jobs = Jobs(qmp1)
    with failing_daemon(d, 'block-export-del while a drain waits'):
        send_draining_command(qmp)
        deleted, = pipeline(qmp1, [('block-export-del',
                                    {'id': 'exp0', 'mode': 'hard'})])
        draining_command_reply(qmp)
        assert_eq(deleted.get('return'), {}, 'block-export-del mode=hard')
        jobs.wait('BLOCK_EXPORT_DELETED', id='exp0')
        for s in stuck:
            s.client.wait_closed('a stuck client after block-export-del '
                                 'mode=hard')
    assert_eq(qmp.cmd('query-block-exports'), [], 'exports left')
    quit_cleanly(d, qmp)


if __name__ == '__main__':
    main()
