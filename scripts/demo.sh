#!/usr/bin/env bash
# The main job on the built-in defaults: an ext2 image made by mke2fs,
# served by rump_server, files written through it, rump.halt, and the image
# checked by e2fsck and read back with debugfs.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
BIN=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release}
dir=$(mktemp -d "${TMPDIR:-/tmp}/rump-demo.XXXXXX")
cleanup() {
	[ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
export RUMP_SERVER="unix://$dir/sock"
img=$dir/disk.img

echo "== mke2fs -t ext2 $img 32M"
mke2fs -q -F -t ext2 -b 4096 "$img" 32M

echo "== rump_server -d key=/dk,hostpath=$img,size=host $RUMP_SERVER"
"$BIN/rump_server" -d "key=/dk,hostpath=$img,size=host" "$RUMP_SERVER"
pid=$(pgrep -n -f "rump_server -d key=/dk,hostpath=$img" || true)

echo "== writing through the server"
"$BIN/rumpctl" mkdir /mnt
"$BIN/rumpctl" mount /dk /mnt
printf 'hello from a rump kernel\n' > "$dir/hello.txt"
head -c 3000000 /dev/urandom > "$dir/random.bin"
"$BIN/rumpctl" mkdir -p /mnt/demo/deep/er
"$BIN/rumpctl" put "$dir/hello.txt" /mnt/demo/hello.txt
"$BIN/rumpctl" put "$dir/random.bin" /mnt/demo/deep/er/random.bin
"$BIN/rumpctl" ls -l /mnt/demo /mnt/demo/deep/er
"$BIN/rumpctl" cat /mnt/demo/hello.txt
if debugfs -R 'cat /demo/deep/er/random.bin' "$img" 2>/dev/null | cmp -s - "$dir/random.bin"; then
	echo "unexpected: the image already holds the data before the halt"
else
	echo "the image does not hold the data yet (write-back cache)"
fi

echo "== rump.halt"
"$BIN/rump_halt"
if [ -n "$pid" ]; then
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
	if kill -0 "$pid" 2>/dev/null; then echo "server still running"; exit 1; fi
fi
test ! -e "$dir/sock"
echo "server exited; socket removed"

echo "== e2fsck -fn $img"
e2fsck -fn "$img"
echo "== debugfs reads back every byte"
debugfs -R 'cat /demo/hello.txt' "$img" 2>/dev/null | cmp - "$dir/hello.txt"
debugfs -R 'cat /demo/deep/er/random.bin' "$img" 2>/dev/null | cmp - "$dir/random.bin"
echo "OK: the image is clean and holds every byte written"
