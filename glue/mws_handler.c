/*
 * mws_handler.c -- calls into a handler's callbacks.  Every call goes through
 * here, so that the thread knows which handler instance runs (channels are
 * scoped by it) and on_close runs exactly once per opened connection.
 */
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>
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
static __thread const char *cur_what;

mws_call mws_instance_enter(mws_instance *inst, const char *what)
{
    mws_call prev;

    prev.inst = cur_inst;
    prev.what = cur_what;
    cur_inst = inst;
    cur_what = what;
    return prev;
}

void mws_instance_leave(mws_call prev)
{
    cur_inst = prev.inst;
    cur_what = prev.what;
}

mws_instance *mws_instance_current(void)
{
    return cur_inst;
}

int mws_handler_message(mws_conn *mc, mws_msg_type type, const void *data,
                        size_t len)
{
    mws_call prev = mws_instance_enter(mc->inst, "on_message");
    int rc = mc->inst->h->on_message(mc, type, data, len);

    mws_instance_leave(prev);
    return rc;
}

int mws_handler_fragment(mws_conn *mc, mws_msg_type type, const void *data,
                         size_t len, int first, int last)
{
    mws_call prev = mws_instance_enter(mc->inst, "on_fragment");
    int rc = mc->inst->h->on_fragment(mc, type, data, len, first, last);

    mws_instance_leave(prev);
    return rc;
}

void mws_handler_timer(mws_conn *mc, mws_timer_fn fn, void *arg)
{
    mws_call prev = mws_instance_enter(mc->inst, "timer");

    fn(mc, arg);
    mws_instance_leave(prev);
}

/* Call the handler's on_close, exactly once per opened connection, from
 * whichever path gets there first (the driver, or the child's exit). */
void mws_handler_close(mws_conn *mc, int code, const char *reason,
                       size_t reason_len)
{
    const mws_handler *h = mc->inst->h;

    if (mc->b->opened && !__atomic_exchange_n(&mc->b->close_reported, 1,
                                           __ATOMIC_ACQ_REL)
        && h->on_close) {
        mws_call prev = mws_instance_enter(mc->inst, "on_close");
        h->on_close(mc, code, reason, reason_len);
        mws_instance_leave(prev);
    }
}

/*
 * A handler that crashes takes its child with it; httpd's log then says
 * only that a child died (AH00052).  While a callback runs, a fatal signal
 * first writes a line naming the handler, its WebSocketHandler line and
 * the callback to the error log (the children's stderr), with nothing but
 * write(2) (async-signal-safe), then lets the previous action (httpd's, or
 * the default) have the signal.
 */
static const int crash_sigs[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT };
#define MWS_NCRASH (sizeof(crash_sigs) / sizeof(crash_sigs[0]))
static struct sigaction crash_old[MWS_NCRASH];

static void put(char **p, const char *end, const char *s)
{
    while (s && *s && *p < end) {
        *(*p)++ = *s++;
    }
}

static void put_num(char **p, const char *end, long v)
{
    char digits[24];
    int n = 0;

    if (v < 0) {
        put(p, end, "-");
        v = -v;
    }
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < (int)sizeof(digits));
    while (n && *p < end) {
        *(*p)++ = digits[--n];
    }
}

static void on_crash(int sig, siginfo_t *si, void *uc)
{
    const mws_instance *inst = cur_inst;
    char line[768], *p = line;
    const char *end = line + sizeof(line) - 1;
    size_t i;

    if (inst) {
        /* counters in shared memory: a replaced child dies again, and
         * the line says how often */
        long n = inst->crashes
                 ? (long)__atomic_add_fetch(inst->crashes, 1, __ATOMIC_RELAXED)
                 : 0;
        long k = (inst->init_crashes && cur_what && !strcmp(cur_what, "init"))
                 ? (long)__atomic_add_fetch(inst->init_crashes, 1,
                                            __ATOMIC_RELAXED)
                 : 0;

        put(&p, end, "[websocket:crit] [pid ");
        put_num(&p, end, (long)getpid());
        put(&p, end, "] " MWS_LOGNO(00081) "the child dies of signal ");
        put_num(&p, end, sig);
        put(&p, end, " in the ");
        put(&p, end, cur_what ? cur_what : "?");
        put(&p, end, " callback of handler ");
        put(&p, end, inst->name);
        put(&p, end, " (");
        put(&p, end, inst->where);
        put(&p, end, ")");
        if (n) {
            put(&p, end, "; crash ");
            put_num(&p, end, n);
            put(&p, end, " of this handler since httpd started");
        }
        if (k) {
            put(&p, end, "; init crashed ");
            put_num(&p, end, k);
            put(&p, end, " time(s) in a row (new children stop calling it "
                         "after 3)");
        }
        put(&p, end, "\n");
        if (write(STDERR_FILENO, line, (size_t)(p - line)) < 0) {
            /* nothing else can be done here */
        }
    }
    for (i = 0; i < MWS_NCRASH; ++i) {
        if (crash_sigs[i] == sig) {
            sigaction(sig, &crash_old[i], NULL);
        }
    }
    if (si && si->si_code <= 0) {
        raise(sig);             /* sent (kill, abort): send it again */
    }
    /* a fault: returning repeats it under the previous action */
}

void mws_handler_crash_names(void)
{
    struct sigaction sa;
    size_t i;

    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_crash;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    for (i = 0; i < MWS_NCRASH; ++i) {
        sigaction(crash_sigs[i], &sa, &crash_old[i]);
    }
}
