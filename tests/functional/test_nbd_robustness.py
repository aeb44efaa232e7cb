#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The NBD server survives clients that come and go, stall, flood it or
send garbage: each bad connection is closed on its own, a well-behaved
client is served throughout, and the daemon exits cleanly at the end.

    test_nbd_robustness.py [--server=blockd|qsd] [TEST ...]

--server=qsd runs the same checks against qemu-storage-daemon (7.2 fails
the connect/disconnect test: it aborts when a client leaves an iothread
export; its other exports run in the main loop for that reason).  The
environment variable BLOCKD_TEST_SERVER does the same.  Waits are bounded
polls; the only waits on the clock are for the handshake timeout, which
is the behaviour under test.
"""

import os
import random
import socket
import struct
import threading
import time

from harness import QMP, assert_eq, libnbd, main, test, test_seed
from nbdserver import (SERVER, NbdDaemon, check_server, raw_over_file,
                       server_binary)
from nbdraw import (CLOSE_TIMEOUT, CMD_CACHE, CMD_DISC, CMD_FLUSH, CMD_READ,
                    CMD_WRITE, IHAVEOPT, OPT_EXPORT_NAME, OPT_GO, OPT_INFO,
                    OPT_LIST, OPT_STRUCTURED_REPLY, REP_ACK, REP_ERR_UNSUP,
                    REP_SERVER, REQUEST_MAGIC, Closed, RawClient)

nbd = libnbd()

MiB = 1024 * 1024
IMAGE_SIZE = 64 * MiB
# The good client's region: garbage never writes there.
GOOD_OFFSET = 48 * MiB
GOOD_SIZE = 8 * MiB


def serve(env, nbd_opts='', qsd_iothread=False):
    """The server under test exporting a fresh 64 MiB image as 'disk',
    raw over a file node (io_uring, O_DIRECT), from iothread io0."""
    image = env.make_image(size=IMAGE_SIZE)
    blockdevs = raw_over_file(image, ',aio=io_uring,cache.direct=on')
    return NbdDaemon(env, blockdevs, iothread='io0', qsd_iothread=qsd_iothread,
                     iothreads=('io0',), nbd_opts=nbd_opts,
                     binary=server_binary())


def check_serves(srv, what):
    """The daemon is up and serves a new client and QMP."""
    srv.check_alive(what)
    h = srv.connect()
    data = os.urandom(4096)
    h.pwrite(data, GOOD_OFFSET - 4096)
    assert h.pread(4096, GOOD_OFFSET - 4096) == data, what
    h.shutdown()
    qmp = QMP(srv.env.path('qmp.sock'))
    exports = qmp.cmd('query-block-exports')
    qmp.close()
    assert_eq([e['id'] for e in exports], ['exp0'], f'exports ({what})')


# --- A client that must be served throughout ---------------------------------


class GoodClient(threading.Thread):
    """Writes and reads back its own region in a loop, in a thread."""

    def __init__(self, uri):
        super().__init__(daemon=True)
        self.handle = nbd.NBD()
        self.handle.connect_uri(uri)
        self.rounds = 0
        self.error = None
        self.stopping = threading.Event()
        self.random = random.Random('good client')

    def run(self):
        try:
            while not self.stopping.is_set():
                offset = GOOD_OFFSET + self.random.randrange(
                    0, GOOD_SIZE // 4096 - 16) * 4096
                data = self.random.randbytes(16 * 4096)
                self.handle.pwrite(data, offset)
                if self.handle.pread(len(data), offset) != data:
                    raise AssertionError(f'good client: data at {offset}')
                self.rounds += 1
        except Exception as e:
            self.error = e

    def check_progress(self, what, timeout=CLOSE_TIMEOUT):
        """It completed another round (bounded wait)."""
        start = self.rounds
        deadline = time.monotonic() + timeout
        while self.rounds == start and self.error is None and \
                time.monotonic() < deadline:
            time.sleep(0.001)
        if self.error is not None:
            raise AssertionError(f'good client failed ({what}): '
                                 f'{self.error}')
        if self.rounds == start:
            raise AssertionError(f'good client stalled ({what})')

    def finish(self):
        self.stopping.set()
        self.join(CLOSE_TIMEOUT * 3)
        assert not self.is_alive(), 'good client did not finish'
        if self.error is not None:
            raise AssertionError(f'good client failed: {self.error}')
        self.handle.shutdown()


# --- Connect and disconnect --------------------------------------------------


@test
def test_connect_disconnect_1000(env):
    """1000 clients come and go against an iothread export, in four ways:
    clean (NBD_CMD_DISC), abrupt after I/O, mid-handshake, right after GO."""
    srv = serve(env, qsd_iothread=True)
    good = GoodClient(srv.uri)
    good.start()
    for i in range(1000):
        way = i % 4
        if way == 0:
            h = srv.connect()
            h.pread(4096, 0)
            h.shutdown()
            del h
        elif way == 1:
            h = srv.connect()
            h.pwrite(b'\x01' * 4096, 4096 * (i % 1024))
            del h           # closes the socket without NBD_CMD_DISC
        elif way == 2:
            c = RawClient(srv.sock)
            c.greeting()
            c.close()
        else:
            c = RawClient(srv.sock)
            c.handshake()
            c.close()
        if i % 100 == 99:
            srv.check_alive(f'after {i + 1} connections')
            good.check_progress(f'after {i + 1} connections')
    good.finish()
    check_serves(srv, 'after 1000 connections')
    srv.stop()


@test
def test_half_open_handshakes(env):
    """Clients that stop half-way through the handshake and then close."""
    srv = serve(env)
    good = GoodClient(srv.uri)
    good.start()
    opt_go = struct.pack('>QII', IHAVEOPT, OPT_GO, 10) + \
        struct.pack('>I', 4) + b'disk' + struct.pack('>H', 0)
    steps = [
        ('connect only', lambda c: None),
        ('half the client flags', lambda c: (c.greeting(),
                                             c.send(b'\0\0'))),
        ('flags only', lambda c: (c.greeting(), c.client_flags())),
        ('half an option header', lambda c: (c.greeting(), c.client_flags(),
                                             c.send(opt_go[:7]))),
        ('half of GO', lambda c: (c.greeting(), c.client_flags(),
                                  c.send(opt_go[:20]))),
    ]
    # Many at once, held open together, then closed together.
    clients = []
    for what, step in steps * 10:
        c = RawClient(srv.sock)
        step(c)
        clients.append(c)
    good.check_progress('with half-open handshakes')
    for c in clients:
        c.close()
    # And one at a time, with our side shut for writing: the server sees
    # EOF mid-handshake and must close.
    for what, step in steps:
        c = RawClient(srv.sock)
        step(c)
        c.sock.shutdown(socket.SHUT_WR)
        c.wait_closed(what)
        c.close()
        good.check_progress(what)
    good.finish()
    check_serves(srv, 'after half-open handshakes')
    srv.stop()


@test
def test_idle_handshakes_dropped(env):
    if SERVER == 'qsd':
        # QSD 7.2 (with the CVE-2024-7409 fix) has the 10 s limit, fixed.
        timeout = 10
        srv = serve(env)
    else:
        timeout = 1
        srv = serve(env, nbd_opts=f',handshake-max-seconds={timeout}')
    good = GoodClient(srv.uri)      # connected: the timeout is not for it
    good.start()
    opt_go = struct.pack('>QII', IHAVEOPT, OPT_GO, 10)
    idle = [
        ('idle after connecting', lambda c: None),
        ('idle after the greeting', lambda c: c.greeting()),
        ('idle after the flags', lambda c: (c.greeting(), c.client_flags())),
        ('idle in an option', lambda c: (c.greeting(), c.client_flags(),
                                         c.send(opt_go))),
        ('idle after an option', lambda c: (c.greeting(), c.client_flags(),
                                            c.option(OPT_STRUCTURED_REPLY),
                                            c.option_reply())),
    ]
    clients = []
    start = time.monotonic()
    for what, step in idle:
        c = RawClient(srv.sock)
        step(c)
        clients.append((what, c))
    # A client that finished its handshake is never timed out.
    done = RawClient(srv.sock)
    done.handshake()
    for what, c in clients:
        c.wait_closed(what, timeout=timeout + CLOSE_TIMEOUT)
        c.close()
    elapsed = time.monotonic() - start
    assert elapsed >= timeout * 0.9, f'dropped after {elapsed:.2f} s'
    good.check_progress('after the idle clients were dropped')
    done.request(CMD_READ, 0, 4096)
    assert_eq(done.reply(4096), (0, bytes(4096)), 'the finished handshake')
    done.close()
    good.finish()
    check_serves(srv, 'after idle handshakes')
    srv.stop()


@test
def test_max_connections(env):
    srv = serve(env, nbd_opts=',max-connections=2')
    first, second = srv.connect(), srv.connect()
    # A third is refused: closed, not left waiting.
    extra = RawClient(srv.sock)
    extra.wait_closed('the client over max-connections')
    extra.close()
    for h in (first, second):
        h.pwrite(b'\x07' * 4096, 0)
        assert_eq(h.pread(4096, 0), b'\x07' * 4096, 'a counted client')
    # When one leaves, a new one gets in (the server notices the leaving
    # asynchronously: poll, bounded).
    first.shutdown()
    del first
    deadline = time.monotonic() + CLOSE_TIMEOUT
    while True:
        try:
            third = srv.connect()
            break
        except nbd.Error:
            if time.monotonic() > deadline:
                raise AssertionError('no slot freed after a client left')
            time.sleep(0.01)
    assert_eq(third.pread(4096, 0), b'\x07' * 4096, 'the new client')
    for h in (second, third):
        h.shutdown()
    check_serves(srv, 'after max-connections')
    srv.stop()


# --- Garbage -----------------------------------------------------------------


def garbage_cases(r):
    """(phase, what, action(RawClient)): each leaves the connection either
    closed by the server or shut for writing by us."""
    def shut(c):
        c.sock.shutdown(socket.SHUT_WR)

    def flags(c):
        c.greeting()
        c.client_flags()

    cases = []
    # Before the magic: garbage in place of the client flags.
    for n in [1, 3, 4, 5, 64, 4096, 100000]:
        data = r.randbytes(n)
        cases.append(('before the magic', f'{n} random bytes',
                      lambda c, d=data: (c.send(d), shut(c))))
    cases.append(('before the magic', 'unknown client flags',
                  lambda c: (c.greeting(), c.send(b'\xff\xff\xff\xff'))))
    # During option haggling.
    for n in [1, 8, 19, 20, 4096, 100000]:
        data = r.randbytes(n)
        cases.append(('options', f'{n} random bytes',
                      lambda c, d=data: (flags(c), c.send(d), shut(c))))
    cases += [
        ('options', 'bad option magic',
         lambda c: (flags(c), c.send(struct.pack('>QII', 0x1234567890abcdef,
                                                 OPT_GO, 0)))),
        ('options', 'option length 4 GiB - 1',
         lambda c: (flags(c), c.send(struct.pack('>QII', IHAVEOPT, OPT_GO,
                                                 0xffffffff)), shut(c))),
        ('options', 'unknown option, length 4 GiB - 1',
         lambda c: (flags(c), c.send(struct.pack('>QII', IHAVEOPT,
                                                 0x7fff1234, 0xffffffff)),
                    shut(c))),
        ('options', 'export name of 100000 bytes',
         lambda c: (flags(c), c.option(OPT_GO, struct.pack('>I', 100000) +
                                       b'd' * 100000 + b'\0\0'), shut(c))),
        ('options', 'name longer than the option',
         lambda c: (flags(c), c.option(OPT_GO, struct.pack('>I', 1000) +
                                       b'disk' + b'\0\0'), shut(c))),
        ('options', 'truncated option payload',
         lambda c: (flags(c), c.send(struct.pack('>QII', IHAVEOPT, OPT_GO,
                                                 16) + b'\0' * 8), shut(c))),
        ('options', 'EXPORT_NAME of an unknown export',
         lambda c: (flags(c), c.option(OPT_EXPORT_NAME, b'nope'))),
    ]
    for i in range(20):
        opts = b''.join(struct.pack('>QII', IHAVEOPT, r.randrange(1 << 32),
                                    n) + r.randbytes(n)
                        for n in (r.randrange(0, 300) for _ in range(5)))
        cases.append(('options', f'random options #{i}',
                      lambda c, o=opts: (flags(c), c.send(o), shut(c))))
    # During transmission.
    def go(c):
        c.handshake()

    for n in [1, 27, 28, 29, 4096, 100000]:
        data = r.randbytes(n)
        cases.append(('transmission', f'{n} random bytes',
                      lambda c, d=data: (go(c), c.send(d), shut(c))))
    cases += [
        ('transmission', 'bad request magic',
         lambda c: (go(c), c.request(CMD_READ, 0, 4096,
                                     magic=0xdeadbeef))),
        ('transmission', 'truncated request header',
         lambda c: (go(c), c.send(struct.pack('>IHHQQI', REQUEST_MAGIC, 0,
                                              CMD_READ, 1, 0, 4096)[:14]),
                    shut(c))),
        ('transmission', 'truncated write payload',
         lambda c: (go(c), c.request(CMD_WRITE, 0, 65536,
                                     payload=b'\xee' * 10000), shut(c))),
        ('transmission', 'write payload of 4 GiB - 1 announced',
         lambda c: (go(c), c.request(CMD_WRITE, 0, 0xffffffff,
                                     payload=b'\xee' * 10000), shut(c))),
        ('transmission', 'requests, then garbage',
         lambda c: (go(c), c.request(CMD_READ, 0, 4096),
                    c.request(CMD_FLUSH), c.send(r.randbytes(100)),
                    shut(c))),
    ]
    return cases


def run_garbage_case(srv, phase, what, action):
    c = RawClient(srv.sock)
    try:
        action(c)
    except (BrokenPipeError, ConnectionResetError, Closed):
        pass                # the server closed first: fine
    c.wait_closed(f'{phase}: {what}')
    c.close()


@test
def test_garbage_at_every_phase(env):
    r = random.Random(test_seed())
    srv = serve(env)
    # The bytes the truncated writes would have put at offset 0.
    h = srv.connect()
    h.pwrite(b'\x5a' * 65536, 0)
    h.shutdown()
    good = GoodClient(srv.uri)
    good.start()
    for phase, what, action in garbage_cases(r):
        run_garbage_case(srv, phase, what, action)
        srv.check_alive(f'{phase}: {what}')
        good.check_progress(f'{phase}: {what}')
    good.finish()
    h = srv.connect()
    assert_eq(h.pread(65536, 0), b'\x5a' * 65536,
              'a truncated write changed nothing')
    h.shutdown()
    check_serves(srv, 'after the garbage')
    srv.stop()


@test
def test_garbage_in_parallel(env):
    """The same bad clients, eight at a time, several rounds."""
    r = random.Random(test_seed())
    srv = serve(env)
    good = GoodClient(srv.uri)
    good.start()
    cases = garbage_cases(r) * 4
    r.shuffle(cases)
    failures = []

    def worker(mine):
        for phase, what, action in mine:
            try:
                run_garbage_case(srv, phase, what, action)
            except Exception as e:
                failures.append(f'{phase}: {what}: {e}')

    threads = [threading.Thread(target=worker, args=(cases[i::8],))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CLOSE_TIMEOUT * len(cases))
    assert not any(t.is_alive() for t in threads), 'a bad client hangs'
    assert not failures, failures
    srv.check_alive('after parallel garbage')
    good.check_progress('after parallel garbage')
    good.finish()
    check_serves(srv, 'after parallel garbage')
    srv.stop()


@test
def test_bad_requests_keep_the_connection(env):
    """Well-framed requests the server must refuse, on one connection that
    stays in step throughout: unknown commands and flags, reads past the
    end or too long, commands not negotiated."""
    r = random.Random('bad requests')
    srv = serve(env)
    c = RawClient(srv.sock)
    size, _ = c.handshake()
    assert_eq(size, IMAGE_SIZE, 'size')
    cases = [(99, 0, 0, 4096), (CMD_READ, 1 << 15, 0, 4096),
             (CMD_READ, 0, size, 4096), (CMD_READ, 0, size - 1, 2),
             (CMD_READ, 0, 0, 32 * MiB + 1), (CMD_READ, 0, 1 << 63, 1),
             (7, 0, 0, 4096),       # BLOCK_STATUS without a meta context
             (CMD_CACHE, 0, size, 4096)]
    for _ in range(200):
        cmd = r.choice([CMD_READ, CMD_FLUSH, CMD_CACHE, 8, 11, 0xffff])
        cases.append((cmd, r.choice([0, 0, 1 << r.randrange(16)]),
                      r.choice([0, r.randrange(size), r.randrange(1 << 64)]),
                      r.choice([0, r.randrange(1 << 20),
                                r.randrange(1 << 32)])))
    for cmd, flags, offset, length in cases:
        what = f'request {cmd} flags {flags:#x} offset {offset} len {length}'
        c.request(cmd, offset, length, flags)
        error, data = c.reply(length if cmd == CMD_READ else 0)
        # Flags 0-5 are known (FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO,
        # PAYLOAD_LEN), some not valid on every command: no claim on those.
        known = cmd in (CMD_READ, CMD_FLUSH, CMD_CACHE)
        if not known or flags >= 1 << 6:
            assert error != 0, f'{what}: accepted'
        elif cmd != CMD_FLUSH and offset + length > size:
            assert error != 0, f'{what}: accepted'
        elif cmd == CMD_READ and length > 32 * MiB:
            assert error != 0, f'{what}: accepted'
        elif flags == 0 and 0 < length <= 32 * MiB and cmd != CMD_FLUSH:
            assert_eq(error, 0, what)
    # Still in step: a good read.
    c.request(CMD_READ, 0, 4096)
    assert_eq(c.reply(4096), (0, bytes(4096)), 'after bad requests')
    c.request(CMD_DISC)
    c.wait_closed('after NBD_CMD_DISC')
    c.close()
    check_serves(srv, 'after bad requests')
    srv.stop()


@test
def test_unknown_option_goes_on(env):
    srv = serve(env)
    c = RawClient(srv.sock)
    c.greeting()
    c.client_flags()
    for opt in [0x7fff1234, 4, 0x12, 0xffffffff]:
        c.option(opt, b'some payload')
        got_opt, rtype, _ = c.option_reply()
        assert_eq((got_opt, rtype), (opt, REP_ERR_UNSUP), f'option {opt:#x}')
    c.option(OPT_LIST)
    names = []
    while True:
        _, rtype, data = c.option_reply()
        if rtype == REP_ACK:
            break
        assert_eq(rtype, REP_SERVER, 'LIST reply')
        (n,) = struct.unpack('>I', data[:4])
        names.append(data[4:4 + n])
    assert_eq(names, [b'disk'], 'LIST')
    size, _ = c.go()
    assert_eq(size, IMAGE_SIZE, 'size after the unknown options')
    c.request(CMD_READ, 0, 512)
    assert_eq(c.reply(512), (0, bytes(512)), 'read')
    c.close()
    srv.stop()


@test
def test_oversized_options_go_on(env):
    """Options with more data than the server takes get an error reply
    (the server skips their data) and the handshake goes on."""
    srv = serve(env)
    c = RawClient(srv.sock)
    c.greeting()
    c.client_flags()
    name = b'd' * 5000          # longer than any string may be
    for opt, data in [(OPT_GO, struct.pack('>I', len(name)) + name +
                       b'\0\0'),
                      (OPT_INFO, struct.pack('>I', len(name)) + name +
                       b'\0\0'),
                      (OPT_LIST, b'x' * 100000),
                      (0x7fff1234, b'y' * 200000)]:
        c.option(opt, data)
        got_opt, rtype, _ = c.option_reply()
        assert_eq(got_opt, opt, 'reply to')
        assert rtype & (1 << 31), f'option {opt}: reply {rtype:#x}'
    size, _ = c.go()
    assert_eq(size, IMAGE_SIZE, 'size after the oversized options')
    c.request(CMD_READ, 0, 512)
    assert_eq(c.reply(512), (0, bytes(512)), 'read')
    c.close()
    srv.stop()


if __name__ == '__main__':
    check_server()
    main()
