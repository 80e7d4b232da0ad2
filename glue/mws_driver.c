/*
 * mws_driver.c -- which driver runs a WebSocket (parked under the event MPM,
 * blocking elsewhere), and the start of both after the 101.
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

static int mws_can_park;        /* this MPM can wait for input for us */

void mws_driver_child_init(apr_pool_t *pchild, server_rec *s)
{
    int async = 0, waitio = 0;

#ifdef AP_MPMQ_CAN_WAITIO
    if (ap_mpm_query(AP_MPMQ_IS_ASYNC, &async) != APR_SUCCESS) {
        async = 0;
    }
    if (ap_mpm_query(AP_MPMQ_CAN_WAITIO, &waitio) != APR_SUCCESS) {
        waitio = 0;
    }
#endif
    mws_can_park = async && waitio;
    mws_blocking_child_init();
    if (mws_can_park) {
        apr_status_t rv = mws_park_child_init(pchild);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, MWS_LOGNO(00022)
                         "cannot start the wake-up thread: WebSockets use "
                         "the blocking driver in this process");
            mws_can_park = 0;
        }
    }
}

/* Will the connection wait in the MPM's pollset, without a thread? */
static int conn_can_park(conn_rec *c, int allow_park)
{
    return allow_park && mws_can_park && !c->master && c->cs;
}

/* The handshake is accepted; the 101 goes out next.  An idle parked
 * WebSocket should cost its connection pool's block and its bucket
 * allocator's block, nothing more, so from here on the connection's
 * allocator gives every block it gets back to the system at once.  It must
 * be lowered before the handshake frees anything: the 101's write buffer
 * and our first read's buffer (two 8 KiB blocks) would otherwise stay on
 * the allocator's free list for as long as the connection sleeps, since a
 * lower max-free only applies to later frees.  mws_drive_finish() restores it
 * before the MPM recycles the pool. */
void mws_conn_accept(mws_conn *mc, int allow_park)
{
    if (conn_can_park(mc->b->c, allow_park) && !mc->b->max_free_lowered) {
        apr_allocator_max_free_set(apr_pool_allocator_get(mc->b->c->pool), 1);
        mc->b->max_free_lowered = 1;
    }
}

/* After the 101: run the connection.  Blocking drivers return when it is
 * over; the parked driver returns at once and the MPM calls us back. */
void mws_conn_start(mws_conn *mc, int allow_park)
{
    conn_rec *c = mc->b->c;
    mws_drive *dv = mws_drive_create(mc);

    ap_set_module_config(c->conn_config, &websocket_module, dv);
    mc->b->r = NULL;               /* the request ends before the connection */
    pthread_mutex_lock(&mc->lock);
    mc->state = MWS_ST_OPEN;
    mws_set_io(mc, MWS_IO_OWNED);
    mc->async = conn_can_park(c, allow_park);
    mc->ops = mc->async ? &mws_park_ops : &mws_blocking_ops;
    pthread_mutex_unlock(&mc->lock);
    mws_stats_open(mc, mc->async);
    /* httpd's Timeout is how long a client may stay silent: parked, the
     * MPM closes the connection then; blocking, we do.  Client input
     * (a pong too) resets it, so ping well before it runs out. */
    if (!mc->b->limits->ping_interval || !mc->async) {
        mws_limits l = *mc->b->limits;

        if (!l.ping_interval) {
            l.ping_interval = c->base_server->timeout / 2;
        }
        if (!mc->async) {
            l.read_timeout = c->base_server->timeout;
        }
        pthread_mutex_lock(&mc->lock);
        mc->b->limits = mws_limits_shared(&l, c->pool);
        pthread_mutex_unlock(&mc->lock);
    }
    ap_log_cerror(APLOG_MARK, APLOG_TRACE1, 0, c,
                  "ws(%" APR_UINT64_T_FMT "): open, handler %s, %s driver",
                  (apr_uint64_t)mc->id, mc->inst->name,
                  mc->async ? "parked" : "blocking");
    if (!mc->async) {
        mws_blocking_run(dv);
        return;
    }
    if (mws_drive_input(dv)) {
        mws_drive_finish(dv);
        return;
    }
    /* httpd ends the request; the MPM flushes, then polls for input and,
     * with the clogging flag, calls ws_process_connection() */
    c->cs->sense = CONN_SENSE_WANT_READ;
    c->clogging_input_filters = 1;
}

void mws_driver_register_hooks(void)
{
    mws_park_register_hooks();
}
