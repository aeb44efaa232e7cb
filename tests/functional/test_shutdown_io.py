#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A signal during I/O shuts down cleanly and loses nothing acknowledged:
an NBD client keeps many writes in flight on an iothread export, the daemon
gets SIGTERM (or quit), exits 0, and every write the server acknowledged is
in the image file, with and without cache.direct."""

import os
import random
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import libnbd, main, nbd_available, skip, test  # noqa: E402
from nbdserver import NbdDaemon  # noqa: E402

BLOCK = 4096
IMAGE_BLOCKS = 4096             # 16 MiB
IN_FLIGHT = 64


def start_daemon(env, direct):
    image = env.make_image(size=IMAGE_BLOCKS * BLOCK)
    srv = NbdDaemon(env, [f'driver=file,node-name=file0,filename={image},'
                          f'cache.direct={"on" if direct else "off"}'],
                    'file0', iothread='io0', iothreads=('io0',))
    return srv.daemon, image, srv.uri


def write_until_stopped(env, direct, stop):
    """Keep IN_FLIGHT writes going; call @stop(daemon) after a while.
    Returns {block: set of acceptable pattern bytes} and the number of
    acknowledgements.  A block must hold its last acknowledged pattern, or
    the pattern of a later write whose reply never came: NBD allows a write
    the server did not acknowledge to have happened, or not."""
    nbd = libnbd()
    if not nbd_available(env):
        skip('this blockd has no NBD server')
    d, image, uri = start_daemon(env, direct)
    h = nbd.NBD()
    h.connect_uri(uri)
    rng = random.Random(1234)
    acked = {}
    unacked = []                # (block, byte) that got no ack
    acks = 0
    pending = {}                # cookie -> (block, byte)
    issued = 0
    stopped = False
    while True:
        while not stopped and len(pending) < IN_FLIGHT:
            block = rng.randrange(IMAGE_BLOCKS)
            byte = issued % 251 + 1
            if any(b == block for b, _ in pending.values()):
                continue        # one write per block in flight: no ambiguity
            cookie = h.aio_pwrite(bytes([byte]) * BLOCK, block * BLOCK)
            pending[cookie] = (block, byte)
            issued += 1
            if issued == 2000:
                stop(d)
                stopped = True
        if not pending:
            break
        try:
            h.poll(-1)
        except nbd.Error:
            unacked.extend(pending.values())    # the server went away
            break
        for cookie in list(pending):
            try:
                done = h.aio_command_completed(cookie)
            except nbd.Error:
                unacked.append(pending.pop(cookie))    # failed: no ack
                continue
            if done:
                block, byte = pending.pop(cookie)
                acked[block] = byte
                acks += 1
    try:
        h.shutdown()
    except nbd.Error:
        pass
    d.wait(expect_rc=0)
    acceptable = {block: {byte} for block, byte in acked.items()}
    for block, byte in unacked:
        if block in acceptable:
            acceptable[block].add(byte)
    return image, acceptable, acks


def check_image(image, acceptable):
    with open(image, 'rb') as f:
        for block, patterns in acceptable.items():
            f.seek(block * BLOCK)
            data = f.read(BLOCK)
            ok = any(data == bytes([b]) * BLOCK for b in patterns)
            assert ok, (f'block {block}: expected one of '
                        f'{sorted(hex(b) for b in patterns)}, found '
                        f'{data[:8].hex()}...')


def sigterm(d):
    d.proc.send_signal(signal.SIGTERM)


@test
def test_sigterm_during_io_keeps_acknowledged_writes(env):
    image, acked, acks = write_until_stopped(env, direct=False, stop=sigterm)
    # Everything acknowledged before the signal, at least.
    assert acks >= 2000 - IN_FLIGHT, f'only {acks} acknowledged'
    check_image(image, acked)


@test
def test_sigterm_during_direct_io_keeps_acknowledged_writes(env):
    image, acked, _ = write_until_stopped(env, direct=True, stop=sigterm)
    check_image(image, acked)


@test
def test_quit_during_io_keeps_acknowledged_writes(env):
    def quit(d):
        env.qmp().cmd('quit')
    image, acked, _ = write_until_stopped(env, direct=False, stop=quit)
    check_image(image, acked)


if __name__ == '__main__':
    main()
