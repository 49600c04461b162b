#!/usr/bin/env bash
# The main job on the built-in defaults: start a server on a drive, write
# files through it, halt it with rump.halt, and check the host image.
set -euo pipefail
BIN=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release}
dir=$(mktemp -d "${TMPDIR:-/tmp}/rump-demo.XXXXXX")
trap 'kill $(cat "$dir/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$dir"' EXIT
export RUMP_SERVER="unix://$dir/sock"
img=$dir/disk.img

echo "== rump_server -d key=/dk,hostpath=$img,size=16m $RUMP_SERVER"
"$BIN/rump_server" -d "key=/dk,hostpath=$img,size=16m" "$RUMP_SERVER"
pgrep -f "rump_server -d key=/dk,hostpath=$img" > "$dir/pid" || true

echo "== writing through the server"
printf 'hello from a rump kernel\n' > "$dir/hello.txt"
"$BIN/rumpctl" mkdir /tmp
"$BIN/rumpctl" put "$dir/hello.txt" /tmp/hello.txt
"$BIN/rumpctl" ls -l /tmp
"$BIN/rumpctl" cat /tmp/hello.txt
head -c 1048576 /dev/urandom > "$dir/pattern"
"$BIN/rumpctl" put "$dir/pattern" /dk
if cmp -s -n 1048576 "$dir/pattern" "$img"; then
	echo "unexpected: the image already holds the data before the halt"
else
	echo "the image does not hold the data yet (write-back cache)"
fi

echo "== rump.halt"
"$BIN/rump_halt"
for _ in $(seq 50); do kill -0 "$(cat "$dir/pid")" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$(cat "$dir/pid")" 2>/dev/null; then echo "server still running"; exit 1; fi
test ! -e "$dir/sock" && echo "server exited; socket removed"

echo "== checking the image"
cmp -n 1048576 "$dir/pattern" "$img" && echo "image holds every byte written: OK"
