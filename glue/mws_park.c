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
 * callback running waits for it.  Later wake-ups: mws_wakeq.c.  See
 * docs/design.md.
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
#include "apr_strings.h"
#include "util_filter.h"

#include "mws_private.h"


static void async_cb(void *baton);


/* A parked connection with no callback coming: the caller takes a
 * reference and promises one (lock held).  1 if claimed. */
static int park_claim_locked(mws_conn *mc)
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

/* A broadcast's callback touches thousands of connections that no CPU
 * cache holds (their handles, bodies, locks); while one connection's write
 * is in the kernel, the next ones are fetched.  Prefetching never faults,
 * so a body freed meanwhile (the handle's b goes NULL with the pool) costs
 * nothing; async_cb() decides under the lock whether it may be touched. */
#define MWS_PREFETCH_AHEAD 2

static void batch_cb(void *baton)
{
    mws_batch *b = baton;
    struct mws_conn_body *nb;
    size_t i;

    for (i = 0; i < b->n && i < MWS_PREFETCH_AHEAD; ++i) {
        __builtin_prefetch(b->mc[i], 1);
    }
    for (i = 0; i < b->n; ++i) {
        if (i + MWS_PREFETCH_AHEAD < b->n) {
            __builtin_prefetch(b->mc[i + MWS_PREFETCH_AHEAD], 1);
        }
        if (i + 1 < b->n) {
            /* a racy peek, only for the hint: async_cb() reads b under
             * the lock */
            nb = __atomic_load_n(&b->mc[i + 1]->b, __ATOMIC_RELAXED);
            if (nb) {
                __builtin_prefetch(nb, 0);              /* the queue */
                __builtin_prefetch(&nb->dv, 0);         /* dv, c, limits */
                __builtin_prefetch(&nb->bytes_out, 1);  /* figures */
            }
        }
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

void mws_park_kick_batch(mws_conn **mcs, size_t n)
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
    mws_wakeq_fire_now_locked(mc);
}

/* A callback's turn with a parked connection ends (lock held). */
static void io_park_locked(mws_conn *mc)
{
    mws_set_io(mc, MWS_IO_PARKED);
    mws_conn_io_signal_locked(mc);
}

/* Another thread queued something or added a timer (lock held). */
static void park_kick_locked(mws_conn *mc)
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
    mws_set_io(mc, MWS_IO_CALLBACK);
    dv = mc->b->dv;
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
        mws_wakeq_schedule_locked(mc, dv->next_wake);
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
        mws_conn_io_wait_locked(mc);
    }
    mws_set_io(mc, MWS_IO_OWNED);
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
    mws_set_io(mc, MWS_IO_PARKED);
    if ((mc->work_pending || (mc->b->out.head && !dv->write_blocked))
        && !mc->cb_pending) {
        /* queued after our last look: write it from a callback */
        callback_now_locked(mc);
    }
    mws_wakeq_schedule_locked(mc, dv->next_wake);
    pthread_mutex_unlock(&mc->lock);
}

static void ws_resume_connection(conn_rec *c, request_rec *r)
{
    mws_drive *dv = conn_drive(c);

    if (dv && dv->mc && dv->mc->async) {
        async_take(dv->mc);
    }
}

/* Input within this long before the input that woke a connection: a
 * client in conversation, worth staying for (mws_stay.c); not one that
 * answers a ping once a minute, so that waking thousands of idle
 * connections at once does not make each worker wait in vain. */
#define MWS_HOT_USEC    2000

/* Input arrived for a parked connection (or it was woken to close). */
static int ws_process_connection(conn_rec *c)
{
    mws_drive *dv = conn_drive(c);
    int finished, passes = 0;
    apr_time_t before;

    if (!dv || !dv->mc || !dv->mc->async || !c->cs) {
        return DECLINED;
    }
    c->clogging_input_filters = 0;
    if (dv->mc->io != MWS_IO_OWNED) {
        async_take(dv->mc);     /* resume_connection normally did it */
    }
    mws_alloc_busy(dv);
    before = dv->last_read;
    finished = dv->closing || mws_drive_input(dv);
    if (dv->last_read - before > MWS_HOT_USEC) {
        passes = -1;            /* not in conversation: do not stay */
    }
    if (!finished) {
        mws_stay(dv, passes, &finished);
    }
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
        mws_closed_by(dv->mc, mws_server_stopping() ? MWS_BY_SERVER
                                                    : MWS_BY_TIMEOUT);
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
static void park_last_words(mws_conn *mc)
{
    mws_drive *dv;

    pthread_mutex_lock(&mc->lock);
    if (!mc->async || mc->io != MWS_IO_PARKED || mc->state == MWS_ST_DEAD) {
        pthread_mutex_unlock(&mc->lock);
        return;
    }
    mws_set_io(mc, MWS_IO_CALLBACK);
    dv = mc->b->dv;
    pthread_mutex_unlock(&mc->lock);
    mws_drive_last_words(dv);
    pthread_mutex_lock(&mc->lock);
    io_park_locked(mc);
    pthread_mutex_unlock(&mc->lock);
}

apr_status_t mws_park_child_init(apr_pool_t *pchild)
{
    mws_ncpu = cpus_available();
    mws_stay_child_init(pchild);
    return mws_wakeq_start(pchild, async_cb);
}

/* Another thread queued something or added a timer (lock held). */
static void park_wake_locked(mws_conn *mc, int *claim)
{
    if (!claim || !(*claim = park_claim_locked(mc))) {
        park_kick_locked(mc);
    }
}

const mws_driver_ops mws_park_ops = {
    park_wake_locked,
    mws_wakeq_forget,
    park_last_words
};

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
