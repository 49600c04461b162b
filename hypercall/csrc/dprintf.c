/*
 * The variadic console print of the hypercall interface.  Stable Rust cannot
 * define a C-variadic function, so its body lives here; the exported symbol
 * rumpuser_dprintf is a Rust trampoline that jumps here with every argument
 * register and the stack untouched.
 */
#include <stdarg.h>
#include <stdio.h>

/* Set by src/trace.rs when RUMPUSER_TRACE is on; then calls are counted. */
__attribute__((visibility("hidden"))) int rumpuser__trace_on;
__attribute__((visibility("hidden"))) unsigned long long rumpuser__dprintf_calls;

__attribute__((visibility("hidden"))) void
rumpuser__dprintf_impl(const char *fmt, ...)
{
	va_list ap;

	if (__atomic_load_n(&rumpuser__trace_on, __ATOMIC_RELAXED))
		__atomic_fetch_add(&rumpuser__dprintf_calls, 1, __ATOMIC_RELAXED);
	if (fmt == NULL)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}
