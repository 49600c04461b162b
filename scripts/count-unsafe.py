#!/usr/bin/env python3
# Count unsafe code per crate: `unsafe {` blocks, `unsafe fn` items,
# `unsafe impl`s and raw `libc::name(` calls in each crate's src/, leaving
# out test code (files named tests.rs, and a trailing `#[cfg(test)] mod`)
# and comments.  The crates are the workspace members listed in the
# top-level Cargo.toml, plus fuzz/ (a workspace of its own), so a crate
# added to the workspace is counted without editing this script.
# Usage: scripts/count-unsafe.py [WORKSPACE_DIR]

import os, re, sys, tomllib

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
with open(os.path.join(root, 'Cargo.toml'), 'rb') as f:
    ws = tomllib.load(f)['workspace']
crates = sorted(set(ws['members']) | {e for e in ws.get('exclude', []) if os.path.isfile(os.path.join(root, e, 'Cargo.toml'))})


def source_dirs(c):
    # A crate's own code: src/, and fuzz/'s targets (it has no src/).
    return [d for d in (os.path.join(root, c, 'src'), os.path.join(root, c, 'fuzz_targets')) if os.path.isdir(d)]


grand = {'blk': 0, 'fn': 0, 'impl': 0, 'libc': 0}
for c in crates:
    tot = {'blk': 0, 'fn': 0, 'impl': 0, 'libc': 0}
    for top in source_dirs(c):
        for dp, _, fs in os.walk(top):
            for f in fs:
                if not f.endswith('.rs') or f == 'tests.rs':
                    continue
                lines = open(os.path.join(dp, f)).read().split('\n')
                # drop #[cfg(test)] mod ... to end of file (test modules are at file ends)
                for i, l in enumerate(lines):
                    if l.strip() == '#[cfg(test)]' and i + 1 < len(lines) and re.match(r'\s*(pub )?mod \w+', lines[i + 1]):
                        lines = lines[:i]
                        break
                for l in lines:
                    s = l.split('//')[0]
                    tot['blk'] += len(re.findall(r'unsafe \{', s))
                    tot['fn'] += len(re.findall(r'unsafe (extern "C" )?fn [A-Za-z_]', s))
                    tot['impl'] += len(re.findall(r'unsafe impl', s))
                    tot['libc'] += len(re.findall(r'libc::[a-z_0-9]+\(', s))
    for k in grand:
        grand[k] += tot[k]
    print(f"{c:11s} unsafe{{={tot['blk']:4d} unsafe fn={tot['fn']:4d} unsafe impl={tot['impl']:3d} "
          f"total={sum(v for k, v in tot.items() if k != 'libc'):4d} libc::calls={tot['libc']:4d}")
print(f"{'all':11s} unsafe{{={grand['blk']:4d} unsafe fn={grand['fn']:4d} unsafe impl={grand['impl']:3d} "
      f"total={sum(v for k, v in grand.items() if k != 'libc'):4d} libc::calls={grand['libc']:4d}")
