/*
 * mws_stay.c -- hot connections stay on their workers, served together.
 *
 * A connection that just had input is likely to have more (a client that
 * answers each reply, a stream of messages).  Handing it back to the event
 * MPM after every message costs the MPM's round trip: the listener's poll,
 * the queue, a worker's wake-up, two epoll_ctl calls (about 1,800
 * instructions and two context switches a message, docs/design.md).  So
 * its worker keeps it for a while.  Waiting alone, each staying worker
 * would still be woken once per message; on a busy CPU those wake-ups are
 * most of the cost (perf: 60 % of the server's time in context switches
 * at 10 connections, depth 1).  So the staying connections of a child are
 * served together, as a single-threaded server would serve them: their
 * sockets sit in one epoll set, one of their workers (the leader) waits
 * on it and serves every connection that has input, its own or another's,
 * while the other workers sleep until their own connection leaves the set.
 * One wake-up then serves as many messages as arrived meanwhile.
 *
 * Each staying connection still has its own worker, which owns it for the
 * MPM (mc->io is OWNED); the leader serves it only while that worker
 * sleeps here, so one thread at a time touches a connection.  A member
 * leaves the set (and its worker wakes up and parks it in the MPM) after
 * MWS_STAY_USEC without input, after MWS_STAY_PASSES passes (other
 * connections' fairness), when it is finished, or when it may not stay (its
 * queue is over its cap, its writes block, it closes).  At most a quarter
 * of the child's threads stay (the rest stay free for new work), and only
 * plain-socket connections (the poll must see every byte that waits).
 * An idle connection still holds no thread.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include "httpd.h"
#include "http_log.h"
#include "ap_mpm.h"
#include "scoreboard.h"

#include "mws_private.h"

#define MWS_STAY_USEC   500
#define MWS_STAY_PASSES 64
#define MWS_STAY_EVENTS 32
/* A pass longer than this in which the thread blocked (a handler that
 * sleeps or waits) would delay the others again: its connection leaves the
 * set and may not stay for MWS_STAY_BENCH_USEC.  Wall time alone is not
 * proof: on a busy CPU a pass is often preempted for longer, which delays
 * nobody's turn more than any other thread's, and benching on it stopped
 * most stays (10 connections, depth 1: 20,000 msgs/s instead of 90,000).
 * So the thread's voluntary context switches tell (getrusage, read once per
 * wake-up of the leader, and only while it serves others too). */
#define MWS_STAY_SLOW_USEC  2000
#define MWS_STAY_BENCH_USEC (10 * APR_USEC_PER_SEC)

typedef struct stay_entry stay_entry;
static unsigned long stay_led, stay_led_others;  /* passes: the leader's */
static int stay_most;           /* the most that stayed at once, this term */
struct stay_entry {
    mws_drive *dv;
    stay_entry *next, *prev;      /* in the set, under stay_mu            */
    apr_time_t last_input;
    int passes;
    int finished;               /* the connection's last pass said so   */
    int released;               /* out of the set: its worker takes over */
    pthread_cond_t cond;        /* its worker sleeps on it              */
};

static pthread_mutex_t stay_mu = PTHREAD_MUTEX_INITIALIZER;
static int stay_ep = -1;        /* epoll set of the staying sockets     */
static int stay_leader;         /* a worker leads (under stay_mu)       */
static int stay_n;
/* How many may stay.  A quarter of the child's threads always may; more,
 * up to all but a fifth, while at least a fifth of the threads wait idle
 * for other work (the scoreboard, looked at once a millisecond at most):
 * a busy child gets its threads back from the connections that stay. */
static int stay_base, stay_max, stay_reserve, stay_threads;
static int stay_slot = -1;      /* this child's scoreboard slot         */
static int stay_idle;           /* idle workers at the last look        */
static apr_time_t stay_looked;
static int stay_turned_away;    /* a connection found the set full      */
static stay_entry *stay_head;

/* Idle workers of this child, from the scoreboard (-1: unknown). */
static int idle_workers(void)
{
    int i, n = 0, limit = 0;
    pid_t me = getpid();

    if (!ap_scoreboard_image) {
        return -1;
    }
    if (stay_slot < 0 || ap_scoreboard_image->parent[stay_slot].pid != me) {
        ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &limit);
        stay_slot = -1;
        for (i = 0; i < limit; ++i) {
            if (ap_scoreboard_image->parent[i].pid == me) {
                stay_slot = i;
                break;
            }
        }
        if (stay_slot < 0) {
            return -1;
        }
    }
    for (i = 0; i < stay_threads; ++i) {
        n += ap_scoreboard_image->servers[stay_slot][i].status
             == SERVER_READY;
    }
    return n;
}

/* Whether the child has workers to spare beyond stay_base (stay_mu held). */
static int spare_workers_locked(apr_time_t now)
{
    if (now - stay_looked >= 1000) {
        stay_looked = now;
        stay_idle = idle_workers();
    }
    return stay_idle > stay_reserve;
}

/* May one more connection stay (stay_mu held)? */
static int room_locked(apr_time_t now)
{
    return stay_n < stay_base
           || (stay_n < stay_max && spare_workers_locked(now));
}

/* May the connection (still) stay?  Past MWS_STAY_PASSES only while no
 * other connection was turned away: handing a connection back to the MPM
 * costs it the MPM's round trip for its next message, worth paying only
 * to give another connection its turn. */
static int may_stay(const mws_drive *dv, int passes)
{
    return dv->plain_fd >= 0 && dv->plain_in && passes >= 0
           && (passes < MWS_STAY_PASSES
               || !__atomic_load_n(&stay_turned_away, __ATOMIC_RELAXED))
           && !dv->read_paused && !dv->done && !dv->closing
           && !dv->write_blocked && dv->now >= dv->stay_not_before;
}

/* Out of the set; its worker wakes up (stay_mu held).  Not touched after:
 * its worker may return at once and the entry lives on its stack. */
static void release_locked(stay_entry *s, stay_entry *self)
{
    if (s->prev) {
        s->prev->next = s->next;
    }
    else {
        stay_head = s->next;
    }
    if (s->next) {
        s->next->prev = s->prev;
    }
    --stay_n;
    epoll_ctl(stay_ep, EPOLL_CTL_DEL, s->dv->plain_fd, NULL);
    s->released = 1;
    if (s != self) {
        pthread_cond_signal(&s->cond);
    }
}

/* The calling thread's voluntary context switches so far. */
static long thread_blocks(void)
{
    struct rusage ru;

    return getrusage(RUSAGE_THREAD, &ru) == 0 ? ru.ru_nvcsw : -1;
}

/* One pass for a member that has input (need_read) or queued work.  One
 * pass reads at most its budget: what is left is still in the socket
 * (plain path), the set reports it again, and the others get their turn
 * first.  Its writes stop where the client's socket is full, rather than
 * wait for the client as an owner's would: the leader serves the others
 * too, and a client that does not read must not stall them. */
static void serve(stay_entry *s, int need_read, long blocks)
{
    mws_drive *dv = s->dv;
    apr_time_t before = dv->last_read;

    dv->write_careful = 1;
    s->finished = mws_drive_pass(dv, need_read);
    dv->write_careful = 0;
    if (blocks >= 0 && apr_time_now() - dv->now > MWS_STAY_SLOW_USEC
        && thread_blocks() > blocks) {
        dv->stay_not_before = dv->now + MWS_STAY_BENCH_USEC;
    }
    if (dv->last_read != before) {
        s->last_input = dv->last_read;
        ++s->passes;
    }
}

/* Wait for input on the set until the time given (0: no deadline). */
static int stay_wait(struct epoll_event *ev, apr_time_t until,
                     apr_time_t now)
{
    apr_time_t left = until - now;
    struct timespec ts;
    int n;

    if (left < 0) {
        left = 0;
    }
    ts.tv_sec = (time_t)apr_time_sec(left);
    ts.tv_nsec = (long)apr_time_usec(left) * 1000L;
    n = epoll_pwait2(stay_ep, ev, MWS_STAY_EVENTS, &ts, NULL);
    if (n < 0 && errno == ENOSYS) {
        /* kernels before 5.11: millisecond resolution, rounded up */
        n = epoll_wait(stay_ep, ev, MWS_STAY_EVENTS,
                       (int)((left + 999) / 1000));
    }
    return n;
}

/* Lead until our own connection leaves the set (stay_mu held on entry
 * and on return). */
static void lead(stay_entry *self)
{
    struct epoll_event ev[MWS_STAY_EVENTS];
    stay_entry *s, *next;
    apr_time_t until, now;
    int i, n, turned_away, stay;
    long blocks;

    now = apr_time_now();
    while (!self->released) {
        until = 0;
        for (s = stay_head; s; s = s->next) {
            if (!until || s->last_input + MWS_STAY_USEC < until) {
                until = s->last_input + MWS_STAY_USEC;
            }
        }
        pthread_mutex_unlock(&stay_mu);
        n = stay_wait(ev, until, now);
        /* alone in the set, a callback that blocks delays nobody */
        blocks = n > 0 && __atomic_load_n(&stay_n, __ATOMIC_RELAXED) > 1
                 ? thread_blocks() : -1;
        /* members are only released by the leader: the entries the
         * events point at are alive until we release them */
        for (i = 0; i < n; ++i) {
            serve(ev[i].data.ptr, 1, blocks);
            stay_led_others += ev[i].data.ptr != self;
        }
        stay_led += n > 0 ? (unsigned long)n : 0;
        now = apr_time_now();
        pthread_mutex_lock(&stay_mu);
        turned_away = stay_turned_away;
        __atomic_store_n(&stay_turned_away, 0, __ATOMIC_RELAXED);
        if (stay_n > stay_base && !spare_workers_locked(now)) {
            /* the child runs short of idle workers: the connection that
             * had the most passes goes back to the MPM, and its worker
             * with it */
            stay_entry *most = stay_head;

            for (s = stay_head; s; s = s->next) {
                if (s->passes > most->passes) {
                    most = s;
                }
            }
            most->passes = MWS_STAY_PASSES;
            turned_away = 1;
        }
        for (s = stay_head; s; s = next) {
            next = s->next;
            stay = !s->finished && may_stay(s->dv, s->passes);
            if (stay && __atomic_load_n(&s->dv->mc->work_pending,
                                        __ATOMIC_ACQUIRE)) {
                /* another thread queued something for it */
                pthread_mutex_unlock(&stay_mu);
                serve(s, 0, -1);
                pthread_mutex_lock(&stay_mu);
                next = s->next;
                stay = !s->finished && may_stay(s->dv, s->passes);
            }
            if (!stay || (turned_away && s->passes >= MWS_STAY_PASSES)
                || now - s->last_input >= MWS_STAY_USEC) {
                release_locked(s, self);
            }
        }
    }
}

int mws_stay(mws_drive *dv, int passes, int *finished)
{
    stay_entry s;
    struct epoll_event ev;

    if (stay_ep < 0 || !may_stay(dv, passes)) {
        return 0;
    }
    memset(&s, 0, sizeof(s));
    s.dv = dv;
    s.passes = passes;
    s.last_input = dv->last_read;
    pthread_mutex_lock(&stay_mu);
    if (!room_locked(dv->now)) {
        __atomic_store_n(&stay_turned_away, 1, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&stay_mu);
        return 0;
    }
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = &s;
    if (epoll_ctl(stay_ep, EPOLL_CTL_ADD, dv->plain_fd, &ev) != 0) {
        pthread_mutex_unlock(&stay_mu);
        return 0;
    }
    pthread_cond_init(&s.cond, NULL);
    s.next = stay_head;
    if (stay_head) {
        stay_head->prev = &s;
    }
    stay_head = &s;
    if (++stay_n > stay_most) {
        stay_most = stay_n;
    }
    while (!s.released) {
        if (!stay_leader) {
            stay_leader = 1;
            stay_led = stay_led_others = 0;
            stay_most = stay_n;
            lead(&s);
            stay_leader = 0;
            ap_log_cerror(APLOG_MARK, APLOG_TRACE2, 0, dv->c,
                          "ws: led the hot set: %lu passes with input, %lu "
                          "for other workers' connections, up to %d staying",
                          stay_led, stay_led_others, stay_most);
            if (stay_head) {
                /* a member's worker takes over the lead */
                pthread_cond_signal(&stay_head->cond);
            }
            break;
        }
        pthread_cond_wait(&s.cond, &stay_mu);
    }
    pthread_mutex_unlock(&stay_mu);
    pthread_cond_destroy(&s.cond);
    *finished = s.finished;
    return 1;
}

apr_status_t mws_stay_child_init(apr_pool_t *pchild)
{
    int threads = 0;

    ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads);
    stay_threads = threads;
    stay_base = threads >= 8 ? threads / 4 : 1;
    stay_reserve = threads / 5;
    stay_max = threads - stay_reserve > stay_base ? threads - stay_reserve
                                                  : stay_base;
    stay_ep = epoll_create1(EPOLL_CLOEXEC);
    if (stay_ep < 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, errno, NULL, MWS_LOGNO(00168)
                     "epoll_create1 failed: hot WebSockets will "
                     "wait for input in the MPM after each message");
    }
    return APR_SUCCESS;
}
