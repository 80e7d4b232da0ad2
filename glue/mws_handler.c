/*
 * mws_handler.c -- calls into a handler's callbacks.  Every call goes through
 * here, so that the thread knows which handler instance runs (channels are
 * scoped by it) and on_close runs exactly once per opened connection.
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


/* The WebSocketHandler line whose callback runs on this thread (NULL: none,
 * e.g. a handler's own thread). */
static __thread mws_instance *cur_inst;

mws_instance *mws_instance_enter(mws_instance *inst)
{
    mws_instance *prev = cur_inst;

    cur_inst = inst;
    return prev;
}

void mws_instance_leave(mws_instance *prev)
{
    cur_inst = prev;
}

mws_instance *mws_instance_current(void)
{
    return cur_inst;
}

int mws_handler_message(mws_conn *mc, mws_msg_type type, const void *data,
                        size_t len)
{
    mws_instance *prev = mws_instance_enter(mc->inst);
    int rc = mc->inst->h->on_message(mc, type, data, len);

    mws_instance_leave(prev);
    return rc;
}

int mws_handler_fragment(mws_conn *mc, mws_msg_type type, const void *data,
                         size_t len, int first, int last)
{
    mws_instance *prev = mws_instance_enter(mc->inst);
    int rc = mc->inst->h->on_fragment(mc, type, data, len, first, last);

    mws_instance_leave(prev);
    return rc;
}

void mws_handler_timer(mws_conn *mc, mws_timer_fn fn, void *arg)
{
    mws_instance *prev = mws_instance_enter(mc->inst);

    fn(mc, arg);
    mws_instance_leave(prev);
}

/* Call the handler's on_close, exactly once per opened connection, from
 * whichever path gets there first (the driver, or the child's exit). */
void mws_handler_close(mws_conn *mc, int code, const char *reason,
                       size_t reason_len)
{
    const mws_handler *h = mc->inst->h;

    if (mc->opened && !__atomic_exchange_n(&mc->close_reported, 1,
                                           __ATOMIC_ACQ_REL)
        && h->on_close) {
        mws_instance *prev = mws_instance_enter(mc->inst);
        h->on_close(mc, code, reason, reason_len);
        mws_instance_leave(prev);
    }
}
