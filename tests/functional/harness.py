#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Captive blockd for functional tests.

Each test gets a private temporary directory and owns the daemons it
starts: their sockets, pid files and images live in that directory, so
tests never race with each other or with a system daemon on ports or
paths.  A daemon is ready when its QMP socket accepts a connection; the
harness polls for that with a bounded number of tries and gives up with
the daemon's stderr if it exits first.  Teardown kills and reaps whatever
a test left running, and fails the test if a daemon it stopped did not
exit as expected.

QMP is spoken by scripts/blockctl's client class, loaded from the source
tree, so the tests exercise the same client users run.

Test scripts register functions with @test, call main(), and exit 0 if
every test passed, 1 if any failed, 77 if the whole script was skipped
(a tool is missing); they print "N passed, M failed" at the end.

Environment (set by meson): BLOCKD (the binary), BLOCKD_SOURCE_ROOT,
BLOCKD_BUILD_ROOT.
"""

import importlib.machinery
import importlib.util
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

EXIT_SKIP = 77

# Readiness: try to connect this many times, this far apart (10 s in all;
# ASan builds start slowly).
READY_TRIES = 1000
READY_INTERVAL = 0.01
# How long a stopped daemon may take to exit.
EXIT_TIMEOUT = 30


class SkipTest(Exception):
    """Raised to skip one test (or, before any test ran, the script)."""


def skip(reason):
    """Skip the whole script: a tool it needs is missing."""
    print(f'SKIP: {reason}')
    sys.exit(EXIT_SKIP)


def source_root():
    root = os.environ.get('BLOCKD_SOURCE_ROOT')
    if root:
        return root
    return os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))


def blockd_binary():
    path = os.environ.get('BLOCKD')
    if not path:
        path = os.path.join(source_root(), 'build', 'daemon', 'blockd')
    if not os.access(path, os.X_OK):
        skip(f'blockd binary not found at {path} (set BLOCKD)')
    return path


def blockd_version():
    """The project version from meson.build."""
    with open(os.path.join(source_root(), 'meson.build')) as f:
        for line in f:
            line = line.strip()
            if line.startswith('version:'):
                return line.split("'")[1]
    raise AssertionError('no version in meson.build')


_blockctl = None


def blockctl_module():
    """scripts/blockctl, imported as a module."""
    global _blockctl
    if _blockctl is None:
        path = os.path.join(source_root(), 'scripts', 'blockctl')
        if not os.path.exists(path):
            skip(f'{path} is missing')
        loader = importlib.machinery.SourceFileLoader('blockctl', path)
        spec = importlib.util.spec_from_loader('blockctl', loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        _blockctl = module
    return _blockctl


def libnbd():
    """python3-libnbd's module (import nbd); skip the script without it."""
    try:
        import nbd
    except ImportError:
        skip('python3-libnbd is not installed (import nbd)')
    return nbd


def qsd_binary():
    """qemu-storage-daemon, the daemon blockd is compared with; skip the
    test (SkipTest) if it is not installed."""
    path = shutil.which('qemu-storage-daemon')
    if not path:
        raise SkipTest('qemu-storage-daemon is not installed')
    return path


def require_program(name):
    path = shutil.which(name)
    if not path:
        skip(f'{name} is not installed')
    return path


# --- QMP --------------------------------------------------------------------

class QMPError(Exception):
    """A QMP command failed: .error_class and .desc as on the wire."""

    def __init__(self, error_class, desc):
        super().__init__(f'{error_class}: {desc}')
        self.error_class = error_class
        self.desc = desc


class QMP:
    """A negotiated QMP connection, through blockctl's client class."""

    def __init__(self, path, negotiate=True):
        module = blockctl_module()
        self.client = module.QMPClient(path, timeout=EXIT_TIMEOUT)
        self.greeting = self.client.greeting
        if negotiate:
            self.cmd('qmp_capabilities')

    def cmd_raw(self, name, args=None):
        """The whole response object."""
        return self.client.execute_raw(name, args)

    def cmd(self, command, /, **args):
        """The return value, or QMPError.  Keys may use '_' for '-'.
        (@command is positional-only, so that an argument may be called
        'name', as block-export-add's is.)"""
        args = {k.replace('_', '-'): v for k, v in args.items()}
        resp = self.cmd_raw(command, args or None)
        if 'error' in resp:
            raise QMPError(resp['error']['class'], resp['error']['desc'])
        return resp['return']

    def event(self, name, timeout=EXIT_TIMEOUT):
        """Wait for event @name (earlier events are kept); its message."""
        return self.client.wait_event(name, timeout)

    def job_statuses(self, job_id, last='null'):
        """The statuses JOB_STATUS_CHANGE events give job @job_id, in
        order, up to and including @last (waited for, as event())."""
        seen = []
        while not seen or seen[-1] != last:
            ev = self.event('JOB_STATUS_CHANGE')
            if ev['data']['id'] == job_id:
                seen.append(ev['data']['status'])
        return seen

    def close(self):
        self.client.close()


# --- Daemons ----------------------------------------------------------------

def _die_with_parent():
    """In the child, before exec: SIGKILL when the test process dies, so
    that a test killed by its runner (a timeout, a closed pipe) leaves no
    daemon behind.  (The signal is not inherited across fork: a daemon
    that daemonizes itself is not affected.)"""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Daemon:
    """One captive blockd (or qemu-storage-daemon) process."""

    def __init__(self, test_dir, args, binary=None, env=None):
        self.test_dir = test_dir
        self.args = list(args)
        self.binary = binary or blockd_binary()
        self.env = env
        self.proc = None
        self.stdout = None
        self.stderr = None
        self._out = None
        self._err = None

    def start(self):
        self._out = tempfile.TemporaryFile(dir=self.test_dir)
        self._err = tempfile.TemporaryFile(dir=self.test_dir)
        self.proc = subprocess.Popen([self.binary] + self.args,
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=self._err,
                                     cwd=self.test_dir, env=self.env,
                                     preexec_fn=_die_with_parent)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def _collect(self):
        if self._err is not None:
            self._out.seek(0)
            self._err.seek(0)
            self.stdout = self._out.read().decode(errors='replace')
            self.stderr = self._err.read().decode(errors='replace')
            self._out.close()
            self._err.close()
            self._out = self._err = None

    def read_stderr(self):
        """stderr so far (the daemon may still be running)."""
        if self._err is None:
            return self.stderr
        self._err.seek(0)
        return self._err.read().decode(errors='replace')

    def wait_socket(self, path):
        """Poll until @path accepts connections; fail if the daemon exits."""
        for _ in range(READY_TRIES):
            if self.proc.poll() is not None:
                self._collect()
                raise AssertionError(
                    f'{self.binary} exited with {self.proc.returncode} '
                    f'before {path} was ready: {self.stderr.strip()}')
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                try:
                    s.connect(path)
                except (FileNotFoundError, ConnectionRefusedError):
                    time.sleep(READY_INTERVAL)
                    continue
                self._close_probe(s)
                return
        raise AssertionError(f'{path} not ready after '
                             f'{READY_TRIES * READY_INTERVAL:.0f} s')

    @staticmethod
    def _close_probe(s):
        """
        Hang up the readiness probe and read until the server closes its
        end too.  The probe counts as a connection until then: a test of
        max-connections=1 that connected at once could be refused.  Both
        blockd servers give the slot back before they close the socket,
        so after EOF it is free.  A server that never closes is not
        waited for past the bound.
        """
        s.shutdown(socket.SHUT_WR)
        s.settimeout(READY_TRIES * READY_INTERVAL)
        try:
            while s.recv(4096):
                pass
        except (socket.timeout, ConnectionResetError):
            pass

    def wait_pidfile(self, path):
        """Poll until @path holds our pid: start-up is complete."""
        want = f'{self.proc.pid}\n'
        for _ in range(READY_TRIES):
            if self.proc.poll() is not None:
                self._collect()
                raise AssertionError(
                    f'{self.binary} exited with {self.proc.returncode}: '
                    f'{self.stderr.strip()}')
            try:
                with open(path) as f:
                    if f.read() == want:
                        return
            except FileNotFoundError:
                pass
            time.sleep(READY_INTERVAL)
        raise AssertionError(f'{path} does not hold {want.strip()}')

    def wait(self, expect_rc=0, timeout=EXIT_TIMEOUT):
        """Reap the daemon and check its exit status."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f'daemon did not exit within {timeout} s')
        self._collect()
        if expect_rc is not None and self.proc.returncode != expect_rc:
            raise AssertionError(
                f'daemon exited with {self.proc.returncode}, expected '
                f'{expect_rc}; stderr: {self.stderr.strip()}')
        return self.proc.returncode

    def stop(self, sig=signal.SIGTERM, expect_rc=0):
        self.proc.send_signal(sig)
        return self.wait(expect_rc)

    def quit(self, qmp):
        """Send quit on @qmp; the daemon must then exit 0."""
        qmp.cmd('quit')
        return self.wait(expect_rc=0)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._collect()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None


class TestEnv:
    """What one test owns: a temporary directory and its daemons."""

    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix=f'blockd-{name[:20]}-')
        self.daemons = []
        self.clients = []

    def path(self, *names):
        return os.path.join(self.dir, *names)

    def daemon(self, args, binary=None, env=None):
        """Start a daemon (not waiting for anything)."""
        d = Daemon(self.dir, args, binary=binary, env=env).start()
        self.daemons.append(d)
        return d

    def monitor_args(self, name='qmp.sock', chardev='qmp0'):
        """The options for a QMP monitor on socket @name in the test dir."""
        return ['--chardev',
                f'socket,id={chardev},path={self.path(name)},'
                'server=on,wait=off',
                '--monitor', f'chardev={chardev}']

    def start(self, args, sock='qmp.sock', binary=None, env=None):
        """Start a daemon with a monitor on @sock and wait until ready.
        Another binary (qemu-storage-daemon) is waited for by its pid file:
        QSD's socket chardev can abort (tcp_chr_change_state: Assertion
        `s->state == TCP_CHARDEV_STATE_DISCONNECTED') when a client
        connects right after another left, which is what a connection
        probe followed by the test's QMP client does."""
        if binary and binary != blockd_binary():
            pidfile = self.path(f'{sock}.pid')
            d = self.daemon(args + self.monitor_args(sock) +
                            ['--pidfile', pidfile], binary=binary, env=env)
            d.wait_pidfile(pidfile)
            return d
        d = self.daemon(args + self.monitor_args(sock), binary=binary,
                        env=env)
        d.wait_socket(self.path(sock))
        return d

    def qmp(self, sock='qmp.sock', negotiate=True):
        client = QMP(self.path(sock), negotiate=negotiate)
        self.clients.append(client)
        return client

    def run(self, args, timeout=EXIT_TIMEOUT, binary=None):
        """Run blockd to completion (for options that exit at once)."""
        return subprocess.run([binary or blockd_binary()] + list(args),
                              stdin=subprocess.DEVNULL,
                              capture_output=True, text=True,
                              timeout=timeout, cwd=self.dir)

    def files(self):
        """What the test directory holds (daemon logs excluded)."""
        return sorted(os.listdir(self.dir))

    def make_image(self, name='disk.raw', size=64 * 1024 * 1024):
        path = self.path(name)
        with open(path, 'wb') as f:
            f.truncate(size)
        return path

    def finish(self):
        """After a test passed: stop what it left running, which must exit
        cleanly."""
        for d in self.daemons:
            if d.running:
                d.stop(signal.SIGTERM, expect_rc=0)

    def cleanup(self):
        for client in self.clients:
            try:
                client.close()
            except Exception:
                pass
        for d in self.daemons:
            d.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


# --- Randomness -------------------------------------------------------------

def test_seed():
    """The seed of a randomized test: BLOCKD_TEST_SEED, or a new one; it
    is printed, so that a failing run can be repeated."""
    seed = int(os.environ.get('BLOCKD_TEST_SEED', '0')) or \
        random.randrange(1, 1 << 32)
    print(f'seed {seed} (BLOCKD_TEST_SEED={seed} repeats this run)')
    return seed


# --- Files ------------------------------------------------------------------

def read_file(path, offset=0, length=None):
    """@length bytes of the file @path from @offset (to its end if None)."""
    with open(path, 'rb') as f:
        f.seek(offset)
        return f.read(length)


# --- Assertions -------------------------------------------------------------

def assert_eq(actual, expected, what=''):
    if actual != expected:
        raise AssertionError(f'{what + ": " if what else ""}'
                             f'expected {expected!r}, got {actual!r}')


def assert_in(needle, haystack, what=''):
    if needle not in haystack:
        raise AssertionError(f'{what + ": " if what else ""}'
                             f'{needle!r} not in {haystack!r}')


def assert_fails(result, message, env=None):
    """@result (env.run) failed with exit 1 and exactly @message on stderr."""
    assert_eq(result.stderr, message + '\n', 'stderr')
    assert_eq(result.returncode, 1, 'exit status')
    assert_eq(result.stdout, '', 'stdout')
    if env is not None:
        assert_eq(env.files(), [], 'files left behind')


def assert_qmp_error(fn, desc=None, error_class='GenericError'):
    try:
        fn()
    except QMPError as e:
        assert_eq(e.error_class, error_class, 'error class')
        if desc is not None:
            assert_eq(e.desc, desc, 'error desc')
        return e
    raise AssertionError('the command succeeded')


def nbd_available(env):
    """True if this blockd has nbd-server-start (asks a daemon)."""
    d = env.start([], sock='probe.sock')
    cmds = {c['name'] for c in env.qmp('probe.sock').cmd('query-commands')}
    d.stop()
    return 'nbd-server-start' in cmds


def node_summary(nodes):
    """query-named-block-nodes as {node-name: driver}."""
    return {n['node-name']: n['drv'] for n in nodes}


# --- Sanitizers and resources -------------------------------------------------

# The first line of every report of the sanitizers CI runs (ASan, LSan,
# UBSan, TSan), as they print it on stderr.
SANITIZER_MARKERS = ('ERROR: AddressSanitizer', 'ERROR: LeakSanitizer',
                     'WARNING: ThreadSanitizer', 'ERROR: ThreadSanitizer',
                     'runtime error: ')


def sanitizer_report(text, frames=8):
    """The first sanitizer report in @text (a daemon's stderr): its first
    line, then each stack's heading and top @frames frames; None if there
    is no report."""
    lines = (text or '').splitlines()
    for i, line in enumerate(lines):
        if any(m in line for m in SANITIZER_MARKERS):
            report = [line]
            depth = 0
            for more in lines[i + 1:]:
                if more.lstrip().startswith('#'):
                    depth += 1
                    if depth <= frames:
                        report.append(more)
                    continue
                depth = 0
                if more.startswith(('READ', 'WRITE', 'freed by',
                                    'previously', 'SUMMARY', '  Previous',
                                    '  Write of', '  Read of', '  Mutex')):
                    report.append(more)
                if more.startswith('SUMMARY'):
                    break
            return '\n'.join(report)
    return None


def assert_no_sanitizer_report(text, what='daemon stderr'):
    report = sanitizer_report(text)
    if report is not None:
        raise AssertionError(f'{what}: sanitizer report:\n{report}')


def rss_kib(pid):
    """Resident memory of process @pid (VmRSS), in KiB."""
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise AssertionError(f'no VmRSS for {pid}')


def peak_rss_kib(pid):
    """Peak resident memory of process @pid so far (VmHWM), in KiB."""
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    raise AssertionError(f'no VmHWM for {pid}')


def sanitized_binary(path):
    """True for an ASan or TSan build: RSS figures say nothing there
    (freed memory sits in the sanitizer's quarantine, shadow memory
    counts)."""
    with open(path, 'rb') as f:
        data = f.read()
    return b'__asan_init' in data or b'__tsan_init' in data


# --- Running tests ----------------------------------------------------------

_tests = []


def test(fn):
    """Register @fn(env) as a test."""
    _tests.append(fn)
    return fn


def main():
    passed = failed = skipped = 0
    only = sys.argv[1:]
    for fn in _tests:
        name = fn.__name__
        if only and name not in only:
            continue
        env = TestEnv(name)
        try:
            fn(env)
            env.finish()
        except SkipTest as e:
            skipped += 1
            print(f'SKIP {name}: {e}')
        except Exception:
            failed += 1
            print(f'FAIL {name}')
            traceback.print_exc(file=sys.stdout)
            for d in env.daemons:
                d.kill()
                if d.stderr:
                    print(f'  daemon stderr: {d.stderr.strip()}')
        else:
            passed += 1
            print(f'ok   {name}')
        finally:
            env.cleanup()
        sys.stdout.flush()
    print(f'{passed} passed, {failed} failed' +
          (f', {skipped} skipped' if skipped else ''))
    if failed:
        sys.exit(1)
    if passed == 0 and skipped:
        sys.exit(EXIT_SKIP)
    sys.exit(0)


def dump(obj):
    return json.dumps(obj, indent=2, sort_keys=True)
