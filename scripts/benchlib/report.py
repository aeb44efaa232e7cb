# SPDX-License-Identifier: GPL-2.0-or-later
"""The markdown report: tables per group, extras, and the issue 7 targets.
A mixin of Bench (benchlib.runner), which holds the rows it reports."""

import os
import platform
import shlex
import subprocess
import time

from .results import (GRAPH_CHANGE_PAUSE, GRAPH_PHASES, KIB, MIB, Cell, fmt, fmt_iops,
                      fmt_spread, median, percentile, table)
from .servers import CLK_TCK

# Peers: what the ratio column compares against.
PEERS = ('qsd', 'qemu-nbd', 'nbdkit')
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


class Report:

    def report(self, argv):
        out = [f'# blockd benchmark: {"smoke run" if self.smoke else "results"}',
               '']
        out += self.report_setup(argv)
        groups = []
        for cell in self.cells:
            if cell.group not in groups:
                groups.append(cell.group)
        for group in groups:
            out += ['', f'## {group}', '', self.cell_table(
                [c for c in self.cells if c.group == group])]
        out += self.report_extras()
        out += self.report_targets()
        notes = [n for s in self.servers for n in s.notes]
        notes += [n for r in self.rows.values() for n in r.notes]
        notes += self.backend_notes()
        if notes:
            out += ['', '## Notes', ''] + [f'- {n}' for n in dict.fromkeys(notes)]
        return '\n'.join(out) + '\n'

    def report_setup(self, argv):
        cpu = 'unknown'
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
        with open('/proc/meminfo') as f:
            mem_kib = int(f.readline().split()[1])
        lines = [
            f'- Command: `{shlex.join(argv)}`',
            f'- Date: {time.strftime("%Y-%m-%d %H:%M %Z")}',
            f'- Machine: {os.cpu_count()} CPUs ({cpu}), '
            f'{mem_kib / MIB:.1f} GiB RAM, Linux {platform.release()}; '
            f'load average {self.load_start[0]:.2f} at the start, '
            f'{os.getloadavg()[0]:.2f} at the end, '
            f'{(time.monotonic() - self.t_start) / 60:.0f} min',
            f'- Image: {self.size // MIB} MiB raw, preallocated with data, '
            f'in {self.args.dir} ({fs_type(self.args.dir)})',
            f'- fio: nbd engine over a UNIX socket, one connection per job; '
            f'{self.runtime} s per run, {self.repeat} run(s) per cell, '
            f'servers alternating; median (min–max)',
            f'- Versions: {self.versions()}',
            '', '### Servers', '',
            table(['server', 'command (file backend; null: see notes)'],
                  [[s.name, f'`{s.describe("file")}`']
                   for s in self.servers]),
        ]
        return lines

    def versions(self):
        parts = []
        commands = {'fio': ['fio', '--version'],
                    'qemu-storage-daemon': ['qemu-storage-daemon',
                                            '--version'],
                    'qemu-nbd': ['qemu-nbd', '--version'],
                    'nbdkit': ['nbdkit', '--version']}
        if self.blockd:
            commands['blockd'] = [self.blockd, '--version']
        for name, argv in commands.items():
            try:
                r = subprocess.run(argv, capture_output=True, text=True,
                                   timeout=10)
                first = (r.stdout or r.stderr).strip().splitlines()[0]
            except (OSError, IndexError, subprocess.TimeoutExpired):
                continue
            parts.append(first)
        rev = git_revision()
        if rev:
            parts.append(f'blockd tree {rev}')
        return '; '.join(parts)

    def peer_best(self, cell, key):
        best = None
        for s in self.servers:
            if s.name in PEERS:
                row = self.rows.get((cell.name, s.name))
                v = median([getattr(x, key) for x in row.samples]) if row else None
                if v is not None and (best is None or v > best[0]):
                    best = (v, s.name)
        return best

    def cell_table(self, cells):
        seq = cells[0].sequential
        key = 'mibs' if seq else 'iops'
        header = ['cell', 'server',
                  'MiB/s' if seq else 'IOPS', 'mean lat µs', 'p99 lat µs',
                  'server CPU µs/IO', 'vs best peer']
        rows = []
        for cell in cells:
            best = self.peer_best(cell, key)
            first = True
            for s in self.servers:
                row = self.rows.get((cell.name, s.name))
                if row is None:
                    continue
                name = cell.name if first else ''
                first = False
                label = row.label or s.label(cell.backend)
                if not row.samples:
                    rows.append([name, label, row.status or 'no runs',
                                 '', '', '', ''])
                    continue
                values = [getattr(x, key) for x in row.samples]
                ratio = '—'
                if best:
                    ratio = f'{median(values) / best[0]:.2f}×'
                rows.append([
                    name, label,
                    fmt_spread(values, fmt if seq else fmt_iops),
                    fmt(median([x.lat_mean_us for x in row.samples])),
                    fmt(median([x.lat_p99_us for x in row.samples])),
                    fmt(median([x.cpu_us_per_io for x in row.samples])),
                    ratio])
        return table(header, rows)

    def extra_rows(self, extra):
        """(server, row) for an extra measurement, in server order."""
        for s in self.servers:
            row = self.rows.get((extra, s.name))
            if row is not None:
                yield s, row

    def report_extras(self):
        out = []
        if 'extra/rss' in self.extra_names:
            rows = []
            for s, row in self.extra_rows('extra/rss'):
                if not row.samples:
                    rows.append([row.label or s.label('file'), row.status, ''])
                    continue
                idle = [x['idle_kib'] / KIB for x in row.samples]
                conns = [x['conns_kib'] / KIB for x in row.samples
                         if x['conns_kib'] is not None]
                rows.append([row.label, fmt_spread(idle, fmt),
                             fmt_spread(conns, fmt) if conns
                             else f'skipped: {self.python_nbd}'])
            out += ['', '## Memory', '',
                    f'RSS of the server process (VmRSS), file backend; '
                    f'{self.args.connections} connections opened with libnbd, '
                    'each after one 4k read.', '',
                    table(['server', 'idle RSS MiB',
                           f'RSS with {self.args.connections} connections MiB'],
                          rows)]
        if 'extra/startup' in self.extra_names:
            rows = []
            for s, row in self.extra_rows('extra/startup'):
                if not row.samples:
                    rows.append([row.label or s.label('file'), row.status])
                    continue
                rows.append([row.label, fmt_spread(
                    [x['seconds'] * 1000 for x in row.samples], fmt)])
            out += ['', '## Start-up', '',
                    'From exec to the QMP greeting on a monitor listed last: '
                    'iothread, file node (io_uring, O_DIRECT), raw node, '
                    'no NBD server.', '',
                    table(['server', 'start-up ms'], rows)]
        if 'extra/qmp-nodes' in self.extra_names:
            rows = []
            for s, row in self.extra_rows('extra/qmp-nodes'):
                if not row.samples:
                    rows.append([row.label or s.label('file'), row.status,
                                 '', '', '', ''])
                    continue
                x = row.samples[0]
                rows.append([row.label, str(x['nodes']),
                             fmt(x['add_seconds'] * 1000),
                             fmt(x['p50'] * 1000), fmt(x['p99'] * 1000),
                             fmt(x['reply_bytes'] / KIB)])
            out += ['', '## QMP with many nodes', '',
                    f'{self.args.qmp_nodes} null-co nodes added with '
                    'blockdev-add, then query-named-block-nodes '
                    f'{10 if self.smoke else 100} times.', '',
                    table(['server', 'nodes', 'adding them ms',
                           'query p50 ms', 'query p99 ms', 'reply KiB'],
                          rows)]
        if 'extra/graph-change' in self.extra_names:
            out += self.report_graph_change()
        return out

    def report_graph_change(self):
        rows = []
        for s in self.servers:
            for phase in GRAPH_PHASES:
                row = self.rows.get((f'extra/graph-change/{phase}', s.name))
                if row is None:
                    continue
                label = row.label or s.label('file')
                if not row.samples:
                    rows.append([label, phase, row.status, '', '', '', '',
                                 ''])
                    continue
                x = row.samples[0]
                lat = x['latencies']
                outcome = []
                if x['errors']:
                    outcome += [f'{k} failed: {v}'
                                for k, v in x['errors'].items()]
                if x['lost_in']:
                    outcome.append(f'connection lost in {x["lost_in"]}')
                if x.get('death'):
                    outcome.append(f'server died: {x["death"]}')
                rows.append([
                    label, phase, fmt_iops(x['iops']), fmt(x['stall_ms']),
                    str(len(lat)) if phase != 'baseline' else '—',
                    fmt(percentile(lat, 50) * 1000) if lat else '—',
                    fmt(percentile(lat, 99) * 1000) if lat else '—',
                    '; '.join(outcome) or 'ok'])
        return ['', '## Graph changes under load', '',
                f'4k randrw 70/30, QD32, one connection, '
                f'{self.graph_runtime()} s per phase, each on a fresh '
                'server.  baseline: the load alone.  add-del: one QMP client '
                'loops blockdev-add of a read-only raw node over file0 and '
                'blockdev-del of it.  set-iothread: it loops '
                'x-blockdev-set-iothread (force=true) of the exported node '
                f'to io1 and back to io0.  Commands '
                f'{GRAPH_CHANGE_PAUSE * 1000:.0f} ms apart.  Stall: the '
                'longest gap between I/O completions (fio completion log, '
                '1 ms resolution).', '',
                table(['server', 'phase', 'IOPS', 'longest stall ms',
                       'QMP commands', 'QMP p50 ms', 'QMP p99 ms',
                       'outcome'], rows)]

    def report_targets(self):
        """The issue's targets against what this run measured."""
        lines = []

        def med(cell_name, server, key):
            row = self.rows.get((cell_name, server))
            if not row or not row.samples:
                return None
            return median([getattr(x, key) if not isinstance(x, dict)
                           else x.get(key) for x in row.samples])

        blockd = next((s for s in self.servers if s.name == 'blockd'), None)
        why_not = (blockd.unavailable if blockd and blockd.unavailable
                   else 'not measured')

        def status(ok, text):
            if ok is None:
                return f'{why_not}'
            return ('met' if ok else 'missed') + f': {text}'

        def ratio(a, b):
            return a / b if a is not None and b else None

        for backend, goal_qsd in (('file', 1.5), ('null', 1.2)):
            for rw in ('randread', 'randwrite'):
                name = Cell(backend, rw, 4 * KIB, 32, 1).name
                r_qsd = ratio(med(name, 'blockd', 'iops'),
                              med(name, 'qsd', 'iops'))
                text = f'{fmt(r_qsd)}× QSD' if r_qsd else ''
                ok = None if r_qsd is None else r_qsd >= goal_qsd
                goal = f'≥ {goal_qsd}× QSD'
                if backend == 'file':
                    r_ceil = ratio(med(name, 'blockd', 'iops'),
                                   med(name, 'io_uring', 'iops'))
                    goal += ', ≥ 70% of io_uring'
                    if r_ceil is not None and ok is not None:
                        ok = ok and r_ceil >= 0.7
                        text += f', {r_ceil * 100:.0f}% of io_uring'
                lines.append([f'{name}', goal, status(ok, text)])
        for rw in ('randread', 'randwrite'):
            cell = Cell('file', rw, 4 * KIB, 32, 4)
            best = self.peer_best(cell, 'iops')
            r = ratio(med(cell.name, 'blockd-mq', 'iops'),
                      best[0] if best else None)
            lines.append([f'{cell.name}, multiqueue', '≥ 1.5× best peer',
                          status(None if r is None else r >= 1.5,
                                 f'{fmt(r)}× {best[1] if best else ""}')])
        for rw in ('read', 'write'):
            cell = Cell('file', rw, MIB, 8, 1)
            best = self.peer_best(cell, 'mibs')
            r = ratio(med(cell.name, 'blockd', 'mibs'),
                      best[0] if best else None)
            lines.append([cell.name, '≥ 1.0× best peer',
                          status(None if r is None else r >= 1.0,
                                 f'{fmt(r)}× {best[1] if best else ""}')])
        ratios = []
        for cell in self.cells:
            r = ratio(med(cell.name, 'blockd', 'cpu_us_per_io'),
                      med(cell.name, 'qsd', 'cpu_us_per_io'))
            if r is not None:
                ratios.append((r, cell.name))
        worst = max(ratios) if ratios else None
        lines.append(['server CPU per I/O, every cell', '≤ 0.6× QSD',
                      status(None if worst is None else worst[0] <= 0.6,
                             f'median {fmt(median([r for r, _ in ratios]))}×'
                             f', worst {fmt(worst[0])}× in {worst[1]}'
                             if worst else '')])
        r = ratio(med('extra/rss', 'blockd', 'idle_kib'),
                  med('extra/rss', 'qsd', 'idle_kib'))
        lines.append(['idle RSS', '≤ QSD',
                      status(None if r is None else r <= 1.0,
                             f'{fmt(r)}× QSD')])
        worst_p99, worst_stall, complete = None, None, True
        for phase in GRAPH_PHASES[1:]:
            row = self.rows.get((f'extra/graph-change/{phase}', 'blockd'))
            x = row.samples[0] if row and row.samples else None
            if not x or not x['latencies'] or x['stall_ms'] is None:
                complete = False
                continue
            worst_p99 = max(worst_p99 or 0, percentile(x['latencies'], 99))
            worst_stall = max(worst_stall or 0, x['stall_ms'])
        ok = None
        text = ''
        if complete and worst_p99 is not None:
            ok = worst_p99 < 0.010 and worst_stall < 20
            text = (f'QMP p99 {fmt(worst_p99 * 1000)} ms, stall '
                    f'{fmt(worst_stall)} ms (worst phase)')
        lines.append(['graph changes under 4k QD32 load',
                      'QMP p99 < 10 ms, no stall > 20 ms', status(ok, text)])
        return ['', '## Targets (issue 7)', '',
                table(['target', 'goal', 'this run'], lines)]

    def backend_notes(self):
        notes = []
        names = {s.name for s in self.servers}
        if any(c.backend == 'null' for c in self.cells):
            notes.append('Null backend: blockd and qemu-storage-daemon export '
                         'a null-co node (read-zeroes=on); qemu-nbd serves '
                         'null-co through --image-opts; nbdkit uses its null '
                         'plugin (reads return zeroes, writes are dropped).  '
                         'The ceiling has no null row.')
        if 'nbdkit' in names:
            notes.append("nbdkit's file plugin has no O_DIRECT: cache=none "
                         'evicts the pages it read or wrote from the page '
                         'cache (fadvise, sync_file_range) instead.')
        notes.append('Server CPU µs/IO: utime+stime of the server process '
                     'from /proc/PID/stat across the fio run (start-up '
                     f'excluded), at {CLK_TCK} ticks per second, divided by '
                     'the I/Os fio completed.  The client (fio) shares the '
                     'same CPUs.')
        notes.append('vs best peer: the median against the best median of '
                     'qemu-storage-daemon, qemu-nbd and nbdkit in that cell.')
        return notes

    def smoke_check(self):
        """Smoke mode: every row has numbers (a peer that crashed in a
        cell, which is not a problem in a full run, is one here)."""
        for (name, server_name), row in self.rows.items():
            if not row.samples:
                self.problems.append(f'{name} {server_name}: no numbers '
                                     f'({row.status})')


def fs_type(path):
    try:
        r = subprocess.run(['findmnt', '-n', '-o', 'FSTYPE', '-T', path],
                           capture_output=True, text=True, timeout=10)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip()
        r = subprocess.run(['stat', '-f', '-c', '%T', path],
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip() or 'unknown filesystem'
    except OSError:
        return 'unknown filesystem'


def git_revision():
    try:
        r = subprocess.run(['git', '-C', ROOT, 'describe', '--always',
                            '--dirty'], capture_output=True, text=True,
                           timeout=10)
    except OSError:
        return None
    return r.stdout.strip() or None
