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

mws_conn *mws_conn_create(request_rec *r, mws_instance *inst,
                          const mws_dir_conf *dconf,
                          const mws_limits *limits)
{
    mws_conn *mc = calloc(1, sizeof(*mc));
    int i;

    if (!mc) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, APR_ENOMEM, r, MWS_LOGNO(00006)
                      "cannot allocate a WebSocket connection");
        return NULL;
    }
    pthread_mutex_init(&mc->lock, NULL);
    pthread_cond_init(&mc->io_cond, NULL);
    mc->refs = 1;               /* the driver's */
    mc->state = MWS_ST_HANDSHAKE;
    mc->id = __atomic_add_fetch(&mws_next_id, 1, __ATOMIC_RELAXED);
    mc->c = r->connection;
    mc->r = r;
    mc->inst = inst;
    mc->limits = *limits;
    mc->hold.section = mc->hold.addr = -1;
    mc->stat_line = -1;
    mc->options = apr_table_make(r->connection->pool, dconf->options->nelts);
    for (i = 0; i < dconf->options->nelts; ++i) {
        mws_option *o = &APR_ARRAY_IDX(dconf->options, i, mws_option);
        apr_table_setn(mc->options, o->key, o->value);
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

void mws_conn_release(mws_conn *mc)
{
    unsigned left;

    pthread_mutex_lock(&mc->lock);
    left = --mc->refs;
    pthread_mutex_unlock(&mc->lock);
    if (left == 0) {
        mws_queue_free_all(mc);
        mws_accesslog_free(mc);
        mws_queue_pmd_free(mc);
        if (mc->pmd_kept) {
            mws_pmd_context_give();
        }
        free(mc->close_reason);
        pthread_cond_destroy(&mc->io_cond);
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
    mc->pollset = NULL;
    mws_timer_free_all(mc);
    mws_queue_free_all(mc);
    pthread_mutex_unlock(&mc->lock);
    for (i = 0; i < n_end_hooks; ++i) {
        end_hooks[i](mc);
    }
    mws_limits_release(&mc->hold);
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

/* The handshake was refused: the connection never opened. */
void mws_conn_abort(mws_conn *mc)
{
    mws_conn_kill(mc);
    mws_conn_release(mc);
}
