/*
 * A pretend rump kernel for librumpuser.so: it installs counting upcalls
 * and drives the C ABI the way a kernel would.  One check per run:
 *
 *	hypertest NAME [ARG]
 *
 * prints "PASS NAME" and exits 0, or prints what failed and exits 1.
 * Driven by tests/capi.rs.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The rumpuser v17 interface, as this test uses it. */
struct lwp;
struct rumpuser_hyperup {
	void (*hyp_schedule)(void);
	void (*hyp_unschedule)(void);
	void (*hyp_backend_unschedule)(int, int *, void *);
	void (*hyp_backend_schedule)(int, void *);
	void (*hyp_lwproc_switch)(struct lwp *);
	void (*hyp_lwproc_release)(void);
	int (*hyp_lwproc_rfork)(void *, int, const char *);
	int (*hyp_lwproc_newlwp)(pid_t);
	struct lwp *(*hyp_lwproc_curlwp)(void);
	int (*hyp_syscall)(int, void *, long *);
	void (*hyp_lwpexit)(void);
	void (*hyp_execnotify)(const char *);
	pid_t (*hyp_getpid)(void);
	void *hyp__extra[8];
};
struct rumpuser_mtx;
struct rumpuser_rw;
struct rumpuser_cv;
struct rumpuser_iovec {
	void *iov_base;
	size_t iov_len;
};
typedef void (*rump_biodone_fn)(void *, size_t, int);

int rumpuser_init(int, const struct rumpuser_hyperup *);
int rumpuser_malloc(size_t, int, void **);
void rumpuser_free(void *, size_t);
int rumpuser_anonmmap(void *, size_t, int, int, void **);
void rumpuser_unmap(void *, size_t);
int rumpuser_open(const char *, int, int *);
int rumpuser_close(int);
int rumpuser_getfileinfo(const char *, uint64_t *, int *);
void rumpuser_bio(int, int, void *, size_t, int64_t, rump_biodone_fn, void *);
int rumpuser_iovread(int, struct rumpuser_iovec *, size_t, int64_t, size_t *);
int rumpuser_iovwrite(int, const struct rumpuser_iovec *, size_t, int64_t,
    size_t *);
int rumpuser_syncfd(int, int, uint64_t, uint64_t);
int rumpuser_clock_gettime(int, int64_t *, long *);
int rumpuser_clock_sleep(int, int64_t, long);
int rumpuser_getparam(const char *, void *, size_t);
void rumpuser_seterrno(int);
int rumpuser_kill(int64_t, int);
void rumpuser_exit(int);
void rumpuser_putchar(int);
void rumpuser_dprintf(const char *, ...);
int rumpuser_getrandom(void *, size_t, int, size_t *);
int rumpuser_thread_create(void *(*)(void *), void *, const char *, int,
    int, int, void **);
void rumpuser_thread_exit(void);
int rumpuser_thread_join(void *);
void rumpuser_curlwpop(int, struct lwp *);
struct lwp *rumpuser_curlwp(void);
void rumpuser_mutex_init(struct rumpuser_mtx **, int);
void rumpuser_mutex_enter(struct rumpuser_mtx *);
void rumpuser_mutex_enter_nowrap(struct rumpuser_mtx *);
int rumpuser_mutex_tryenter(struct rumpuser_mtx *);
void rumpuser_mutex_exit(struct rumpuser_mtx *);
void rumpuser_mutex_destroy(struct rumpuser_mtx *);
void rumpuser_mutex_owner(struct rumpuser_mtx *, struct lwp **);
void rumpuser_rw_init(struct rumpuser_rw **);
void rumpuser_rw_enter(int, struct rumpuser_rw *);
int rumpuser_rw_tryenter(int, struct rumpuser_rw *);
int rumpuser_rw_tryupgrade(struct rumpuser_rw *);
void rumpuser_rw_downgrade(struct rumpuser_rw *);
void rumpuser_rw_exit(struct rumpuser_rw *);
void rumpuser_rw_destroy(struct rumpuser_rw *);
void rumpuser_rw_held(int, struct rumpuser_rw *, int *);
void rumpuser_cv_init(struct rumpuser_cv **);
void rumpuser_cv_destroy(struct rumpuser_cv *);
void rumpuser_cv_wait(struct rumpuser_cv *, struct rumpuser_mtx *);
void rumpuser_cv_wait_nowrap(struct rumpuser_cv *, struct rumpuser_mtx *);
int rumpuser_cv_timedwait(struct rumpuser_cv *, struct rumpuser_mtx *,
    int64_t, int64_t);
void rumpuser_cv_signal(struct rumpuser_cv *);
void rumpuser_cv_broadcast(struct rumpuser_cv *);
void rumpuser_cv_has_waiters(struct rumpuser_cv *, int *);
typedef void (*rump_modinit_fn)(const void *const *, size_t);
typedef int (*rump_symload_fn)(void *, uint64_t, char *, uint64_t);
typedef void (*rump_compload_fn)(const void *);
void rumpuser_dl_bootstrap(rump_modinit_fn, rump_symload_fn,
    rump_compload_fn);
int rumpuser_daemonize_begin(void);
int rumpuser_daemonize_done(int);

#define OPEN_RDONLY	0x0000
#define OPEN_WRONLY	0x0001
#define OPEN_RDWR	0x0002
#define OPEN_CREATE	0x0004
#define OPEN_EXCL	0x0008
#define OPEN_BIO	0x0010
#define FT_OTHER	0
#define FT_DIR		1
#define FT_REG		2
#define FT_BLK		3
#define FT_CHR		4
#define BIO_READ	0x01
#define BIO_WRITE	0x02
#define BIO_SYNC	0x04
#define IOV_NOSEEK	(-1)
#define SYNCFD_READ	0x01
#define SYNCFD_WRITE	0x02
#define SYNCFD_BARRIER	0x04
#define SYNCFD_SYNC	0x08
#define CLOCK_RELWALL	0
#define CLOCK_ABSMONO	1
#define LWP_CREATE	0
#define LWP_DESTROY	1
#define LWP_SET		2
#define LWP_CLEAR	3
#define MTX_SPIN	0x01
#define MTX_KMUTEX	0x02
#define RW_READER	0
#define RW_WRITER	1
#define RUMPUSER_PANIC	(-1)

/* NetBSD errno values. */
#define NB_ENOENT	2
#define NB_EBADF	9
#define NB_EBUSY	16
#define NB_EEXIST	17
#define NB_EINVAL	22
#define NB_ERANGE	34
#define NB_ETIMEDOUT	60

static const char *testname;

#define CHECK(cond) do {						\
	if (!(cond)) {							\
		printf("FAIL %s: %s:%d: %s\n", testname, __FILE__,	\
		    __LINE__, #cond);					\
		fflush(stdout);						\
		exit(1);						\
	}								\
} while (0)

#define CHECK_EQ(a, b) do {						\
	long long _a = (long long)(a), _b = (long long)(b);		\
	if (_a != _b) {							\
		printf("FAIL %s: %s:%d: %s == %lld, expected %s == %lld\n", \
		    testname, __FILE__, __LINE__, #a, _a, #b, _b);	\
		fflush(stdout);						\
		exit(1);						\
	}								\
} while (0)

/*
 * Counting upcalls.  Counters are per host thread, so a check sees only
 * the upcalls its own thread made.
 */
static __thread int n_unsched, n_sched, n_sched_held, n_sched_free;
static __thread void *last_interlock;
static int n_newlwp;

static void
hyp_backend_unschedule(int nlocks, int *countp, void *interlock)
{
	(void)nlocks;
	n_unsched++;
	last_interlock = interlock;
	*countp = 3;	/* handed back to backend_schedule */
}

static void
hyp_backend_schedule(int nlocks, void *interlock)
{
	CHECK(nlocks == 3 || nlocks == 0);
	n_sched++;
	if (interlock != NULL) {
		/* Is the interlock mutex held while we take a CPU? */
		if (rumpuser_mutex_tryenter(interlock) == 0) {
			n_sched_free++;
			rumpuser_mutex_exit(interlock);
		} else {
			/*
			 * Busy: by us, or by another thread (the signaller may
			 * not have let go yet).  A kmutex knows its owner.
			 */
			struct lwp *o = NULL;

			rumpuser_mutex_owner(interlock, &o);
			if (o != NULL && o != rumpuser_curlwp())
				n_sched_free++;
			else
				n_sched_held++;
		}
	}
}

static void hyp_noop(void) {}

static int
hyp_newlwp(pid_t pid)
{
	(void)pid;
	__atomic_add_fetch(&n_newlwp, 1, __ATOMIC_SEQ_CST);
	return 0;
}

static struct rumpuser_hyperup hyp = {
	.hyp_schedule = hyp_noop,
	.hyp_unschedule = hyp_noop,
	.hyp_backend_unschedule = hyp_backend_unschedule,
	.hyp_backend_schedule = hyp_backend_schedule,
	.hyp_lwproc_newlwp = hyp_newlwp,
};

static void
boot(void)
{
	CHECK_EQ(rumpuser_init(17, &hyp), 0);
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
msleep(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void *
xthread(void *(*f)(void *), void *arg)
{
	pthread_t *pt = malloc(sizeof(*pt));

	CHECK(pt != NULL);
	CHECK_EQ(pthread_create(pt, NULL, f, arg), 0);
	return pt;
}

static void *
xjoin(void *pt)
{
	void *rv;

	CHECK_EQ(pthread_join(*(pthread_t *)pt, &rv), 0);
	free(pt);
	return rv;
}

/* ---- init ---- */

static void
t_init(void)
{
	CHECK_EQ(rumpuser_init(16, &hyp), NB_EINVAL);
	CHECK_EQ(rumpuser_init(18, &hyp), NB_EINVAL);
	CHECK_EQ(rumpuser_init(17, NULL), NB_EINVAL);
	CHECK_EQ(rumpuser_init(17, &hyp), 0);
}

/* ---- mutexes ---- */

struct holdarg {
	struct rumpuser_mtx *mtx;
	int holdms;
	volatile int held;
	int nowrap;
};

static void *
holder(void *v)
{
	struct holdarg *h = v;

	rumpuser_mutex_enter_nowrap(h->mtx);
	__atomic_store_n(&h->held, 1, __ATOMIC_SEQ_CST);
	msleep(h->holdms);
	rumpuser_mutex_exit(h->mtx);
	return NULL;
}

static void *
waiter(void *v)
{
	struct holdarg *h = v;

	if (h->nowrap)
		rumpuser_mutex_enter_nowrap(h->mtx);
	else
		rumpuser_mutex_enter(h->mtx);
	rumpuser_mutex_exit(h->mtx);
	return (void *)(intptr_t)(n_unsched * 1000 + n_sched);
}

static void
t_mutex_uncontended(void)
{
	struct rumpuser_mtx *m;
	int i;

	boot();
	rumpuser_mutex_init(&m, MTX_KMUTEX);
	for (i = 0; i < 10000; i++) {
		rumpuser_mutex_enter(m);
		rumpuser_mutex_exit(m);
	}
	CHECK_EQ(rumpuser_mutex_tryenter(m), 0);
	CHECK_EQ(rumpuser_mutex_tryenter(m), NB_EBUSY);
	rumpuser_mutex_exit(m);
	CHECK_EQ(n_unsched, 0);
	CHECK_EQ(n_sched, 0);
	rumpuser_mutex_destroy(m);
}

/*
 * Misuse that can only deadlock or corrupt: each must abort with a message
 * naming the lock (the Rust side checks the signal and the message).
 */
static void
t_misuse_mutex_reenter(void)
{
	struct rumpuser_mtx *m;

	boot();
	rumpuser_mutex_init(&m, MTX_KMUTEX);
	rumpuser_mutex_enter(m);
	rumpuser_mutex_enter(m);
}

static void
t_misuse_mutex_destroy_held(void)
{
	struct rumpuser_mtx *m;

	boot();
	rumpuser_mutex_init(&m, 0);
	rumpuser_mutex_enter(m);
	rumpuser_mutex_destroy(m);
}

static void
t_misuse_rw_write_twice(void)
{
	struct rumpuser_rw *rw;

	boot();
	rumpuser_rw_init(&rw);
	rumpuser_rw_enter(RW_WRITER, rw);
	rumpuser_rw_enter(RW_WRITER, rw);
}

static void
t_misuse_rw_write_then_read(void)
{
	struct rumpuser_rw *rw;

	boot();
	rumpuser_rw_init(&rw);
	rumpuser_rw_enter(RW_WRITER, rw);
	rumpuser_rw_enter(RW_READER, rw);
}

static void
t_mutex_contended(void)
{
	struct holdarg h = { .holdms = 200 };
	void *t1, *t2;
	intptr_t rv;

	boot();
	rumpuser_mutex_init(&h.mtx, MTX_KMUTEX);
	t1 = xthread(holder, &h);
	while (!__atomic_load_n(&h.held, __ATOMIC_SEQ_CST))
		msleep(1);
	t2 = xthread(waiter, &h);
	rv = (intptr_t)xjoin(t2);
	xjoin(t1);
	/* exactly one unschedule/schedule pair around the blocking lock */
	CHECK_EQ(rv, 1001);
	rumpuser_mutex_destroy(h.mtx);
}

static void
t_mutex_spin(void)
{
	struct holdarg h = { .holdms = 100 };
	void *t1, *t2;

	boot();
	/* a spin mutex never unschedules, even when it must wait */
	rumpuser_mutex_init(&h.mtx, MTX_SPIN | MTX_KMUTEX);
	t1 = xthread(holder, &h);
	while (!__atomic_load_n(&h.held, __ATOMIC_SEQ_CST))
		msleep(1);
	t2 = xthread(waiter, &h);
	CHECK_EQ((intptr_t)xjoin(t2), 0);
	xjoin(t1);
	rumpuser_mutex_destroy(h.mtx);

	/* and _nowrap on an adaptive mutex neither */
	h.held = 0;
	h.nowrap = 1;
	rumpuser_mutex_init(&h.mtx, MTX_KMUTEX);
	t1 = xthread(holder, &h);
	while (!__atomic_load_n(&h.held, __ATOMIC_SEQ_CST))
		msleep(1);
	t2 = xthread(waiter, &h);
	CHECK_EQ((intptr_t)xjoin(t2), 0);
	xjoin(t1);
	rumpuser_mutex_destroy(h.mtx);
}

static struct lwp *const LWP_A = (struct lwp *)0x1000;
static struct lwp *const LWP_B = (struct lwp *)0x2000;

static void *
owner_thread(void *v)
{
	struct rumpuser_mtx *m = v;
	struct lwp *l;

	rumpuser_curlwpop(LWP_SET, LWP_B);
	rumpuser_mutex_owner(m, &l);
	return l;
}

static void
t_kmutex_owner(void)
{
	struct rumpuser_mtx *m;
	struct lwp *l = (struct lwp *)1;

	boot();
	rumpuser_curlwpop(LWP_CREATE, LWP_A);
	rumpuser_curlwpop(LWP_SET, LWP_A);
	rumpuser_mutex_init(&m, MTX_KMUTEX);
	rumpuser_mutex_owner(m, &l);
	CHECK(l == NULL);
	rumpuser_mutex_enter(m);
	rumpuser_mutex_owner(m, &l);
	CHECK(l == LWP_A);
	/* another thread sees the same owner */
	CHECK(xjoin(xthread(owner_thread, m)) == LWP_A);
	rumpuser_mutex_exit(m);
	rumpuser_mutex_owner(m, &l);
	CHECK(l == NULL);
	CHECK_EQ(rumpuser_mutex_tryenter(m), 0);
	rumpuser_mutex_owner(m, &l);
	CHECK(l == LWP_A);
	rumpuser_mutex_exit(m);
	rumpuser_mutex_destroy(m);
	rumpuser_curlwpop(LWP_CLEAR, LWP_A);
	rumpuser_curlwpop(LWP_DESTROY, LWP_A);
}

/* ---- rwlocks ---- */

struct rwarg {
	struct rumpuser_rw *rw;
	int op;
	volatile int done;
};

static void *
rw_try(void *v)
{
	struct rwarg *a = v;
	int rv;

	rv = rumpuser_rw_tryenter(a->op, a->rw);
	if (rv == 0)
		rumpuser_rw_exit(a->rw);
	return (void *)(intptr_t)rv;
}

static void *
rw_held_writer(void *v)
{
	struct rwarg *a = v;
	int held;

	rumpuser_curlwpop(LWP_SET, LWP_B);
	rumpuser_rw_held(RW_WRITER, a->rw, &held);
	return (void *)(intptr_t)held;
}

static void *
rw_blocking_enter(void *v)
{
	struct rwarg *a = v;

	rumpuser_rw_enter(a->op, a->rw);
	__atomic_store_n(&a->done, 1, __ATOMIC_SEQ_CST);
	rumpuser_rw_exit(a->rw);
	return (void *)(intptr_t)(n_unsched * 1000 + n_sched);
}

static int
rw_try_other(struct rumpuser_rw *rw, int op)
{
	struct rwarg a = { rw, op, 0 };

	return (int)(intptr_t)xjoin(xthread(rw_try, &a));
}

static void
t_rwlock(void)
{
	struct rumpuser_rw *rw;
	struct rwarg a;
	void *t;
	int held;

	boot();
	rumpuser_curlwpop(LWP_SET, LWP_A);
	rumpuser_rw_init(&rw);

	/* shared: two readers, writers excluded */
	rumpuser_rw_enter(RW_READER, rw);
	CHECK_EQ(rumpuser_rw_tryenter(RW_READER, rw), 0);
	rumpuser_rw_held(RW_READER, rw, &held);
	CHECK_EQ(held, 2);
	rumpuser_rw_held(RW_WRITER, rw, &held);
	CHECK_EQ(held, 0);
	CHECK_EQ(rw_try_other(rw, RW_WRITER), NB_EBUSY);
	CHECK_EQ(rw_try_other(rw, RW_READER), 0);
	/* no upgrade with two readers */
	CHECK_EQ(rumpuser_rw_tryupgrade(rw), NB_EBUSY);
	rumpuser_rw_exit(rw);
	/* the only reader upgrades */
	CHECK_EQ(rumpuser_rw_tryupgrade(rw), 0);
	rumpuser_rw_held(RW_WRITER, rw, &held);
	CHECK_EQ(held, 1);
	rumpuser_rw_held(RW_READER, rw, &held);
	CHECK_EQ(held, 0);
	CHECK_EQ(rw_try_other(rw, RW_READER), NB_EBUSY);
	rumpuser_rw_exit(rw);
	rumpuser_rw_held(RW_WRITER, rw, &held);
	CHECK_EQ(held, 0);

	/* exclusive */
	rumpuser_rw_enter(RW_WRITER, rw);
	rumpuser_rw_held(RW_WRITER, rw, &held);
	CHECK_EQ(held, 1);
	a.rw = rw;
	CHECK((intptr_t)xjoin(xthread(rw_held_writer, &a)) == 0);
	CHECK_EQ(rw_try_other(rw, RW_READER), NB_EBUSY);
	CHECK_EQ(rw_try_other(rw, RW_WRITER), NB_EBUSY);
	CHECK_EQ(rumpuser_rw_tryenter(RW_WRITER, rw), NB_EBUSY);
	CHECK_EQ(rumpuser_rw_tryenter(5, rw), NB_EINVAL);

	/* downgrade: readers may come in, writers still not */
	rumpuser_rw_downgrade(rw);
	rumpuser_rw_held(RW_WRITER, rw, &held);
	CHECK_EQ(held, 0);
	rumpuser_rw_held(RW_READER, rw, &held);
	CHECK_EQ(held, 1);
	CHECK_EQ(rw_try_other(rw, RW_READER), 0);
	CHECK_EQ(rw_try_other(rw, RW_WRITER), NB_EBUSY);

	/* a writer blocked behind a reader unschedules once */
	a.rw = rw;
	a.op = RW_WRITER;
	a.done = 0;
	t = xthread(rw_blocking_enter, &a);
	msleep(100);
	CHECK_EQ(__atomic_load_n(&a.done, __ATOMIC_SEQ_CST), 0);
	rumpuser_rw_exit(rw);
	CHECK_EQ((intptr_t)xjoin(t), 1001);
	CHECK_EQ(a.done, 1);

	/* the uncontended paths made no upcall */
	CHECK_EQ(n_unsched, 0);
	rumpuser_rw_destroy(rw);
}

/* ---- condition variables ---- */

struct cvarg {
	struct rumpuser_mtx *mtx;
	struct rumpuser_cv *cv;
	volatile int flag;
	int nowrap;
	int flags;
	int counts[4];
};

static void *
cv_waiter(void *v)
{
	struct cvarg *a = v;

	rumpuser_curlwpop(LWP_SET, LWP_B);
	rumpuser_mutex_enter(a->mtx);
	while (!a->flag) {
		if (a->nowrap)
			rumpuser_cv_wait_nowrap(a->cv, a->mtx);
		else
			rumpuser_cv_wait(a->cv, a->mtx);
	}
	if (a->flags & MTX_KMUTEX) {
		struct lwp *l;

		rumpuser_mutex_owner(a->mtx, &l);
		CHECK(l == LWP_B);
	}
	rumpuser_mutex_exit(a->mtx);
	a->counts[0] = n_unsched;
	a->counts[1] = n_sched;
	a->counts[2] = n_sched_held;
	a->counts[3] = n_sched_free;
	CHECK(a->nowrap || last_interlock == (void *)a->mtx);
	return NULL;
}

static void
cv_round(int flags, int nowrap, int expect_held)
{
	struct cvarg a;
	void *t;
	int n = 0, i;

	memset(&a, 0, sizeof(a));
	a.nowrap = nowrap;
	a.flags = flags;
	rumpuser_mutex_init(&a.mtx, flags);
	rumpuser_cv_init(&a.cv);
	t = xthread(cv_waiter, &a);
	for (i = 0; i < 2000 && n == 0; i++) {
		msleep(1);
		rumpuser_cv_has_waiters(a.cv, &n);
	}
	CHECK_EQ(n, 1);
	rumpuser_mutex_enter(a.mtx);
	a.flag = 1;
	rumpuser_cv_signal(a.cv);
	rumpuser_mutex_exit(a.mtx);
	xjoin(t);
	rumpuser_cv_has_waiters(a.cv, &n);
	CHECK_EQ(n, 0);
	if (nowrap) {
		CHECK_EQ(a.counts[0], 0);
		CHECK_EQ(a.counts[1], 0);
	} else {
		CHECK_EQ(a.counts[0], 1);
		CHECK_EQ(a.counts[1], 1);
		/*
		 * The CPU is taken back with the mutex held, except for a
		 * spin kmutex, which is released first and retaken after.
		 */
		CHECK_EQ(a.counts[2], expect_held);
		CHECK_EQ(a.counts[3], !expect_held);
	}
	rumpuser_cv_destroy(a.cv);
	rumpuser_mutex_destroy(a.mtx);
}

static void *
cv_bcast_waiter(void *v)
{
	struct cvarg *a = v;

	rumpuser_mutex_enter(a->mtx);
	while (!a->flag)
		rumpuser_cv_wait(a->cv, a->mtx);
	rumpuser_mutex_exit(a->mtx);
	return NULL;
}

static void
t_cv(void)
{
	struct cvarg a;
	void *t[3];
	double t0, dt;
	int i, n = 0;

	boot();
	rumpuser_curlwpop(LWP_SET, LWP_A);
	cv_round(MTX_KMUTEX, 0, 1);
	cv_round(MTX_KMUTEX | MTX_SPIN, 0, 0);
	cv_round(MTX_SPIN, 0, 1);
	cv_round(MTX_KMUTEX, 1, 0);

	/* timedwait: relative timeout, NetBSD ETIMEDOUT */
	memset(&a, 0, sizeof(a));
	rumpuser_mutex_init(&a.mtx, MTX_KMUTEX);
	rumpuser_cv_init(&a.cv);
	rumpuser_mutex_enter(a.mtx);
	t0 = now();
	CHECK_EQ(rumpuser_cv_timedwait(a.cv, a.mtx, 0, 150 * 1000 * 1000),
	    NB_ETIMEDOUT);
	dt = now() - t0;
	CHECK(dt >= 0.145 && dt < 5.0);
	{
		struct lwp *l;

		rumpuser_mutex_owner(a.mtx, &l);
		CHECK(l == LWP_A);
	}
	CHECK_EQ(rumpuser_mutex_tryenter(a.mtx), NB_EBUSY);
	rumpuser_mutex_exit(a.mtx);
	CHECK_EQ(n_unsched, 1);
	CHECK_EQ(n_sched, 1);

	/* broadcast wakes everyone */
	for (i = 0; i < 3; i++)
		t[i] = xthread(cv_bcast_waiter, &a);
	for (i = 0; i < 2000 && n < 3; i++) {
		msleep(1);
		rumpuser_cv_has_waiters(a.cv, &n);
	}
	CHECK_EQ(n, 3);
	rumpuser_mutex_enter(a.mtx);
	a.flag = 1;
	rumpuser_cv_broadcast(a.cv);
	rumpuser_mutex_exit(a.mtx);
	for (i = 0; i < 3; i++)
		xjoin(t[i]);
	rumpuser_cv_destroy(a.cv);
	rumpuser_mutex_destroy(a.mtx);
}

struct sigarg {
	struct rumpuser_mtx *mtx;
	struct rumpuser_cv *cv;
};

static void *
late_signal(void *v)
{
	struct sigarg *s = v;

	msleep(50);
	rumpuser_mutex_enter(s->mtx);
	rumpuser_cv_signal(s->cv);
	rumpuser_mutex_exit(s->mtx);
	return NULL;
}

static void
t_cv_timedwait_signalled(void)
{
	struct sigarg s;
	void *t;

	boot();
	rumpuser_mutex_init(&s.mtx, MTX_KMUTEX);
	rumpuser_cv_init(&s.cv);
	rumpuser_mutex_enter(s.mtx);
	t = xthread(late_signal, &s);
	CHECK_EQ(rumpuser_cv_timedwait(s.cv, s.mtx, 10, 0), 0);
	rumpuser_mutex_exit(s.mtx);
	xjoin(t);
	rumpuser_cv_destroy(s.cv);
	rumpuser_mutex_destroy(s.mtx);
}

/* ---- threads and curlwp ---- */

static volatile int thr_go;

static void *
named_thread(void *v)
{
	while (!__atomic_load_n(&thr_go, __ATOMIC_SEQ_CST))
		msleep(1);
	return v;
}

static void *
exiting_thread(void *v)
{
	(void)v;
	rumpuser_thread_exit();
	return (void *)1;	/* not reached */
}

static int
find_thread_named(const char *name)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	char path[300], comm[64];
	int found = 0;

	CHECK(d != NULL);
	while ((de = readdir(d)) != NULL) {
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm",
		    de->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		if (fgets(comm, sizeof(comm), f) != NULL) {
			comm[strcspn(comm, "\n")] = '\0';
			if (strcmp(comm, name) == 0)
				found++;
		}
		fclose(f);
	}
	closedir(d);
	return found;
}

static void
t_threads(void)
{
	void *cookie = NULL;
	int i, found = 0;

	boot();
	CHECK_EQ(rumpuser_thread_create(named_thread, NULL,
	    "vfs_flushd_long_kernel_name", 1, 0, -1, &cookie), 0);
	CHECK(cookie != NULL);
	CHECK_EQ(rumpuser_thread_create(named_thread, NULL, "ioworker", 0, 0,
	    -1, NULL), 0);
	for (i = 0; i < 1000 && found < 2; i++) {
		found = find_thread_named("vfs_flushd_long") +
		    find_thread_named("ioworker");
		if (found < 2)
			msleep(2);
	}
	CHECK_EQ(find_thread_named("vfs_flushd_long"), 1);
	CHECK_EQ(find_thread_named("ioworker"), 1);
	__atomic_store_n(&thr_go, 1, __ATOMIC_SEQ_CST);
	CHECK_EQ(rumpuser_thread_join(cookie), 0);
	CHECK_EQ(n_unsched, 1);
	CHECK_EQ(n_sched, 1);

	/* a thread that leaves through rumpuser_thread_exit */
	cookie = NULL;
	CHECK_EQ(rumpuser_thread_create(exiting_thread, NULL, "exiter", 1, 0,
	    -1, &cookie), 0);
	CHECK_EQ(rumpuser_thread_join(cookie), 0);

	/* no function: an error, not a crash */
	CHECK_EQ(rumpuser_thread_create(NULL, NULL, "x", 1, 0, -1, &cookie),
	    NB_EINVAL);
}

static void *
curlwp_thread(void *v)
{
	(void)v;
	if (rumpuser_curlwp() != NULL)
		return (void *)1;
	rumpuser_curlwpop(LWP_SET, LWP_B);
	if (rumpuser_curlwp() != LWP_B)
		return (void *)2;
	msleep(20);
	if (rumpuser_curlwp() != LWP_B)
		return (void *)3;
	rumpuser_curlwpop(LWP_CLEAR, LWP_B);
	if (rumpuser_curlwp() != NULL)
		return (void *)4;
	return NULL;
}

static void
t_curlwp(void)
{
	void *t;

	boot();
	CHECK(rumpuser_curlwp() == NULL);
	rumpuser_curlwpop(LWP_CREATE, LWP_A);
	rumpuser_curlwpop(LWP_SET, LWP_A);
	CHECK(rumpuser_curlwp() == LWP_A);
	t = xthread(curlwp_thread, NULL);
	msleep(5);
	CHECK(rumpuser_curlwp() == LWP_A);
	CHECK(xjoin(t) == NULL);
	CHECK(rumpuser_curlwp() == LWP_A);
	rumpuser_curlwpop(LWP_CLEAR, LWP_A);
	CHECK(rumpuser_curlwp() == NULL);
	rumpuser_curlwpop(LWP_DESTROY, LWP_A);
}

/* ---- clocks ---- */

static void
t_clock(void)
{
	int64_t s1, s2;
	long n1, n2;
	double t0, dt;

	boot();
	CHECK_EQ(rumpuser_clock_gettime(CLOCK_RELWALL, &s1, &n1), 0);
	CHECK(llabs(s1 - (int64_t)time(NULL)) <= 1);
	CHECK(n1 >= 0 && n1 < 1000000000);
	CHECK_EQ(rumpuser_clock_gettime(CLOCK_ABSMONO, &s1, &n1), 0);
	CHECK_EQ(rumpuser_clock_gettime(CLOCK_ABSMONO, &s2, &n2), 0);
	CHECK(s2 > s1 || (s2 == s1 && n2 >= n1));
	CHECK_EQ(rumpuser_clock_gettime(7, &s1, &n1), NB_EINVAL);

	/* relative sleep */
	t0 = now();
	CHECK_EQ(rumpuser_clock_sleep(CLOCK_RELWALL, 0, 60 * 1000 * 1000), 0);
	dt = now() - t0;
	CHECK(dt >= 0.059 && dt < 5.0);
	CHECK_EQ(n_unsched, 1);
	CHECK_EQ(n_sched, 1);

	/* absolute monotonic deadline */
	CHECK_EQ(rumpuser_clock_gettime(CLOCK_ABSMONO, &s1, &n1), 0);
	n1 += 80 * 1000 * 1000;
	if (n1 >= 1000000000) {
		s1++;
		n1 -= 1000000000;
	}
	CHECK_EQ(rumpuser_clock_sleep(CLOCK_ABSMONO, s1, n1), 0);
	CHECK_EQ(rumpuser_clock_gettime(CLOCK_ABSMONO, &s2, &n2), 0);
	CHECK(s2 > s1 || (s2 == s1 && n2 >= n1));
	CHECK_EQ(n_unsched, 2);
	CHECK_EQ(n_sched, 2);

	/* a deadline in the past returns at once */
	t0 = now();
	CHECK_EQ(rumpuser_clock_sleep(CLOCK_ABSMONO, 0, 0), 0);
	CHECK(now() - t0 < 1.0);
	CHECK_EQ(rumpuser_clock_sleep(9, 0, 0), NB_EINVAL);
}

/* ---- parameters ---- */

static void
t_getparam(void)
{
	char buf[256], small[2];
	long hostcpus = sysconf(_SC_NPROCESSORS_ONLN);

	boot();
	/* unset: a fixed 2, as NetBSD's hypercall layer reports */
	unsetenv("RUMP_NCPU");
	CHECK_EQ(rumpuser_getparam("_RUMPUSER_NCPU", buf, sizeof(buf)), 0);
	CHECK_EQ(atol(buf), 2);
	setenv("RUMP_NCPU", "3", 1);
	CHECK_EQ(rumpuser_getparam("_RUMPUSER_NCPU", buf, sizeof(buf)), 0);
	CHECK(strcmp(buf, "3") == 0);
	setenv("RUMP_NCPU", "host", 1);
	CHECK_EQ(rumpuser_getparam("_RUMPUSER_NCPU", buf, sizeof(buf)), 0);
	CHECK_EQ(atol(buf), hostcpus);

	CHECK_EQ(rumpuser_getparam("_RUMPUSER_HOSTNAME", buf, sizeof(buf)),
	    0);
	CHECK(strncmp(buf, "rump-", 5) == 0);
	/* a short buffer truncates the host name */
	CHECK_EQ(rumpuser_getparam("_RUMPUSER_HOSTNAME", small,
	    sizeof(small)), 0);
	CHECK(strlen(small) == 1);

	setenv("RUMP_MEMLIMIT", "12345", 1);
	CHECK_EQ(rumpuser_getparam("RUMP_MEMLIMIT", buf, sizeof(buf)), 0);
	CHECK(strcmp(buf, "12345") == 0);
	CHECK_EQ(rumpuser_getparam("RUMP_MEMLIMIT", small, sizeof(small)),
	    NB_ERANGE);
	unsetenv("RUMP_VERBOSE");
	CHECK_EQ(rumpuser_getparam("RUMP_VERBOSE", buf, sizeof(buf)),
	    NB_ENOENT);
	CHECK_EQ(rumpuser_getparam("_RUMPUSER_NOSUCH", buf, sizeof(buf)),
	    NB_EINVAL);
}

/* ---- files ---- */

static char tmpdir[256];

static void
mktmp(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/hypertest.XXXXXX");
	CHECK(mkdtemp(tmpdir) != NULL);
}

static void
rmtmp(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	(void)system(cmd);
}

static void
t_open(void)
{
	char path[300];
	int fd = -1;

	boot();
	umask(022);
	mktmp();
	snprintf(path, sizeof(path), "%s/f", tmpdir);
	CHECK_EQ(rumpuser_open(path, 0x100 | OPEN_RDWR, &fd), NB_EINVAL);
	CHECK_EQ(rumpuser_open(path, 3, &fd), NB_EINVAL);
	CHECK_EQ(rumpuser_open(path, OPEN_RDONLY, &fd), NB_ENOENT);
	CHECK_EQ(rumpuser_open(path, OPEN_RDWR | OPEN_CREATE | OPEN_BIO,
	    &fd), 0);
	CHECK(fd >= 0);
	CHECK_EQ(rumpuser_close(fd), 0);
	CHECK_EQ(rumpuser_open(path, OPEN_RDWR | OPEN_CREATE | OPEN_EXCL,
	    &fd), NB_EEXIST);
	CHECK_EQ(rumpuser_open(NULL, OPEN_RDONLY, &fd), 14);
	{
		struct stat sb;

		CHECK_EQ(stat(path, &sb), 0);
		CHECK_EQ(sb.st_mode & 0777, 0644);	/* umask 022 */
	}
	/* every open and close went through the blocking path */
	CHECK(n_unsched >= 4);
	CHECK_EQ(n_unsched, n_sched);
	rmtmp();
}

static void
t_getfileinfo(void)
{
	char path[300];
	uint64_t size = 1;
	int ft = -1, fd;

	boot();
	mktmp();
	snprintf(path, sizeof(path), "%s/reg", tmpdir);
	fd = open(path, O_CREAT | O_WRONLY, 0644);
	CHECK(fd >= 0);
	CHECK_EQ(write(fd, "hello, world", 12), 12);
	close(fd);
	CHECK_EQ(rumpuser_getfileinfo(path, &size, &ft), 0);
	CHECK_EQ(size, 12);
	CHECK_EQ(ft, FT_REG);
	CHECK_EQ(rumpuser_getfileinfo(tmpdir, &size, &ft), 0);
	CHECK_EQ(ft, FT_DIR);
	CHECK_EQ(rumpuser_getfileinfo("/dev/null", &size, &ft), 0);
	CHECK_EQ(ft, FT_CHR);
	CHECK_EQ(size, 0);
	/* either out-parameter may be omitted */
	CHECK_EQ(rumpuser_getfileinfo(path, NULL, &ft), 0);
	CHECK_EQ(rumpuser_getfileinfo(path, &size, NULL), 0);
	snprintf(path, sizeof(path), "%s/nonexistent", tmpdir);
	CHECK_EQ(rumpuser_getfileinfo(path, &size, &ft), NB_ENOENT);
	snprintf(path, sizeof(path), "%s/fifo", tmpdir);
	CHECK_EQ(mkfifo(path, 0644), 0);
	CHECK_EQ(rumpuser_getfileinfo(path, &size, &ft), 0);
	CHECK_EQ(ft, FT_OTHER);
	rmtmp();
}

static void
t_iov(void)
{
	char path[300], a[6] = "hello", b[7] = " world", r1[5], r2[20];
	struct rumpuser_iovec wv[2], rv[2];
	size_t n = 0;
	int fd;

	boot();
	mktmp();
	snprintf(path, sizeof(path), "%s/iov", tmpdir);
	CHECK_EQ(rumpuser_open(path, OPEN_RDWR | OPEN_CREATE, &fd), 0);

	/* at an offset: the file position does not move */
	wv[0].iov_base = a;
	wv[0].iov_len = 5;
	wv[1].iov_base = b;
	wv[1].iov_len = 6;
	CHECK_EQ(rumpuser_iovwrite(fd, wv, 2, 100, &n), 0);
	CHECK_EQ(n, 11);
	CHECK_EQ(lseek(fd, 0, SEEK_CUR), 0);
	memset(r1, 0, sizeof(r1));
	memset(r2, 0, sizeof(r2));
	rv[0].iov_base = r1;
	rv[0].iov_len = 5;
	rv[1].iov_base = r2;
	rv[1].iov_len = sizeof(r2);
	CHECK_EQ(rumpuser_iovread(fd, rv, 2, 100, &n), 0);
	CHECK_EQ(n, 11);
	CHECK(memcmp(r1, "hello", 5) == 0);
	CHECK(memcmp(r2, " world", 6) == 0);

	/* NOSEEK: at the current position, which then advances */
	CHECK_EQ(lseek(fd, 3, SEEK_SET), 3);
	CHECK_EQ(rumpuser_iovwrite(fd, wv, 1, IOV_NOSEEK, &n), 0);
	CHECK_EQ(n, 5);
	CHECK_EQ(lseek(fd, 0, SEEK_CUR), 8);
	CHECK_EQ(lseek(fd, 3, SEEK_SET), 3);
	memset(r1, 0, sizeof(r1));
	rv[0].iov_len = 5;
	CHECK_EQ(rumpuser_iovread(fd, rv, 1, IOV_NOSEEK, &n), 0);
	CHECK_EQ(n, 5);
	CHECK(memcmp(r1, "hello", 5) == 0);
	CHECK_EQ(lseek(fd, 0, SEEK_CUR), 8);

	/* read at end of file: 0 bytes, no error */
	CHECK_EQ(rumpuser_iovread(fd, rv, 1, 4096, &n), 0);
	CHECK_EQ(n, 0);
	/* errors are NetBSD errno values */
	CHECK_EQ(rumpuser_iovread(-1, rv, 1, 0, &n), NB_EBADF);
	CHECK_EQ(rumpuser_iovread(fd, rv, 1, -5, &n), NB_EINVAL);

	/* syncfd */
	CHECK_EQ(rumpuser_syncfd(fd, SYNCFD_WRITE, 0, 0), 0);
	CHECK_EQ(rumpuser_syncfd(fd, SYNCFD_WRITE | SYNCFD_SYNC, 0, 100), 0);
	CHECK_EQ(rumpuser_syncfd(fd, SYNCFD_WRITE | SYNCFD_BARRIER, 0, 0), 0);
	CHECK_EQ(rumpuser_syncfd(fd, SYNCFD_READ, 0, 0), 0);
	CHECK_EQ(rumpuser_syncfd(fd, 0, 0, 0), NB_EINVAL);
	CHECK_EQ(rumpuser_syncfd(fd, SYNCFD_WRITE | 0x40, 0, 0), NB_EINVAL);
	CHECK_EQ(rumpuser_syncfd(-1, SYNCFD_WRITE, 0, 0), NB_EBADF);
	CHECK_EQ(rumpuser_close(fd), 0);
	rmtmp();
}

/* ---- block I/O ---- */

struct biodone_rec {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	int calls;
	size_t bytes;
	int error;
	int was_synced;	/* for BIO_SYNC: data visible via another fd */
	const char *path;
	const char *expect;
	size_t expectlen;
	off_t expectoff;
};

static void
biodone(void *arg, size_t bytes, int error)
{
	struct biodone_rec *r = arg;

	if (r->path != NULL) {
		char buf[64];
		int fd = open(r->path, O_RDONLY);

		if (fd >= 0 && pread(fd, buf, r->expectlen, r->expectoff) ==
		    (ssize_t)r->expectlen && memcmp(buf, r->expect,
		    r->expectlen) == 0)
			r->was_synced = 1;
		if (fd >= 0)
			close(fd);
	}
	pthread_mutex_lock(&r->mtx);
	r->calls++;
	r->bytes = bytes;
	r->error = error;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mtx);
}

static void
bio_and_wait(int fd, int op, void *data, size_t len, int64_t off,
    struct biodone_rec *r)
{
	pthread_mutex_init(&r->mtx, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->calls = 0;
	rumpuser_bio(fd, op, data, len, off, biodone, r);
	pthread_mutex_lock(&r->mtx);
	while (r->calls == 0)
		pthread_cond_wait(&r->cv, &r->mtx);
	pthread_mutex_unlock(&r->mtx);
}

static void
t_bio(void)
{
	static char wbuf[8192], rbuf[16384];
	struct biodone_rec rec[6];
	char path[300];
	int fd, i;

	boot();
	mktmp();
	memset(rec, 0, sizeof(rec));
	snprintf(path, sizeof(path), "%s/disk.img", tmpdir);
	CHECK_EQ(rumpuser_open(path, OPEN_RDWR | OPEN_CREATE | OPEN_BIO, &fd),
	    0);
	for (i = 0; i < (int)sizeof(wbuf); i++)
		wbuf[i] = (char)(i * 7 + 1);

	/* write */
	bio_and_wait(fd, BIO_WRITE, wbuf, 8192, 0, &rec[0]);
	CHECK_EQ(rec[0].bytes, 8192);
	CHECK_EQ(rec[0].error, 0);

	/* read */
	bio_and_wait(fd, BIO_READ, rbuf, 4096, 4096, &rec[1]);
	CHECK_EQ(rec[1].bytes, 4096);
	CHECK_EQ(rec[1].error, 0);
	CHECK(memcmp(rbuf, wbuf + 4096, 4096) == 0);

	/* short transfer: a read across end of file */
	bio_and_wait(fd, BIO_READ, rbuf, 16384, 4096, &rec[2]);
	CHECK_EQ(rec[2].bytes, 4096);
	CHECK_EQ(rec[2].error, 0);

	/* error: a bad descriptor */
	bio_and_wait(-1, BIO_READ, rbuf, 512, 0, &rec[3]);
	CHECK_EQ(rec[3].bytes, 0);
	CHECK_EQ(rec[3].error, NB_EBADF);

	/* error: a write to a read-only descriptor */
	{
		int rofd;

		CHECK_EQ(rumpuser_open(path, OPEN_RDONLY, &rofd), 0);
		bio_and_wait(rofd, BIO_WRITE, wbuf, 512, 0, &rec[4]);
		CHECK_EQ(rec[4].bytes, 0);
		CHECK_EQ(rec[4].error, NB_EBADF);
		CHECK_EQ(rumpuser_close(rofd), 0);
	}

	/* a synchronous write is on the file (seen through another
	 * descriptor) by the time biodone runs */
	memcpy(wbuf, "durable-bytes", 13);
	rec[5].path = path;
	rec[5].expect = "durable-bytes";
	rec[5].expectlen = 13;
	rec[5].expectoff = 20000;
	bio_and_wait(fd, BIO_WRITE | BIO_SYNC, wbuf, 13, 20000, &rec[5]);
	CHECK_EQ(rec[5].bytes, 13);
	CHECK_EQ(rec[5].error, 0);
	CHECK_EQ(rec[5].was_synced, 1);

	/* every biodone ran exactly once, and no more later */
	msleep(100);
	for (i = 0; i < 6; i++)
		CHECK_EQ(rec[i].calls, 1);
	/* each I/O thread that served a request got its own lwp */
	CHECK(__atomic_load_n(&n_newlwp, __ATOMIC_SEQ_CST) >= 1);
	CHECK_EQ(rumpuser_close(fd), 0);
	rmtmp();
}

/* many concurrent requests: each completes exactly once */
static void
t_bio_many(void)
{
	enum { N = 200 };
	static char bufs[N][512];
	static struct biodone_rec recs[N];
	char path[300];
	int fd, i;

	boot();
	mktmp();
	snprintf(path, sizeof(path), "%s/many.img", tmpdir);
	CHECK_EQ(rumpuser_open(path, OPEN_RDWR | OPEN_CREATE | OPEN_BIO, &fd),
	    0);
	for (i = 0; i < N; i++) {
		memset(bufs[i], i & 0xff, 512);
		pthread_mutex_init(&recs[i].mtx, NULL);
		pthread_cond_init(&recs[i].cv, NULL);
		rumpuser_bio(fd, BIO_WRITE, bufs[i], 512, (int64_t)i * 512,
		    biodone, &recs[i]);
	}
	for (i = 0; i < N; i++) {
		pthread_mutex_lock(&recs[i].mtx);
		while (recs[i].calls == 0)
			pthread_cond_wait(&recs[i].cv, &recs[i].mtx);
		pthread_mutex_unlock(&recs[i].mtx);
	}
	msleep(50);
	for (i = 0; i < N; i++) {
		CHECK_EQ(recs[i].calls, 1);
		CHECK_EQ(recs[i].bytes, 512);
		CHECK_EQ(recs[i].error, 0);
	}
	{
		struct stat sb;
		char b[512];

		CHECK_EQ(fstat(fd, &sb), 0);
		CHECK_EQ(sb.st_size, N * 512);
		CHECK_EQ(pread(fd, b, 512, 77 * 512), 512);
		CHECK_EQ((unsigned char)b[0], 77);
	}
	CHECK_EQ(rumpuser_close(fd), 0);
	rmtmp();
}

/* ---- memory, random, errno, console ---- */

static void
t_mem(void)
{
	void *p = NULL;
	int i;

	boot();
	CHECK_EQ(rumpuser_malloc(1000, 64, &p), 0);
	CHECK(p != NULL && ((uintptr_t)p & 63) == 0);
	memset(p, 0xab, 1000);
	rumpuser_free(p, 1000);
	CHECK_EQ(rumpuser_malloc(10, 0, &p), 0);
	rumpuser_free(p, 10);
	CHECK_EQ(rumpuser_malloc(10, 4, &p), 0);	/* rounded up */
	rumpuser_free(p, 10);
	CHECK_EQ(rumpuser_malloc(10, 24, &p), NB_EINVAL);
	for (i = 0; i < 4; i++) {
		CHECK_EQ(rumpuser_anonmmap(NULL, 3 * 4096 + 5, 20, 0, &p), 0);
		CHECK(((uintptr_t)p & ((1 << 20) - 1)) == 0);
		memset(p, 0x5a, 3 * 4096 + 5);
		rumpuser_unmap(p, 3 * 4096 + 5);
	}
	CHECK_EQ(rumpuser_anonmmap(NULL, 8192, 0, 0, &p), 0);
	CHECK_EQ(((char *)p)[100], 0);
	rumpuser_unmap(p, 8192);
}

static void
t_random(void)
{
	unsigned char a[64], b[64];
	size_t n = 0;

	boot();
	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	CHECK_EQ(rumpuser_getrandom(a, sizeof(a), 0x01, &n), 0);
	CHECK_EQ(n, 64);
	CHECK_EQ(rumpuser_getrandom(b, sizeof(b), 0x02, &n), 0);
	CHECK(n > 0);
	CHECK(memcmp(a, b, sizeof(a)) != 0);
	CHECK_EQ(rumpuser_getrandom(a, sizeof(a), 0x40, &n), NB_EINVAL);
}

static volatile sig_atomic_t got_usr1;

static void
on_usr1(int sig)
{
	(void)sig;
	got_usr1 = 1;
}

static void
t_errno_kill(void)
{
	boot();
	errno = 0;
	rumpuser_seterrno(35);
	CHECK_EQ(errno, 35);
	rumpuser_seterrno(0);
	CHECK_EQ(errno, 0);

	signal(SIGUSR1, on_usr1);
	CHECK_EQ(rumpuser_kill(-1, 30), 0);	/* NetBSD SIGUSR1 */
	CHECK_EQ(got_usr1, 1);
	CHECK_EQ(rumpuser_kill(-1, 7), NB_EINVAL);	/* no SIGEMT here */
	CHECK_EQ(rumpuser_kill(-1, 0), 0);
}

static void
t_console(void)
{
	boot();
	rumpuser_putchar('K');
	rumpuser_putchar('\n');
	rumpuser_dprintf("dprintf %s %d %ld %c|%d %d %d %d %d %d %d|\n",
	    "str", 42, 1234567890123L, 'z', 1, 2, 3, 4, 5, 6, 7);
}

/* ---- exit ---- */

static void
t_exit(void)
{
	struct rlimit rl = { 0, 0 };
	pid_t pid;
	int status;

	boot();
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		setrlimit(RLIMIT_CORE, &rl);	/* no core file from the test */
		signal(SIGABRT, SIG_IGN);	/* must not save it */
		rumpuser_exit(RUMPUSER_PANIC);
		_exit(99);
	}
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	CHECK(WIFSIGNALED(status));
	CHECK_EQ(WTERMSIG(status), SIGABRT);

	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		rumpuser_exit(7);
		_exit(99);
	}
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status));
	CHECK_EQ(WEXITSTATUS(status), 7);
}

/* ---- daemonize ---- */

static void
daemon_round(int error)
{
	char marker[300];
	struct stat sb;
	pid_t pid;
	int status;

	snprintf(marker, sizeof(marker), "%s/up.%d", tmpdir, error);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		/* this process becomes the daemon's parent */
		if (rumpuser_daemonize_begin() != 0)
			_exit(100);
		/* the daemon: a second begin is refused */
		if (rumpuser_daemonize_begin() != 36)	/* EINPROGRESS */
			_exit(101);
		msleep(300);
		{
			int fd = open(marker, O_CREAT | O_WRONLY, 0644);

			if (fd >= 0)
				close(fd);
		}
		if (rumpuser_daemonize_done(error) != 0)
			_exit(102);
		_exit(0);
	}
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status));
	CHECK_EQ(WEXITSTATUS(status), error);
	/* the parent returned only after the child reported */
	CHECK_EQ(stat(marker, &sb), 0);
}

static void
t_daemonize(void)
{
	boot();
	mktmp();
	CHECK_EQ(rumpuser_daemonize_done(0), NB_ENOENT);
	daemon_round(0);
	daemon_round(5);
	msleep(50);
	rmtmp();
}

/* ---- dl ---- */

struct modinfo {
	int mi_version;
	const char *mi_name;
};

struct rump_component {
	int rc_type;
	const char *rc_name;
};

static int dl_mods, dl_modcalls, dl_comps, dl_symloads, dl_symfound;
static void *dl_symaddr;

static void
dl_modinit(const void *const *mi, size_t n)
{
	size_t i;

	dl_modcalls++;
	for (i = 0; i < n; i++) {
		const struct modinfo *m = mi[i];

		if (strncmp(m->mi_name, "dltest_mod_", 11) == 0)
			dl_mods++;
	}
}

static int
dl_symload(void *symtab, uint64_t symsize, char *strtab, uint64_t strsize)
{
	/* Elf64_Sym */
	struct sym {
		uint32_t st_name;
		unsigned char st_info, st_other;
		uint16_t st_shndx;
		uint64_t st_value, st_size;
	} *s = symtab;
	uint64_t i;

	dl_symloads++;
	CHECK_EQ(symsize % sizeof(*s), 0);
	for (i = 0; i < symsize / sizeof(*s); i++) {
		const char *name;

		CHECK(s[i].st_name < strsize);
		name = strtab + s[i].st_name;
		CHECK(strncmp(name, "rump", 4) == 0 ||
		    strncmp(name, "RUMP", 4) == 0 ||
		    strncmp(name, "__", 2) == 0);
		if (strcmp(name, "rumpdltest_symbol") == 0 &&
		    (void *)(uintptr_t)s[i].st_value == dl_symaddr)
			dl_symfound++;
	}
	return 0;
}

static void
dl_compload(const void *c)
{
	const struct rump_component *rc = c;

	if (strcmp(rc->rc_name, "dltest_comp_x") == 0 && rc->rc_type == 7)
		dl_comps++;
}

static void
t_dl(const char *sopath)
{
	size_t (*nmods)(void);
	void *h;

	boot();
	CHECK(sopath != NULL);
	h = dlopen(sopath, RTLD_NOW | RTLD_GLOBAL);
	if (h == NULL)
		printf("dlopen: %s\n", dlerror());
	CHECK(h != NULL);
	nmods = (size_t (*)(void))dlsym(h, "rumpdltest_nmodules");
	CHECK(nmods != NULL);
	CHECK_EQ(nmods(), 2);
	dl_symaddr = dlsym(h, "rumpdltest_symbol");
	CHECK(dl_symaddr != NULL);
	rumpuser_dl_bootstrap(dl_modinit, dl_symload, dl_compload);
	CHECK_EQ(dl_symloads, 1);
	CHECK_EQ(dl_symfound, 1);
	CHECK_EQ(dl_mods, 2);
	CHECK_EQ(dl_modcalls, 1);
	CHECK_EQ(dl_comps, 1);
}

/* ---- main ---- */

static const struct {
	const char *name;
	void (*fn)(void);
} tests[] = {
	{ "init", t_init },
	{ "mutex_uncontended", t_mutex_uncontended },
	{ "mutex_contended", t_mutex_contended },
	{ "misuse_mutex_reenter", t_misuse_mutex_reenter },
	{ "misuse_mutex_destroy_held", t_misuse_mutex_destroy_held },
	{ "misuse_rw_write_twice", t_misuse_rw_write_twice },
	{ "misuse_rw_write_then_read", t_misuse_rw_write_then_read },
	{ "mutex_spin", t_mutex_spin },
	{ "kmutex_owner", t_kmutex_owner },
	{ "rwlock", t_rwlock },
	{ "cv", t_cv },
	{ "cv_timedwait_signalled", t_cv_timedwait_signalled },
	{ "threads", t_threads },
	{ "curlwp", t_curlwp },
	{ "clock", t_clock },
	{ "getparam", t_getparam },
	{ "open", t_open },
	{ "getfileinfo", t_getfileinfo },
	{ "iov", t_iov },
	{ "bio", t_bio },
	{ "bio_many", t_bio_many },
	{ "mem", t_mem },
	{ "random", t_random },
	{ "errno_kill", t_errno_kill },
	{ "console", t_console },
	{ "exit", t_exit },
	{ "daemonize", t_daemonize },
};

int
main(int argc, char **argv)
{
	size_t i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) {
		fprintf(stderr, "usage: hypertest NAME [ARG]\n");
		return 2;
	}
	testname = argv[1];
	if (strcmp(testname, "dl") == 0) {
		t_dl(argc > 2 ? argv[2] : NULL);
		printf("PASS %s\n", testname);
		return 0;
	}
	for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		if (strcmp(tests[i].name, testname) == 0) {
			tests[i].fn();
			printf("PASS %s\n", testname);
			return 0;
		}
	}
	fprintf(stderr, "hypertest: no test %s\n", testname);
	return 2;
}
