#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Every write acknowledged as durable survives SIGKILL of blockd.

A python3-libnbd client keeps many single-block writes in flight on an
iothread export of a file.  Each block written is numbered and
checksummed: its header holds a magic number, the block's offset and the
write's sequence number, and the rest of the block is derived from those
two, so a block in the file says exactly which write put it there (and a
torn or misplaced block is caught).  Some writes carry FUA; the others are
made durable by a flush issued after their reply came.  A write counts as
durable once its FUA reply, or the reply to a flush issued after its
reply, has arrived.  At a random point blockd gets SIGKILL; then every
block of the file must hold its latest durable write, or a write to that
block issued later (NBD allows a write that was not acknowledged to have
happened, or not).  Writes to one block are never in flight together, so
"later" is well defined.  Several rounds per configuration restart blockd
on the same file.

    test_durability.py [TEST ...]   BLOCKD_TEST_SEED=N repeats a run

What this proves, and what it does not (docs/reliability.md): SIGKILL
kills the daemon, not the kernel, so the page cache survives it.  The test
proves that blockd acknowledges a write (FUA) or a flush only after the
data has been handed to the kernel in a way that the acknowledgement
promises, and that no acknowledged write is lost, reordered behind a later
one or torn inside the daemon (its queues, pools, io_uring or the thread
pool).  With cache.direct=off a write that reached the page cache survives
SIGKILL whether or not fdatasync() ran, so it cannot prove that a flush
reached the disk; that needs power-loss testing (a VM killed hard, or
dm-log-writes), which this test is not.
"""

import hashlib
import os
import random
import signal
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (libnbd, main, nbd_available, skip,  # noqa: E402
                     test, test_seed)
from nbdserver import NbdDaemon  # noqa: E402

nbd = libnbd()

BLOCK = 4096
IMAGE_BLOCKS = 2048             # 8 MiB: blocks are rewritten often
IN_FLIGHT = 32
ROUNDS = 3
MAGIC = 0x626c6f636b64      # "blockd"
HEADER = struct.Struct('>QQQ')  # magic, offset, sequence


def block_data(offset, seq):
    """The bytes write @seq puts at @offset."""
    header = HEADER.pack(MAGIC, offset, seq)
    fill = hashlib.sha256(header).digest()
    body = fill * ((BLOCK - HEADER.size) // len(fill) + 1)
    return header + body[:BLOCK - HEADER.size]


def decode_block(offset, data):
    """The sequence number of the write that left @data at @offset, 0 for
    a block never written (zeroes), or raise if it is neither."""
    if data == bytes(BLOCK):
        return 0
    magic, where, seq = HEADER.unpack_from(data)
    if magic != MAGIC or where != offset or data != block_data(where, seq):
        raise AssertionError(f'block at {offset}: not a block any write '
                             f'put there (torn or misplaced): '
                             f'{data[:32].hex()}...')
    return seq


def start_daemon(env, image, direct, aio):
    sock = env.path('nbd.sock')
    if os.path.exists(sock):
        os.unlink(sock)     # left by the killed daemon; the new one would
                            # replace it too, but the wait must not see it
    qmp = env.path('qmp.sock')
    if os.path.exists(qmp):
        os.unlink(qmp)
    srv = NbdDaemon(env, [f'driver=file,node-name=file0,filename={image},'
                          f'cache.direct={"on" if direct else "off"},'
                          f'aio={aio}'],
                    'file0', iothread='io0', iothreads=('io0',))
    return srv.daemon, srv.uri


class Writer:
    """The client side of one round: issues writes and flushes, tracks
    what is durable, and kills the daemon after @kill_after writes."""

    def __init__(self, rng, seq_base, durable, issued_after):
        self.rng = rng
        self.seq = seq_base
        # block -> seq of its latest durable write (or what the file held
        # at the start of the round: that is durable too)
        self.durable = durable
        # block -> seqs issued to it after its durable one, in order
        self.later = issued_after
        self.busy = set()           # blocks with a write in flight
        self.writes = {}            # cookie -> (block, seq, fua)
        self.flushes = {}           # cookie -> [(block, seq)] it covers
        self.completed = []         # non-FUA writes replied, not yet flushed
        self.stats = {'fua': 0, 'flushed': 0, 'flushes': 0}

    def make_durable(self, block, seq):
        if seq > self.durable.get(block, 0):
            self.durable[block] = seq
            self.later[block] = [s for s in self.later.get(block, [])
                                 if s > seq]

    def issue_write(self, h):
        block = self.rng.randrange(IMAGE_BLOCKS)
        while block in self.busy:
            block = self.rng.randrange(IMAGE_BLOCKS)
        self.seq += 1
        fua = self.rng.random() < 0.3
        flags = nbd.CMD_FLAG_FUA if fua else 0
        cookie = h.aio_pwrite(block_data(block * BLOCK, self.seq),
                              block * BLOCK, flags=flags)
        self.writes[cookie] = (block, self.seq, fua)
        self.busy.add(block)
        self.later.setdefault(block, []).append(self.seq)

    def maybe_flush(self, h):
        if self.completed and len(self.flushes) < 2 and \
                self.rng.random() < 0.15:
            cookie = h.aio_flush()
            self.flushes[cookie] = self.completed
            self.completed = []

    def reap(self, h):
        """Handle every reply that came.  A command that failed (the
        server went away) made nothing durable."""
        for cookie in list(self.writes):
            try:
                if not h.aio_command_completed(cookie):
                    continue
            except nbd.Error:
                self.writes.pop(cookie)
                continue
            block, seq, fua = self.writes.pop(cookie)
            self.busy.discard(block)
            if fua:
                self.make_durable(block, seq)
                self.stats['fua'] += 1
            else:
                self.completed.append((block, seq))
        for cookie in list(self.flushes):
            try:
                if not h.aio_command_completed(cookie):
                    continue
            except nbd.Error:
                self.flushes.pop(cookie)
                continue
            for block, seq in self.flushes.pop(cookie):
                self.make_durable(block, seq)
                self.stats['flushed'] += 1
            self.stats['flushes'] += 1

    def run(self, h, daemon, kill_after):
        issued = 0
        while True:
            while issued < kill_after and len(self.writes) < IN_FLIGHT:
                self.issue_write(h)
                issued += 1
                self.maybe_flush(h)
                if issued == kill_after:
                    daemon.proc.send_signal(signal.SIGKILL)
            dead = False
            try:
                h.poll(-1)
            except nbd.Error:
                dead = True
            self.reap(h)
            if dead or h.aio_is_dead() or h.aio_is_closed():
                return      # the daemon is gone: nothing more is durable
            assert self.writes or self.flushes or issued < kill_after, \
                'the daemon survived SIGKILL'
            self.maybe_flush(h)


def check_file(image, durable, later):
    """Every block holds its latest durable write or one issued after it;
    returns {block: seq found} for the next round."""
    found = {}
    with open(image, 'rb') as f:
        for block in range(IMAGE_BLOCKS):
            f.seek(block * BLOCK)
            seq = decode_block(block * BLOCK, f.read(BLOCK))
            ok = [durable.get(block, 0)] + later.get(block, [])
            if seq not in ok:
                raise AssertionError(
                    f'block {block}: holds write {seq}; its latest durable '
                    f'write is {durable.get(block, 0)}, later ones '
                    f'{later.get(block, [])}')
            found[block] = seq
    return found


def sigkill_rounds(env, direct, aio):
    if not nbd_available(env):
        skip('this blockd has no NBD server')
    rng = random.Random(test_seed())
    image = env.make_image(size=IMAGE_BLOCKS * BLOCK)
    durable = {}
    seq = 0
    for rnd in range(ROUNDS):
        d, uri = start_daemon(env, image, direct, aio)
        h = nbd.NBD()
        h.connect_uri(uri)
        kill_after = rng.randrange(500, 4000)
        w = Writer(rng, seq, durable, {})
        w.run(h, d, kill_after)
        d.wait(expect_rc=-signal.SIGKILL)
        del h
        found = check_file(image, w.durable, w.later)
        print(f'round {rnd}: killed after {kill_after} writes; '
              f'{w.stats["fua"]} FUA writes and {w.stats["flushed"]} '
              f'flushed by {w.stats["flushes"]} flushes were durable, '
              f'{sum(1 for s in found.values() if s)} blocks checked')
        assert w.stats['fua'] + w.stats['flushed'] > 0, \
            'nothing became durable: the test proved nothing'
        # What the file holds now is the starting point of the next round.
        durable = {b: s for b, s in found.items() if s}
        seq = w.seq


@test
def test_sigkill_direct_io_uring(env):
    sigkill_rounds(env, direct=True, aio='io_uring')


@test
def test_sigkill_direct_threads(env):
    sigkill_rounds(env, direct=True, aio='threads')


@test
def test_sigkill_cached_io_uring(env):
    sigkill_rounds(env, direct=False, aio='io_uring')


@test
def test_sigkill_cached_threads(env):
    sigkill_rounds(env, direct=False, aio='threads')


if __name__ == '__main__':
    main()
