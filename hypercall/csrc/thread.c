/*
 * Thread start trampoline for rumpuser_thread_create: the new thread names
 * itself (one prctl, instead of the creator writing /proc/.../comm) and
 * then runs the kernel's function.  It is C, not Rust, because the kernel
 * thread may leave through rumpuser_thread_exit(), i.e. pthread_exit(),
 * whose forced unwind must pass only through plain C frames.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

struct rumpuser__thrstart {
	void *(*f)(void *);
	void *arg;
	char name[16];
};

__attribute__((visibility("hidden"))) void *
rumpuser__thread_start(void *v)
{
	struct rumpuser__thrstart ts;

	memcpy(&ts, v, sizeof(ts));
	free(v);
	if (ts.name[0] != '\0')
		(void)prctl(PR_SET_NAME, ts.name, 0, 0, 0);
	return ts.f(ts.arg);
}
