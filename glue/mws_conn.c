/*
 * mws_conn.c -- the connection object handlers hold (mws_conn): creation,
 * reference counting, the end of its life.
 *
 * Locking: mc->lock guards the queue, the timers, the state and the
 * reference count.  No callback into the handler runs with it held, and the
 * code never holds two connections' locks at once.  The driver's state of
 * a connection (mws_drive, mws_pass.c) is touched only by its owner.
 */
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <sched.h>
#include <sys/socket.h>

#include "apr_strings.h"
#include "apr_portable.h"
#include "apr_thread_proc.h"
#include "httpd.h"
#include "http_core.h"
#include "http_log.h"
#include "http_connection.h"
#include "util_filter.h"
#include "ap_mpm.h"
#include "mpm_common.h"
#include "http_request.h"

#include "mws_private.h"


static uint64_t mws_next_id;

/* What leaves a connection when it ends, installed by the layers above
 * (the registry, channels) when the module registers its hooks. */
#define MWS_MAX_END_HOOKS 4
static void (*end_hooks[MWS_MAX_END_HOOKS])(mws_conn *mc);
static int n_end_hooks;

void mws_conn_on_end(void (*fn)(mws_conn *mc))
{
    int i;

    for (i = 0; i < n_end_hooks; ++i) {
        if (end_hooks[i] == fn) {
            return;             /* register_hooks runs again at a restart */
        }
    }
    if (n_end_hooks < MWS_MAX_END_HOOKS) {
        end_hooks[n_end_hooks++] = fn;
    }
}

/* ---- lifecycle -------------------------------------------------------- */

/* The key of a refused handshake's body in c->pool's user data: the next
 * upgrade request on the same keep-alive connection takes it, so that
 * refusals do not grow the connection's pool. */
#define MWS_SPARE_BODY "mws-spare-body"

/* What the body holds outside c->pool (lock held, or the last user). */
static void body_teardown(struct mws_conn_body *b)
{
    mws_queue_pmd_free(b);
    if (b->pmd_kept) {
        b->pmd_kept = 0;
        mws_pmd_context_give();
    }
    free(b->close_reason);
    b->close_reason = NULL;
    if (b->io_cond) {
        pthread_cond_destroy(b->io_cond);
        free(b->io_cond);
        b->io_cond = NULL;
    }
}

/* Part b from its handle, which keeps answering "dead" without it. */
static void body_detach(struct mws_conn_body *b)
{
    mws_conn *mc = b->mc;

    if (!mc) {
        return;
    }
    pthread_mutex_lock(&mc->lock);
    mc->b = NULL;
    pthread_mutex_unlock(&mc->lock);
    b->mc = NULL;
    body_teardown(b);
    mws_conn_release(mc);       /* the body's reference */
}

/* c->pool goes: the body with it.  Normally the connection ended before
 * (mws_drive_finish).  Not when the child exits from under it: prefork
 * destroys the connection's pool, a subpool of the child's, before the
 * child pool's cleanups that would report on_close (instances_shutdown):
 * the handler hears it now, as mws_registry_report_all() says it. */
static apr_status_t body_cleanup(void *data)
{
    struct mws_conn_body *b = data;
    mws_conn *mc = b->mc;
    int dead;

    if (mc) {
        pthread_mutex_lock(&mc->lock);
        dead = mc->state == MWS_ST_DEAD;
        pthread_mutex_unlock(&mc->lock);
        if (!dead) {
            /* 1001 only if the client was told so; else 1006 */
            if (__atomic_load_n(&b->close_sent, __ATOMIC_ACQUIRE)) {
                mws_handler_close(mc, (int)b->close_code,
                                  "server shutting down", 20);
            }
            else {
                mws_handler_close(mc, WS_CLOSE_ABNORMAL, "", 0);
            }
            mws_conn_kill(mc);
        }
    }
    body_detach(b);
    return APR_SUCCESS;
}

mws_conn *mws_conn_create(request_rec *r, mws_instance *inst,
                          const mws_dir_conf *dconf,
                          const mws_limits *limits)
{
    conn_rec *c = r->connection;
    mws_conn *mc = calloc(1, sizeof(*mc));
    struct mws_conn_body *b = NULL;
    void *spare = NULL;

    if (!mc) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, APR_ENOMEM, r, MWS_LOGNO(00006)
                      "cannot allocate a WebSocket connection");
        return NULL;
    }
    if (apr_pool_userdata_get(&spare, MWS_SPARE_BODY, c->pool) == APR_SUCCESS
        && spare && !((struct mws_conn_body *)spare)->mc) {
        b = spare;              /* its cleanup is registered already */
        apr_pool_userdata_setn(NULL, MWS_SPARE_BODY, NULL, c->pool);
        memset(b, 0, sizeof(*b));
    }
    else {
        b = apr_pcalloc(c->pool, sizeof(*b));
        apr_pool_cleanup_register(c->pool, b, body_cleanup,
                                  apr_pool_cleanup_null);
    }
    pthread_mutex_init(&mc->lock, NULL);
    mc->refs = 2;               /* the driver's and the body's */
    mc->b = b;
    b->mc = mc;
    mc->state = MWS_ST_HANDSHAKE;
    mc->id = __atomic_add_fetch(&mws_next_id, 1, __ATOMIC_RELAXED);
    b->c = c;
    b->r = r;
    mc->inst = inst;
    b->limits = mws_limits_shared(limits, c->pool);
    b->hold.section = b->hold.addr = -1;
    b->stat_line = -1;
    /* the merged array may be the request's; its strings are the
     * configuration's (directive arguments), which outlive the
     * connection: copy the pairs only, and nothing when there are none */
    if ((b->noptions = dconf->options->nelts) > 0) {
        b->options = apr_pmemdup(c->pool, dconf->options->elts,
                                 sizeof(mws_option) * (size_t)b->noptions);
    }
    return mc;
}

mws_conn *mws_conn_retain(mws_conn *mc)
{
    pthread_mutex_lock(&mc->lock);
    ++mc->refs;
    pthread_mutex_unlock(&mc->lock);
    return mc;
}

/* The last reference goes after the body's (which c->pool's cleanup
 * drops): only the handle is left to free. */
void mws_conn_release(mws_conn *mc)
{
    unsigned left;

    pthread_mutex_lock(&mc->lock);
    left = --mc->refs;
    pthread_mutex_unlock(&mc->lock);
    if (left == 0) {
        pthread_mutex_destroy(&mc->lock);
        free(mc);
    }
}

/* Mark the connection gone: later calls from any thread fail, queued data
 * and timers are dropped.  Called by the connection's own thread. */
void mws_conn_kill(mws_conn *mc)
{
    int i;

    pthread_mutex_lock(&mc->lock);
    mc->state = MWS_ST_DEAD;
    mc->b->pollset = NULL;
    mws_timer_free_all(mc);
    mws_queue_free_all(mc);
    pthread_mutex_unlock(&mc->lock);
    for (i = 0; i < n_end_hooks; ++i) {
        end_hooks[i](mc);
    }
    mws_limits_release(&mc->b->hold);
}

/* The server is stopping or restarting: close with 1001 once everything
 * queued before has been written.  Any thread. */
void mws_conn_going_away(mws_conn *mc)
{
    mws_queue_close(mc, WS_CLOSE_GOING_AWAY, "server shutting down");
}

/*
 * The child is told to stop at once.  child_stopping() has queued a 1001
 * on every connection; its driver writes it where that is safe now
 * (mws_blocking.c, mws_park.c).  worker (and event's busy workers) shut
 * their sockets before child_stopping runs: those clients see EOF and
 * handlers hear 1006.
 */
void mws_conn_last_words(mws_conn *mc)
{
    const mws_driver_ops *ops = __atomic_load_n(&mc->ops, __ATOMIC_ACQUIRE);

    if (ops && ops->last_words) {
        ops->last_words(mc);
    }
}

/* A pass of a callback runs (mws_park.c): wait until it ends (lock held).
 * The condition variable is made by the first wait, which is rare (input
 * came while a callback wrote), so that idle connections do not carry one;
 * without memory for it, the lock is given up for a moment instead. */
void mws_conn_io_wait_locked(mws_conn *mc)
{
    struct mws_conn_body *b = mc->b;

    if (!b->io_cond && (b->io_cond = malloc(sizeof(*b->io_cond))) != NULL
        && pthread_cond_init(b->io_cond, NULL) != 0) {
        free(b->io_cond);
        b->io_cond = NULL;
    }
    if (!b->io_cond) {
        pthread_mutex_unlock(&mc->lock);
        sched_yield();
        pthread_mutex_lock(&mc->lock);
        return;
    }
    ++b->io_waiters;
    pthread_cond_wait(b->io_cond, &mc->lock);
    --b->io_waiters;
}

void mws_conn_io_signal_locked(mws_conn *mc)
{
    if (mc->b->io_waiters && mc->b->io_cond) {
        pthread_cond_broadcast(mc->b->io_cond);
    }
}

/* The handshake was refused: the connection never opened. */
void mws_conn_abort(mws_conn *mc)
{
    struct mws_conn_body *b = mc->b;
    conn_rec *c = b->c;

    mws_conn_kill(mc);
    /* the connection may carry more requests: its body waits for the
     * next upgrade instead of staying in c->pool unused */
    body_detach(b);
    apr_pool_userdata_setn(b, MWS_SPARE_BODY, NULL, c->pool);
    mws_conn_release(mc);
}
