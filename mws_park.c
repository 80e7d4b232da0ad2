/*
 * mws_park.c -- the parked driver: the event MPM waits for a WebSocket's
 * input without a thread.
 *
 * Between bursts of work the connection sits in the MPM's pollset in
 * CONN_STATE_ASYNC_WAITIO and no thread is tied to it.  Who may touch it
 * is mc->io (under mc->lock):
 *   MWS_IO_OWNED    a worker runs it (the handshake, process_connection)
 *   MWS_IO_PARKED   in the MPM's pollset; nobody touches the socket
 *   MWS_IO_CALLBACK a timed callback of ours runs a pass on it
 * A thread that queues data for a parked connection registers a timed
 * callback (delay 0) that takes it from PARKED to CALLBACK, writes and
 * parks it again.  The MPM tells us when it parks (suspend_connection)
 * and resumes (resume_connection) a connection; a resume that finds a
 * callback running waits for it.  See docs/design.md.
 */
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <unistd.h>

#include "apr_thread_proc.h"

#include "httpd.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "ap_mpm.h"
#include "mpm_common.h"

#include "mws_private.h"

static void async_cb(void *baton);

/* Register a callback of ours after delay; takes a reference. */
static void async_register_locked(mws_conn *mc, apr_interval_time_t delay)
{
    ++mc->refs;
    if (ap_mpm_register_timed_callback(delay, async_cb, mc) != APR_SUCCESS) {
        --mc->refs;
    }
}

/* A parked connection with no callback coming: the caller takes a
 * reference and promises one (lock held).  1 if claimed. */
int mws_park_claim_locked(mws_conn *mc)
{
    if (mc->io == MWS_IO_PARKED && !mc->cb_pending) {
        mc->cb_pending = 1;
        ++mc->refs;
        return 1;
    }
    return 0;
}

typedef struct {
    size_t n;
    mws_conn *mc[1];            /* n of them, each with a reference */
} mws_batch;

static void batch_cb(void *baton)
{
    mws_batch *b = baton;
    size_t i;

    for (i = 0; i < b->n; ++i) {
        async_cb(b->mc[i]);     /* releases its reference */
    }
    free(b);
}

/* Give n claimed connections their callbacks, several per callback: each
 * callback is an insert into the MPM's timer list and a worker wake-up
 * (a context switch).  Two callbacks per CPU this process may run on let
 * the CPUs share a broadcast; never fewer than 16 connections in one. */
#define MWS_BATCH_MIN 16
static size_t mws_ncpu = 1;

void mws_conn_kick_batch(mws_conn **mcs, size_t n)
{
    size_t i, k, m, per = (n + 2 * mws_ncpu - 1) / (2 * mws_ncpu);
    mws_batch *b;

    if (per < MWS_BATCH_MIN) {
        per = MWS_BATCH_MIN;
    }
    for (i = 0; i < n; i += m) {
        m = n - i < per ? n - i : per;
        b = malloc(sizeof(*b) + sizeof(mws_conn *) * m);
        if (b) {
            b->n = m;
            for (k = 0; k < m; ++k) {
                b->mc[k] = mcs[i + k];
            }
            if (ap_mpm_register_timed_callback(0, batch_cb, b)
                == APR_SUCCESS) {
                continue;
            }
            free(b);
        }
        for (k = 0; k < m; ++k) {       /* one by one, as a fallback */
            if (ap_mpm_register_timed_callback(0, async_cb, mcs[i + k])
                != APR_SUCCESS) {
                mws_conn_release(mcs[i + k]);
            }
        }
    }
}

/* A callback of ours comes next; it looks at everything (lock held). */
static void callback_now_locked(mws_conn *mc)
{
    mc->work_pending = 0;
    mc->cb_pending = 1;
    async_register_locked(mc, 0);
}

/* A callback's turn with a parked connection ends (lock held). */
static void io_park_locked(mws_conn *mc)
{
    mc->io = MWS_IO_PARKED;
    if (mc->io_waiters) {
        pthread_cond_broadcast(&mc->io_cond);
    }
}

/* Another thread queued something or added a timer (lock held). */
void mws_park_kick_locked(mws_conn *mc)
{
    if (mc->io == MWS_IO_PARKED) {
        if (!mc->cb_pending) {
            callback_now_locked(mc);
        }
    }
    else {
        /* the owner looks before it parks (mws_drive_pass) */
        __atomic_store_n(&mc->work_pending, 1, __ATOMIC_RELEASE);
    }
}

/*
 * Wake-ups at a later time.  httpd 2.4's event MPM computes its poll
 * timeout from the timer list only after a timer expired (event.c, the
 * listener: "if (expiry && expiry < now)"), so a callback registered for
 * later can fire seconds late.  Callbacks with delay 0 are prompt, so a
 * thread of ours keeps the later wake-ups and registers each one with
 * delay 0 when it is due.
 */
static pthread_mutex_t wq_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wq_cond = PTHREAD_COND_INITIALIZER;
static apr_uint64_t wq_seq;
static apr_thread_t *wq_thread;
static int wq_stop;

/* The pending wake-ups: a binary heap of connections, earliest first (ties
 * in the order they were scheduled), under wq_lock.  Each connection is in
 * it at most once and knows its place (mc->wake_idx), so that moving or
 * dropping its wake-up costs O(log n) and no allocation; one pointer per
 * waiting connection is all the memory it takes.  A connection in the heap
 * holds a reference. */
static mws_conn **wq_heap;
static size_t wq_n, wq_cap;

static int wq_before(const mws_conn *a, const mws_conn *b)
{
    return a->wake_when < b->wake_when
           || (a->wake_when == b->wake_when && a->wake_seq < b->wake_seq);
}

static void wq_place(size_t i, mws_conn *mc)
{
    wq_heap[i] = mc;
    mc->wake_idx = i + 1;
}

static void wq_up(size_t i)
{
    mws_conn *mc = wq_heap[i];
    size_t parent;

    while (i > 0 && wq_before(mc, wq_heap[parent = (i - 1) / 2])) {
        wq_place(i, wq_heap[parent]);
        i = parent;
    }
    wq_place(i, mc);
}

static void wq_down(size_t i)
{
    mws_conn *mc = wq_heap[i];
    size_t child;

    while ((child = 2 * i + 1) < wq_n) {
        if (child + 1 < wq_n && wq_before(wq_heap[child + 1], wq_heap[child])) {
            ++child;
        }
        if (!wq_before(wq_heap[child], mc)) {
            break;
        }
        wq_place(i, wq_heap[child]);
        i = child;
    }
    wq_place(i, mc);
}

/* Add mc, whose wake_when and wake_seq are set.  -1: out of memory. */
static int wq_add(mws_conn *mc)
{
    if (wq_n == wq_cap) {
        size_t cap = wq_cap ? wq_cap * 2 : 256;
        mws_conn **heap = realloc(wq_heap, cap * sizeof(*heap));

        if (!heap) {
            return -1;
        }
        wq_heap = heap;
        wq_cap = cap;
    }
    wq_place(wq_n, mc);
    wq_up(wq_n++);
    return 0;
}

/* Take mc, which is in the heap, out of it. */
static void wq_remove(mws_conn *mc)
{
    size_t i = mc->wake_idx - 1;
    mws_conn *last = wq_heap[--wq_n];

    mc->wake_idx = 0;
    __atomic_store_n(&mc->wake_when, 0, __ATOMIC_RELEASE);
    if (last != mc) {
        wq_place(i, last);
        wq_up(i);
        wq_down(last->wake_idx - 1);
    }
}

static void *APR_THREAD_FUNC wq_main(apr_thread_t *thd, void *data)
{
    mws_conn *mc;
    apr_time_t now;
    struct timespec ts;

    pthread_mutex_lock(&wq_lock);
    while (!wq_stop) {
        mc = wq_n ? wq_heap[0] : NULL;
        now = apr_time_now();
        if (!mc) {
            pthread_cond_wait(&wq_cond, &wq_lock);
        }
        else if (mc->wake_when > now) {
            ts.tv_sec = (time_t)apr_time_sec(mc->wake_when);
            ts.tv_nsec = (long)apr_time_usec(mc->wake_when) * 1000;
            pthread_cond_timedwait(&wq_cond, &wq_lock, &ts);
        }
        else {
            wq_remove(mc);      /* its reference goes to the callback */
            pthread_mutex_unlock(&wq_lock);
            if (ap_mpm_register_timed_callback(0, async_cb, mc)
                != APR_SUCCESS) {
                mws_conn_release(mc);
            }
            pthread_mutex_lock(&wq_lock);
        }
    }
    pthread_mutex_unlock(&wq_lock);
    return NULL;
}

/* Give back the references that wake-ups still hold (child exit). */
static void wq_drain(void)
{
    mws_conn *mc;

    for (;;) {
        pthread_mutex_lock(&wq_lock);
        mc = wq_n ? wq_heap[0] : NULL;
        if (mc) {
            wq_remove(mc);
        }
        pthread_mutex_unlock(&wq_lock);
        if (!mc) {
            return;
        }
        mws_conn_release(mc);
    }
}

/* The connection ends: its wake-up, if one is pending, goes now rather
 * than keeping the connection's memory until it is due. */
void mws_park_forget(mws_conn *mc)
{
    int had;

    pthread_mutex_lock(&wq_lock);
    had = mc->wake_idx != 0;
    if (had) {
        wq_remove(mc);
    }
    pthread_mutex_unlock(&wq_lock);
    if (had) {
        mws_conn_release(mc);
    }
}

static apr_status_t wq_child_exit(void *unused)
{
    apr_status_t trv;

    pthread_mutex_lock(&wq_lock);
    wq_stop = 1;
    pthread_cond_signal(&wq_cond);
    pthread_mutex_unlock(&wq_lock);
    if (wq_thread) {
        apr_thread_join(&trv, wq_thread);
        wq_thread = NULL;
    }
    wq_drain();
    pthread_mutex_lock(&wq_lock);
    free(wq_heap);
    wq_heap = NULL;
    wq_n = wq_cap = 0;
    pthread_mutex_unlock(&wq_lock);
    return APR_SUCCESS;
}

static apr_status_t wq_start(apr_pool_t *pchild)
{
    apr_status_t rv;

    wq_stop = 0;
    rv = apr_thread_create(&wq_thread, NULL, wq_main, NULL, pchild);
    if (rv == APR_SUCCESS) {
        apr_pool_cleanup_register(pchild, NULL, wq_child_exit,
                                  apr_pool_cleanup_null);
    }
    return rv;
}

/* Make sure a callback comes at `when` (mc->lock held).  A connection
 * has at most one wake-up waiting: an earlier one moves it. */
static void async_schedule_locked(mws_conn *mc, apr_time_t when)
{
    apr_time_t now, at;
    int fresh;

    if (!when) {
        return;
    }
    /* The common case without wq_lock: a wake-up at that time or earlier
     * waits already (or is being fired, and its callback looks again). */
    at = __atomic_load_n(&mc->wake_when, __ATOMIC_ACQUIRE);
    if (at && at <= when) {
        return;
    }
    now = apr_time_now();
    if (when <= now) {
        async_register_locked(mc, 0);
        return;
    }
    pthread_mutex_lock(&wq_lock);
    if (wq_stop || (mc->wake_idx && mc->wake_when <= when)) {
        /* one at that time or earlier is coming, or the child exits */
        pthread_mutex_unlock(&wq_lock);
        return;
    }
    fresh = !mc->wake_idx;
    if (fresh) {
        ++mc->refs;             /* the heap's */
    }
    else {
        wq_remove(mc);          /* to move it earlier; keeps its reference */
    }
    __atomic_store_n(&mc->wake_when, when, __ATOMIC_RELEASE);
    mc->wake_seq = ++wq_seq;
    if (wq_add(mc) != 0) {
        /* no memory for the heap: look now instead of later */
        __atomic_store_n(&mc->wake_when, 0, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&wq_lock);
        --mc->refs;             /* the caller holds one too: never the last */
        async_register_locked(mc, 0);
        return;
    }
    if (wq_heap[0] == mc) {
        pthread_cond_signal(&wq_cond);  /* it is the first now */
    }
    pthread_mutex_unlock(&wq_lock);
}

static void async_cb(void *baton)
{
    mws_conn *mc = baton;
    mws_drive *dv;
    int finished;

    pthread_mutex_lock(&mc->lock);
    if (mc->io != MWS_IO_PARKED || mc->state == MWS_ST_DEAD) {
        /* a worker owns it and will see the work, or it is gone */
        mc->cb_pending = 0;
        pthread_mutex_unlock(&mc->lock);
        mws_conn_release(mc);
        return;
    }
    mc->cb_pending = 0;
    mc->io = MWS_IO_CALLBACK;
    dv = mc->dv;
    pthread_mutex_unlock(&mc->lock);
    ap_log_cerror(APLOG_MARK, APLOG_TRACE4, 0, dv->c,
                  "ws(%" APR_UINT64_T_FMT "): callback pass",
                  (apr_uint64_t)mc->id);

    /* no read: input arriving for a parked connection makes the MPM call
     * ws_process_connection() once we park it again */
    finished = dv->closing || mws_drive_pass(dv, 0);

    pthread_mutex_lock(&mc->lock);
    if (finished && !dv->closing) {
        /* Only the MPM may close a connection in its pollset: end our
         * reading side so that it hands the connection back to us. */
        apr_pollfd_t pfd;

        dv->closing = 1;
        memset(&pfd, 0, sizeof(pfd));
        if (ap_get_pollfd_from_conn(dv->c, &pfd, NULL) == APR_SUCCESS
            && pfd.desc_type == APR_POLL_SOCKET) {
            apr_socket_shutdown(pfd.desc.s, APR_SHUTDOWN_READ);
        }
    }
    else if (!finished) {
        async_schedule_locked(mc, dv->next_wake);
        if (mc->work_pending && !mc->cb_pending) {
            callback_now_locked(mc);
        }
    }
    io_park_locked(mc);
    pthread_mutex_unlock(&mc->lock);
    mws_conn_release(mc);
}

/* Wait until no callback runs, then own the connection. */
static void async_take(mws_conn *mc)
{
    pthread_mutex_lock(&mc->lock);
    while (mc->io == MWS_IO_CALLBACK) {
        ++mc->io_waiters;
        pthread_cond_wait(&mc->io_cond, &mc->lock);
        --mc->io_waiters;
    }
    mc->io = MWS_IO_OWNED;
    pthread_mutex_unlock(&mc->lock);
}

static mws_drive *conn_drive(conn_rec *c)
{
    return c ? ap_get_module_config(c->conn_config, &websocket_module)
             : NULL;
}

static void ws_suspend_connection(conn_rec *c, request_rec *r)
{
    mws_drive *dv = conn_drive(c);
    mws_conn *mc = dv ? dv->mc : NULL;

    if (!mc || !mc->async) {
        return;
    }
    ap_log_cerror(APLOG_MARK, APLOG_TRACE3, 0, c,
                  "ws(%" APR_UINT64_T_FMT "): parked, next wake in %"
                  APR_TIME_T_FMT " us", (apr_uint64_t)mc->id,
                  dv->next_wake ? dv->next_wake - apr_time_now() : 0);
    pthread_mutex_lock(&mc->lock);
    mc->io = MWS_IO_PARKED;
    if ((mc->work_pending || (mc->out.head && !dv->write_blocked))
        && !mc->cb_pending) {
        /* queued after our last look: write it from a callback */
        callback_now_locked(mc);
    }
    async_schedule_locked(mc, dv->next_wake);
    pthread_mutex_unlock(&mc->lock);
}

static void ws_resume_connection(conn_rec *c, request_rec *r)
{
    mws_drive *dv = conn_drive(c);

    if (dv && dv->mc && dv->mc->async) {
        async_take(dv->mc);
    }
}

/* Input arrived for a parked connection (or it was woken to close). */
static int ws_process_connection(conn_rec *c)
{
    mws_drive *dv = conn_drive(c);
    int finished;

    if (!dv || !dv->mc || !dv->mc->async || !c->cs) {
        return DECLINED;
    }
    c->clogging_input_filters = 0;
    if (dv->mc->io != MWS_IO_OWNED) {
        async_take(dv->mc);     /* resume_connection normally did it */
    }
    mws_alloc_busy(dv);
    finished = dv->closing || mws_drive_input(dv);
    if (finished) {
        mws_drive_finish(dv);
        c->cs->state = CONN_STATE_LINGER;
        return OK;
    }
    c->cs->state = CONN_STATE_ASYNC_WAITIO;
    /* over its queue cap, the client is not read until it reads: wait for
     * its socket to take more rather than for its input */
    c->cs->sense = dv->read_paused ? CONN_SENSE_WANT_WRITE
                                   : CONN_SENSE_WANT_READ;
    return OK;
}

/* The MPM closes the connection (its Timeout, a stop): report it. */

static int ws_pre_close_connection(conn_rec *c)
{
    mws_drive *dv = conn_drive(c);

    if (dv && dv->mc) {
        if (dv->mc->async) {
            async_take(dv->mc);
        }
        mws_drive_last_words(dv);
        mws_drive_finish(dv);
    }
    return OK;
}


/* The CPUs this process may run on (taskset, cgroups' cpusets). */
static size_t cpus_available(void)
{
    long n;
#ifdef CPU_COUNT
    cpu_set_t set;

    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) {
        return (size_t)CPU_COUNT(&set);
    }
#endif
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (size_t)n : 1;
}

/* The part of mws_conn_last_words() for a parked connection: take it from
 * the MPM's pollset for a moment, as a callback would. */
void mws_park_last_words(mws_conn *mc)
{
    mws_drive *dv;

    pthread_mutex_lock(&mc->lock);
    if (!mc->async || mc->io != MWS_IO_PARKED || mc->state == MWS_ST_DEAD) {
        pthread_mutex_unlock(&mc->lock);
        return;
    }
    mc->io = MWS_IO_CALLBACK;
    dv = mc->dv;
    pthread_mutex_unlock(&mc->lock);
    mws_drive_last_words(dv);
    pthread_mutex_lock(&mc->lock);
    io_park_locked(mc);
    pthread_mutex_unlock(&mc->lock);
}

apr_status_t mws_park_child_init(apr_pool_t *pchild)
{
    mws_ncpu = cpus_available();
    return wq_start(pchild);
}

void mws_park_register_hooks(void)
{
    /* first: a WebSocket connection is ours, not the HTTP protocol's */
    static const char *const before[] = { "http_core.c", "mod_ssl.c",
                                          "mod_http2.c", "mod_reqtimeout.c",
                                          NULL };

    ap_hook_process_connection(ws_process_connection, NULL, before,
                               APR_HOOK_MIDDLE);
    ap_hook_suspend_connection(ws_suspend_connection, NULL, NULL,
                               APR_HOOK_MIDDLE);
    ap_hook_resume_connection(ws_resume_connection, NULL, NULL,
                              APR_HOOK_MIDDLE);
    ap_hook_pre_close_connection(ws_pre_close_connection, NULL, NULL,
                                 APR_HOOK_MIDDLE);
}
