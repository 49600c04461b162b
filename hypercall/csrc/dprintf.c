/*
 * The variadic console print of the hypercall interface.  Stable Rust cannot
 * define a C-variadic function, so its body lives here; the exported symbol
 * rumpuser_dprintf is a Rust trampoline that jumps here with every argument
 * register and the stack untouched.
 */
#include <stdarg.h>
#include <stdio.h>

__attribute__((visibility("hidden"))) void
rumpuser__dprintf_impl(const char *fmt, ...)
{
	va_list ap;

	if (fmt == NULL)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}
