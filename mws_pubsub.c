/*
 * mws_pubsub.c -- channels: publish a message to every connection
 * subscribed to a channel, in this child process and in every other child
 * of the server.
 *
 * Within a child: a table channel -> subscribers under one lock.  Across
 * children: every child binds a Unix datagram socket named after its pid in
 * a runtime folder; a publish is delivered locally and sent as one datagram
 * to each other live child (pids from the scoreboard); a receive thread in
 * each child delivers what arrives.  See ../shared notes/cross-child.md for
 * the findings this follows.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>
#include <dirent.h>

#include "apr_strings.h"
#include "apr_hash.h"

#include "httpd.h"
#include "http_core.h"
#include "http_log.h"
#include "ap_mpm.h"
#include "scoreboard.h"
#include "mpm_common.h"
#include "unixd.h"

#include "mws_private.h"

#define MWS_CHANNEL_MAX   200          /* bytes of a channel name         */
/* a message published across children fits one datagram (MWS_PUBLISH_MAX,
 * 64 KiB): the default net.core.wmem_max (208 KiB) bounds a datagram */
#define MWS_DGRAM_MAX     (MWS_PUBLISH_MAX + MWS_CHANNEL_MAX + 8)
#define MWS_SOCKDIR       "mod_websocket"

/* One subscription: a node in its channel's list and in its connection's
 * list, so either side can drop it. */
typedef struct mws_sub {
    struct mws_sub *ch_next, *ch_prev;    /* in the channel */
    struct mws_sub *c_next;               /* in the connection */
    struct mws_channel *ch;
    mws_conn *mc;
} mws_sub;

typedef struct mws_channel {
    char *name;
    mws_sub *subs;
    apr_size_t n;
} mws_channel;

static pthread_mutex_t ps_lock = PTHREAD_MUTEX_INITIALIZER;
static apr_hash_t *channels;      /* name -> mws_channel, in the child pool */

/* cross-child transport */
static const char *sock_dir;      /* absolute folder of the sockets */
static int rx_fd = -1;            /* our bound socket */
static pid_t my_pid;
static apr_thread_t *rx_thread;
static volatile int rx_stop;
static server_rec *ps_server;

/* ---- local delivery ---------------------------------------------------- */

/* Deliver to this child's subscribers.  Returns the number reached. */
static int deliver_local(const char *channel, mws_msg_type type,
                         const void *data, size_t len)
{
    mws_channel *ch;
    mws_sub *s;
    mws_conn **kick = NULL;
    mws_shared *sh = NULL;
    size_t nkick = 0;
    int n = 0, claim;

    pthread_mutex_lock(&ps_lock);
    ch = channels ? apr_hash_get(channels, channel, APR_HASH_KEY_STRING)
                  : NULL;
    if (ch) {
        /* parked receivers are handed to the MPM in batches, not one
         * callback each, and share one copy of the frame; without memory
         * for those, one callback and one copy each */
        kick = malloc(sizeof(*kick) * ch->n);
        sh = kick ? mws_shared_frame(type, data, len) : NULL;
        if (!sh) {
            free(kick);
            kick = NULL;
        }
    }
    for (s = ch ? ch->subs : NULL; s; s = s->ch_next) {
        /* queueing takes only the target's lock, never ours twice */
        if (kick) {
            if (mws_queue_shared_claim(s->mc, type, sh, &claim) == MWS_OK) {
                ++n;
            }
            if (claim) {
                kick[nkick++] = s->mc;
            }
        }
        else if (mws_queue_frame(s->mc, 1, (ws_opcode)type, data, len,
                                 MWS_Q_WHOLE) == MWS_OK) {
            ++n;
        }
    }
    pthread_mutex_unlock(&ps_lock);
    mws_shared_release(sh);     /* the queues hold their own references */
    if (nkick) {
        mws_conn_kick_batch(kick, nkick);
    }
    free(kick);
    return n;
}

int mws_pubsub_subscribe(mws_conn *mc, const char *channel)
{
    mws_channel *ch;
    mws_sub *s;
    size_t clen;

    if (!mc || !channel || !(clen = strlen(channel))
        || clen > MWS_CHANNEL_MAX) {
        return MWS_ERR_INVALID;
    }
    pthread_mutex_lock(&ps_lock);
    if (!channels) {
        pthread_mutex_unlock(&ps_lock);
        return MWS_ERR_STATE;
    }
    pthread_mutex_lock(&mc->lock);
    if (mc->state == MWS_ST_DEAD) {
        pthread_mutex_unlock(&mc->lock);
        pthread_mutex_unlock(&ps_lock);
        return MWS_ERR_CLOSED;
    }
    pthread_mutex_unlock(&mc->lock);
    for (s = mc->subs; s; s = s->c_next) {
        if (!strcmp(s->ch->name, channel)) {
            pthread_mutex_unlock(&ps_lock);
            return MWS_OK;              /* already there */
        }
    }
    ch = apr_hash_get(channels, channel, APR_HASH_KEY_STRING);
    if (!ch) {
        ch = calloc(1, sizeof(*ch));
        if (!ch || !(ch->name = strdup(channel))) {
            free(ch);
            pthread_mutex_unlock(&ps_lock);
            return MWS_ERR_NOMEM;
        }
        apr_hash_set(channels, ch->name, APR_HASH_KEY_STRING, ch);
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        pthread_mutex_unlock(&ps_lock);
        return MWS_ERR_NOMEM;
    }
    s->ch = ch;
    s->mc = mc;
    s->ch_next = ch->subs;
    if (ch->subs) {
        ch->subs->ch_prev = s;
    }
    ch->subs = s;
    ++ch->n;
    s->c_next = mc->subs;
    mc->subs = s;
    pthread_mutex_unlock(&ps_lock);
    return MWS_OK;
}

/* Unlink s from its channel (ps_lock held); frees an empty channel. */
static void sub_unlink(mws_sub *s)
{
    mws_channel *ch = s->ch;

    if (s->ch_prev) {
        s->ch_prev->ch_next = s->ch_next;
    }
    else {
        ch->subs = s->ch_next;
    }
    if (s->ch_next) {
        s->ch_next->ch_prev = s->ch_prev;
    }
    if (--ch->n == 0) {
        apr_hash_set(channels, ch->name, APR_HASH_KEY_STRING, NULL);
        free(ch->name);
        free(ch);
    }
    free(s);
}

int mws_pubsub_unsubscribe(mws_conn *mc, const char *channel)
{
    mws_sub **pp;
    int rv = MWS_ERR_NOTFOUND;

    if (!mc || !channel) {
        return MWS_ERR_INVALID;
    }
    pthread_mutex_lock(&ps_lock);
    for (pp = &mc->subs; *pp; pp = &(*pp)->c_next) {
        if (!strcmp((*pp)->ch->name, channel)) {
            mws_sub *s = *pp;
            *pp = s->c_next;
            sub_unlink(s);
            rv = MWS_OK;
            break;
        }
    }
    pthread_mutex_unlock(&ps_lock);
    return rv;
}

void mws_pubsub_drop_conn(mws_conn *mc)
{
    mws_sub *s, *next;

    pthread_mutex_lock(&ps_lock);
    for (s = mc->subs; s; s = next) {
        next = s->c_next;
        sub_unlink(s);
    }
    mc->subs = NULL;
    pthread_mutex_unlock(&ps_lock);
}

/* ---- across children -------------------------------------------------
 *
 * Each child listens on a Unix SOCK_SEQPACKET socket <dir>/<pid>.sock.  A
 * publisher keeps one connected socket per other child (opened on first
 * use): message boundaries are kept, and unlike datagrams, whose queue is
 * bounded by net.unix.max_dgram_qlen (10 by default, which bursts of chat
 * joins overran), a connection is bounded by its buffer bytes.
 *
 * A message: "MWS1" type(1) channel-length(1) channel payload.
 */
#define MWS_DG_MAGIC "MWS1"
#define MWS_DG_HDR   6
#define MWS_SEND_WAIT_MS 50

typedef struct {
    pid_t pid;
    int fd;
    int congested;      /* the last send had to be dropped */
} mws_peer;

static pthread_mutex_t tx_lock = PTHREAD_MUTEX_INITIALIZER;
static mws_peer *peers;           /* one per scoreboard slot */
static int npeers;
static int wake_fd[2] = { -1, -1 };   /* stops the receive thread */

static void sock_path(char *buf, size_t cap, pid_t pid)
{
    apr_snprintf(buf, cap, "%s/%ld.sock", sock_dir, (long)pid);
}

static int peer_connect(pid_t pid)
{
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    0);
    int bufsize = 1024 * 1024;

    if (fd < 0) {
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof(bufsize));
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    sock_path(sa.sun_path, sizeof(sa.sun_path), pid);
    /* a Unix socket connects at once or fails (EAGAIN: backlog full) */
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Send one message to the peer in slot; tx_lock held.  A child that does
 * not read gets up to 50 ms (once; not again while it stays congested),
 * then loses this message, and only it. */
static void send_to_peer(mws_peer *pe, pid_t pid, const void *msg,
                         size_t len)
{
    struct pollfd pfd;
    int attempt;

    if (pe->pid != pid || pe->fd < 0) {
        if (pe->fd >= 0) {
            close(pe->fd);          /* the slot has a new child */
        }
        pe->pid = pid;
        pe->congested = 0;
        pe->fd = peer_connect(pid);
        if (pe->fd < 0) {
            return;                 /* gone, or not listening yet */
        }
    }
    for (attempt = 0; attempt < 2; ++attempt) {
        if (send(pe->fd, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) {
            pe->congested = 0;
            return;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            close(pe->fd);          /* EPIPE, ECONNRESET: it went away */
            pe->fd = -1;
            return;
        }
        if (attempt || pe->congested) {
            break;
        }
        pfd.fd = pe->fd;
        pfd.events = POLLOUT;
        poll(&pfd, 1, MWS_SEND_WAIT_MS);
    }
    if (!pe->congested) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ps_server, MWS_LOGNO(00013)
                     "publish: child %ld does not read its messages; they "
                     "are dropped until it does", (long)pid);
    }
    pe->congested = 1;
}

int mws_pubsub_publish(const char *channel, mws_msg_type type,
                       const void *data, size_t len)
{
    size_t clen;
    int local, i;
    uint8_t *msg;

    if (!channel || !(clen = strlen(channel)) || clen > MWS_CHANNEL_MAX
        || (type != MWS_TEXT && type != MWS_BINARY) || (len && !data)) {
        return MWS_ERR_INVALID;
    }
    if (type == MWS_TEXT && !ws_utf8_is_valid(data, len)) {
        return MWS_ERR_INVALID;
    }
    if (len > MWS_PUBLISH_MAX) {
        return MWS_ERR_TOO_BIG;
    }
    local = deliver_local(channel, type, data, len);
    if (!peers || !ap_scoreboard_image) {
        return local;
    }
    msg = malloc(MWS_DG_HDR + clen + len);
    if (!msg) {
        return local;
    }
    memcpy(msg, MWS_DG_MAGIC, 4);
    msg[4] = (uint8_t)type;
    msg[5] = (uint8_t)clen;
    memcpy(msg + MWS_DG_HDR, channel, clen);
    if (len) {
        memcpy(msg + MWS_DG_HDR + clen, data, len);
    }
    pthread_mutex_lock(&tx_lock);
    for (i = 0; i < npeers; ++i) {
        pid_t pid = ap_scoreboard_image->parent[i].pid;
        if (pid > 0 && pid != my_pid) {
            send_to_peer(&peers[i], pid, msg, MWS_DG_HDR + clen + len);
        }
    }
    pthread_mutex_unlock(&tx_lock);
    free(msg);
    return local;
}

static void rx_message(const uint8_t *buf, size_t n)
{
    char channel[MWS_CHANNEL_MAX + 1];

    if (n < MWS_DG_HDR || memcmp(buf, MWS_DG_MAGIC, 4) || !buf[5]
        || buf[5] > MWS_CHANNEL_MAX || n < (size_t)MWS_DG_HDR + buf[5]
        || (buf[4] != MWS_TEXT && buf[4] != MWS_BINARY)) {
        return;
    }
    memcpy(channel, buf + MWS_DG_HDR, buf[5]);
    channel[buf[5]] = '\0';
    deliver_local(channel, (mws_msg_type)buf[4], buf + MWS_DG_HDR + buf[5],
                  n - MWS_DG_HDR - buf[5]);
}

/* The receive thread: the listening socket, the stop pipe and one
 * connection per publishing child. */
static void *APR_THREAD_FUNC rx_main(apr_thread_t *thd, void *data)
{
    uint8_t *buf = malloc(MWS_DGRAM_MAX);
    int cap = npeers + 2, n = 2, i, fd;
    struct pollfd *pfds = calloc((size_t)cap, sizeof(*pfds));
    ssize_t got;

    if (!buf || !pfds) {
        free(buf);
        free(pfds);
        return NULL;
    }
    pfds[0].fd = wake_fd[0];
    pfds[0].events = POLLIN;
    pfds[1].fd = rx_fd;
    pfds[1].events = POLLIN;
    while (!rx_stop) {
        if (poll(pfds, (nfds_t)n, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        if (rx_stop || pfds[0].revents) {
            break;
        }
        if (pfds[1].revents & POLLIN) {
            fd = accept4(rx_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0 && n < cap) {
                pfds[n].fd = fd;
                pfds[n].events = POLLIN;
                pfds[n].revents = 0;
                ++n;
            }
            else if (fd >= 0) {
                close(fd);          /* more publishers than slots */
            }
        }
        for (i = 2; i < n; ++i) {
            if (!pfds[i].revents) {
                continue;
            }
            /* drain what is there, one message per recv() */
            while ((got = recv(pfds[i].fd, buf, MWS_DGRAM_MAX, 0)) > 0) {
                rx_message(buf, (size_t)got);
            }
            if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK
                             && errno != EINTR)) {
                close(pfds[i].fd);  /* that child went away */
                pfds[i] = pfds[--n];
                --i;
            }
        }
    }
    for (i = 2; i < n; ++i) {
        close(pfds[i].fd);
    }
    free(pfds);
    free(buf);
    return NULL;
}

static apr_status_t pubsub_child_exit(void *unused)
{
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    apr_status_t trv;
    int i;

    pthread_mutex_lock(&ps_lock);
    channels = NULL;
    pthread_mutex_unlock(&ps_lock);
    if (rx_fd >= 0) {
        rx_stop = 1;
        if (wake_fd[1] >= 0 && write(wake_fd[1], "x", 1) < 0) {
            /* the thread also sees rx_stop at its next message */
        }
        if (rx_thread) {
            apr_thread_join(&trv, rx_thread);
            rx_thread = NULL;
        }
        close(rx_fd);
        rx_fd = -1;
        sock_path(path, sizeof(path), my_pid);
        unlink(path);
    }
    for (i = 0; i < 2; ++i) {
        if (wake_fd[i] >= 0) {
            close(wake_fd[i]);
            wake_fd[i] = -1;
        }
    }
    pthread_mutex_lock(&tx_lock);
    for (i = 0; peers && i < npeers; ++i) {
        if (peers[i].fd >= 0) {
            close(peers[i].fd);
        }
    }
    peers = NULL;                   /* in pchild, which goes now */
    pthread_mutex_unlock(&tx_lock);
    return APR_SUCCESS;
}

void mws_pubsub_child_init(apr_pool_t *pchild, server_rec *s)
{
    struct sockaddr_un sa;
    apr_status_t rv;
    int i, limit = 0;

    ps_server = s;
    my_pid = getpid();
    pthread_mutex_lock(&ps_lock);
    channels = apr_hash_make(pchild);
    pthread_mutex_unlock(&ps_lock);

    if (!sock_dir) {
        return;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    sock_path(sa.sun_path, sizeof(sa.sun_path), my_pid);
    unlink(sa.sun_path);
    rx_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (rx_fd < 0 || bind(rx_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0
        || listen(rx_fd, 512) < 0 || pipe2(wake_fd, O_CLOEXEC) < 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno), s,
                     MWS_LOGNO(00014) "cannot listen on %s: publish reaches "
                     "this child's connections only", sa.sun_path);
        if (rx_fd >= 0) {
            close(rx_fd);
        }
        rx_fd = -1;
        return;
    }
    ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &limit);
    npeers = limit;
    peers = apr_pcalloc(pchild, sizeof(*peers) * (apr_size_t)(limit + 1));
    for (i = 0; i < limit; ++i) {
        peers[i].fd = -1;
    }
    rx_stop = 0;
    /* registered last so that it runs first when the child pool dies */
    apr_pool_cleanup_register(pchild, NULL, pubsub_child_exit,
                              apr_pool_cleanup_null);
    rv = apr_thread_create(&rx_thread, NULL, rx_main, NULL, pchild);
    if (rv != APR_SUCCESS) {
        rx_thread = NULL;
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, MWS_LOGNO(00015)
                     "cannot start the publish receiver thread");
    }
}

/* Parent, at every (re)start: make the socket folder, owned by the user
 * the children run as, and remove sockets of processes that are gone. */
int mws_pubsub_post_config(apr_pool_t *pconf, apr_pool_t *ptemp,
                           server_rec *s)
{
    const char *dir = ap_runtime_dir_relative(pconf, MWS_SOCKDIR);
    DIR *dh;
    struct dirent *de;

    sock_dir = NULL;
    if (!dir) {
        return OK;
    }
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno), s,
                     MWS_LOGNO(00016) "cannot create %s: publish reaches "
                     "one child's connections only", dir);
        return OK;
    }
    if (geteuid() == 0 && chown(dir, ap_unixd_config.user_id,
                                ap_unixd_config.group_id) < 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno), s,
                     MWS_LOGNO(00017) "cannot hand %s to the server's user",
                     dir);
    }
    if ((dh = opendir(dir)) != NULL) {
        while ((de = readdir(dh)) != NULL) {
            char *end;
            long pid = strtol(de->d_name, &end, 10);
            if (pid > 0 && !strcmp(end, ".sock")
                && kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
                unlink(apr_pstrcat(ptemp, dir, "/", de->d_name, NULL));
            }
        }
        closedir(dh);
    }
    sock_dir = dir;
    return OK;
}
