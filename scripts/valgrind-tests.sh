#!/usr/bin/env bash
# Run the in-process test binaries of the kernel, the embedding API, the
# C ABI and the sysproxy server under valgrind's memcheck. Fails if a test
# fails or memcheck reports any error: an invalid read, write or free
# above all (also a use of uninitialised memory, which the binaries do
# not show either). Leaks are not checked (kernels and upcall tables are
# leaked on purpose).
#
#   kernel     rumpkern's unit tests and tests/kernel.rs (virtual CPUs,
#              lwps, local processes, mounts, the soundness probes)
#   embedding  tests/halt.rs's in-process kernels (rumprun::Rump:
#              embedded halt, four kernels in one process)
#   c-abi      hypercall/tests/capi.rs, with its C test kernels (children
#              loading librumpuser.so) traced too
#   sysproxy   hypercall/tests/sysproxy.rs (server, client library, raw
#              sockets; its re-run children are not traced)
#
# Takes about three minutes on two busy cores (the C ABI's ~50 child
# processes most of it).
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/valgrind
mkdir -p "$out"

# The test executables of `cargo test --no-run ARGS...`, one a line (not
# the programs built for them to run, which are outside deps/).
bins() {
	cargo test --no-run --message-format=json "$@" 2>/dev/null |
		grep -o '"executable":"[^"]*/deps/[^"]*"' |
		sed -e 's/^"executable":"//' -e 's/"$//'
}

fail=0
# run NAME EXE [valgrind options --] [test arguments]
run() {
	local name=$1 exe=$2
	shift 2
	local vg=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		vg+=("$1")
		shift
	done
	[ $# -gt 0 ] && shift
	local log="$out/$name.log"
	echo "valgrind: $name ($(basename "$exe") $*)"
	local rc=0
	valgrind -q --error-exitcode=99 --leak-check=no \
		--log-file="$log.%p" "${vg[@]}" \
		"$exe" --test-threads=2 "$@" >"$out/$name.out" 2>&1 || rc=$?
	cat "$log".* >"$log" 2>/dev/null || true
	rm -f "$log".*
	if grep -qE '^==[0-9]+== (Invalid (read|write|free)|Mismatched free|Source and destination overlap|Conditional jump|Use of uninitialised|Syscall param)' "$log"; then
		echo "valgrind: $name: memcheck errors:"
		grep -E '^==[0-9]+== [A-Z]' "$log" | sort | uniq -c | head -20
		fail=1
	fi
	if [ "$rc" -ne 0 ]; then
		echo "valgrind: $name: exit status $rc (99: memcheck errors)"
		tail -20 "$out/$name.out"
		fail=1
	fi
	grep -E '^test result' "$out/$name.out" || true
}

# Child processes the C ABI test starts that are not ours to check: the
# C compiler's pipeline.
skip='*/cc,*/gcc,*/gcc-*,*/cc1,*/as,*/collect2,*/ld,*/ld.bfd,*/ld.gold,*/lto-wrapper,*/readelf,*/nm,*/objdump,*/x86_64-linux-gnu-*'

# The stall detector's test measures how soon a watcher thread notices a
# sleeping CPU holder; valgrind runs one thread at a time, so its timing
# means nothing there (it runs, natively, with cargo test).
for exe in $(bins -p rumpkern --lib --test kernel); do
	run "kernel-$(basename "$exe")" "$exe" -- \
		--skip lockdebug::tests::blocking_with_a_cpu_is_reported_and_spinning_is_not
done
for exe in $(bins -p rumprun --test halt); do
	run embedding "$exe" -- embedded four_kernels
done
for exe in $(bins -p rumpuser --test capi); do
	run c-abi "$exe" --trace-children=yes --trace-children-skip="$skip" --
done
for exe in $(bins -p rumpuser --test sysproxy); do
	run sysproxy "$exe"
done

if [ "$fail" -ne 0 ]; then
	echo "valgrind: FAILED (logs in $out)"
	exit 1
fi
echo "valgrind: clean"
