/*
 * A small shared object with NetBSD-style link sets, for the
 * rumpuser_dl_bootstrap test.  Built as librumpdltest.so by tests/capi.rs.
 */
#include <stddef.h>

struct modinfo {
	int mi_version;
	const char *mi_name;
};

struct rump_component {
	int rc_type;
	const char *rc_name;
};

static const struct modinfo mod_a = { 1, "dltest_mod_a" };
static const struct modinfo mod_b = { 1, "dltest_mod_b" };
static const struct rump_component comp_x = { 7, "dltest_comp_x" };

/* One entry per pointer, as NetBSD's __link_set_add_rodata lays them out. */
__attribute__((section("link_set_modules"), used))
static const void *const ls_mod_a = &mod_a;
__attribute__((section("link_set_modules"), used))
static const void *const ls_mod_b = &mod_b;
__attribute__((section("link_set_rump_components"), used))
static const void *const ls_comp_x = &comp_x;

/* Keep the linker-provided bounds defined in this object. */
extern const void *const __start_link_set_modules[];
extern const void *const __stop_link_set_modules[];
extern const void *const __start_link_set_rump_components[];
extern const void *const __stop_link_set_rump_components[];

size_t
rumpdltest_nmodules(void)
{
	return (size_t)(__stop_link_set_modules - __start_link_set_modules);
}

size_t
rumpdltest_ncomponents(void)
{
	return (size_t)(__stop_link_set_rump_components -
	    __start_link_set_rump_components);
}

int
rumpdltest_symbol(void)
{
	return 42;
}
