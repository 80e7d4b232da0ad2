/*
 * mws_pubsub.c -- channels: publish a message to every connection
 * subscribed to a channel, in this child process and in every other child
 * of the server.
 *
 * Within a child: a table channel -> subscribers under one lock.  Across
 * children: every child listens on a Unix socket named after its pid in
 * a runtime folder; a publish is delivered locally and sent as one message
 * to each other live child (pids from the scoreboard); a receive thread in
 * each child delivers what arrives.  See ../shared notes/cross-child.md for
 * the findings this follows.
 *
 * Scope.  A channel belongs to the WebSocketHandler line (mws_instance) of
 * the connection that subscribes, or of the callback that publishes (a
 * thread-local set by the glue around every handler callback): the table
 * key is "<scope>/<name>", the scope a hash of the line that is the same in
 * every child of a generation.  Names that begin with "server:" are the one
 * exception: one channel for the whole server.
 *
 * Trust.  Only this server's processes may use the sockets.  The parent
 * (root) makes the folder without following links, root's with mode 0710
 * and the children's group: other users cannot reach a socket, and the
 * server's own user cannot remove, replace or add one.  A child binds its
 * socket before it drops root.  A receiver accepts a connection only from
 * a process that is a child of this server now (SO_PEERCRED against the
 * scoreboard), a publisher sends only to the pid it meant (SO_PEERCRED of
 * the listener), and text is checked to be UTF-8 again on receipt.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
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
#define MWS_SERVER_PREFIX "server:"    /* server-wide channels            */
/* the key of a channel in the table and on the wire: the name itself for
 * "server:" names, else "<scope>/<name>" */
#define MWS_KEY_MAX       (MWS_SCOPE_HEX + 1 + MWS_CHANNEL_MAX)
/* a message published across children fits one socket message
 * (MWS_PUBLISH_MAX, 64 KiB) */
#define MWS_DGRAM_MAX     (MWS_PUBLISH_MAX + MWS_KEY_MAX + 8)
#define MWS_SOCKDIR       "mod_websocket"
/* "/<pid>.sock" after the folder, with its NUL: pid_t has 10 digits */
#define MWS_SOCKNAME_MAX  (sizeof("/4294967295.sock"))
#define MWS_SUN_PATH_MAX  (sizeof(((struct sockaddr_un *)0)->sun_path))

/* One subscription: a node in its channel's list and in its connection's
 * list, so either side can drop it. */
typedef struct mws_sub {
    struct mws_sub *ch_next, *ch_prev;    /* in the channel */
    struct mws_sub *c_next;               /* in the connection */
    struct mws_channel *ch;
    mws_conn *mc;
} mws_sub;

typedef struct mws_channel {
    char *name;                           /* the key */
    mws_sub *subs;
    apr_size_t n;
} mws_channel;

static pthread_mutex_t ps_lock = PTHREAD_MUTEX_INITIALIZER;
static apr_hash_t *channels;      /* key -> mws_channel, in the child pool */
static int ps_stopping;           /* the child exits: no new subscriptions */

/* cross-child transport */
static const char *sock_dir;      /* absolute folder of the sockets, or NULL */
static int dir_fd = -1;           /* that folder, opened by the parent
                                   * without following links (inherited) */
static int dir_root;              /* it is root's: children bind as root */
static int bind_tried;            /* this child tried to bind its socket */
static int rx_fd = -1;            /* our bound socket */
static pid_t my_pid;
static apr_thread_t *rx_thread;
static volatile int rx_stop;
static server_rec *ps_server;

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

void mws_pubsub_scope(mws_instance *inst, const char *ident)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t d[20];
    int i;

    ws_sha1((const uint8_t *)ident, strlen(ident), d);
    for (i = 0; i < MWS_SCOPE_HEX / 2; ++i) {
        inst->scope[2 * i] = hex[d[i] >> 4];
        inst->scope[2 * i + 1] = hex[d[i] & 15];
    }
    inst->scope[MWS_SCOPE_HEX] = '\0';
}

/* The table key of channel as seen by inst, into key (MWS_KEY_MAX + 1
 * bytes).  MWS_ERR_INVALID for a bad name, MWS_ERR_STATE for a channel
 * that needs a handler line when there is none. */
static int channel_key(char *key, const mws_instance *inst,
                       const char *channel)
{
    size_t clen;

    if (!channel) {
        return MWS_ERR_INVALID;
    }
    clen = strnlen(channel, MWS_CHANNEL_MAX + 1);
    if (!clen || clen > MWS_CHANNEL_MAX) {
        return MWS_ERR_INVALID;
    }
    if (!strncmp(channel, MWS_SERVER_PREFIX, sizeof(MWS_SERVER_PREFIX) - 1)) {
        memcpy(key, channel, clen + 1);
        return MWS_OK;
    }
    if (!inst) {
        return MWS_ERR_STATE;
    }
    memcpy(key, inst->scope, MWS_SCOPE_HEX);
    key[MWS_SCOPE_HEX] = '/';
    memcpy(key + MWS_SCOPE_HEX + 1, channel, clen + 1);
    return MWS_OK;
}

/* A log line that an attacker could repeat at will: at most one every
 * 10 seconds per kind, saying how many were left out. */
typedef struct {
    apr_time_t next;              /* nothing logged before this */
    unsigned long total;          /* events so far */
    unsigned long quiet;          /* events not logged since the last line */
} mws_ratelog;

#define MWS_RATELOG_EVERY apr_time_from_sec(10)

/* Count an event; 1 if it may be logged now (*quiet: how many were not
 * since the last line).  Each mws_ratelog is used by one thread, or under
 * a lock. */
static int ratelog(mws_ratelog *rl, unsigned long *quiet)
{
    apr_time_t now = apr_time_now();

    ++rl->total;
    if (now < rl->next) {
        ++rl->quiet;
        return 0;
    }
    rl->next = now + MWS_RATELOG_EVERY;
    *quiet = rl->quiet;
    rl->quiet = 0;
    return 1;
}

static mws_ratelog rl_refused;    /* connections from strangers (rx thread) */
static mws_ratelog rl_invalid;    /* messages dropped (rx thread)           */
static mws_ratelog rl_rxfail;     /* accept/poll failures (rx thread)       */
static mws_ratelog rl_full;       /* more publishers than slots (rx thread) */
static mws_ratelog rl_impostor;   /* a socket not served by its child (tx)  */

/* ---- local delivery ---------------------------------------------------- */

/* Deliver to this child's subscribers of key.  Returns the number
 * reached. */
static int deliver_local(const char *key, mws_msg_type type,
                         const void *data, size_t len)
{
    mws_channel *ch;
    mws_sub *s;
    mws_conn **kick = NULL;
    mws_shared *sh = NULL;
    size_t nkick = 0;
    int n = 0, claim;

    pthread_mutex_lock(&ps_lock);
    ch = channels ? apr_hash_get(channels, key, APR_HASH_KEY_STRING)
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
    char key[MWS_KEY_MAX + 1];
    mws_channel *ch;
    mws_sub *s;
    int rv;

    if (!mc) {
        return MWS_ERR_INVALID;
    }
    if ((rv = channel_key(key, mc->inst, channel)) != MWS_OK) {
        return rv;
    }
    pthread_mutex_lock(&ps_lock);
    if (!channels || ps_stopping) {
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
        if (!strcmp(s->ch->name, key)) {
            pthread_mutex_unlock(&ps_lock);
            return MWS_OK;              /* already there */
        }
    }
    ch = apr_hash_get(channels, key, APR_HASH_KEY_STRING);
    if (!ch) {
        ch = calloc(1, sizeof(*ch));
        if (!ch || !(ch->name = strdup(key))) {
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

/* Unlink s from its channel (ps_lock held); frees an empty channel.  The
 * table may be gone already (the child pool died under a handler thread
 * that unsubscribes late): then only the memory is freed. */
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
        if (channels) {
            apr_hash_set(channels, ch->name, APR_HASH_KEY_STRING, NULL);
        }
        free(ch->name);
        free(ch);
    }
    free(s);
}

int mws_pubsub_unsubscribe(mws_conn *mc, const char *channel)
{
    char key[MWS_KEY_MAX + 1];
    mws_sub **pp;
    int rv;

    if (!mc) {
        return MWS_ERR_INVALID;
    }
    if ((rv = channel_key(key, mc->inst, channel)) != MWS_OK) {
        return rv;
    }
    rv = MWS_ERR_NOTFOUND;
    pthread_mutex_lock(&ps_lock);
    for (pp = &mc->subs; *pp; pp = &(*pp)->c_next) {
        if (!strcmp((*pp)->ch->name, key)) {
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
 * A message: "MWS2" type(1) key-length(1) key payload.  ("MWS1" carried
 * unscoped names; a child still running that version is not understood.)
 */
#define MWS_DG_MAGIC "MWS2"
#define MWS_DG_HDR   6
#define MWS_SEND_WAIT_MS 50
#define MWS_RX_BATCH     64     /* messages read from one publisher a turn */
#define MWS_ACCEPT_BATCH 64     /* connections accepted a turn             */
#define MWS_RX_BACKOFF_MS 250   /* after accept() or poll() failed         */

typedef struct {
    pid_t pid;
    int fd;
    int congested;      /* the last send had to be dropped */
} mws_peer;

static pthread_mutex_t tx_lock = PTHREAD_MUTEX_INITIALIZER;
static mws_peer *peers;           /* one per scoreboard slot */
static int npeers;
static int wake_fd[2] = { -1, -1 };   /* stops the receive thread */

static void sock_name(char *buf, size_t cap, pid_t pid)
{
    apr_snprintf(buf, cap, "%ld.sock", (long)pid);
}

/* The socket path of pid; 0 if it does not fit (refused at start-up). */
static int sock_path(char *buf, size_t cap, pid_t pid)
{
    int n = snprintf(buf, cap, "%s/%ld.sock", sock_dir, (long)pid);

    return n > 0 && (size_t)n < cap;
}

/* Remove the socket called name in the folder fd: a socket only, never
 * what a link points to. */
static void unlink_sock_at(int fd, const char *name)
{
    struct stat st;

    if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0
        && S_ISSOCK(st.st_mode)) {
        unlinkat(fd, name, 0);
    }
}

/* Is pid a child process of this server now (not us)? */
static int is_child(pid_t pid)
{
    int i;

    if (pid <= 0 || pid == my_pid || !ap_scoreboard_image) {
        return 0;
    }
    for (i = 0; i < npeers; ++i) {
        if (ap_scoreboard_image->parent[i].pid == pid) {
            return 1;
        }
    }
    return 0;
}

static int peer_connect(pid_t pid)
{
    struct sockaddr_un sa;
    struct ucred cr = { 0, 0, 0 };
    socklen_t crlen = sizeof(cr);
    unsigned long quiet;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    0);
    int bufsize = 1024 * 1024;

    if (fd < 0) {
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof(bufsize));
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    /* a Unix socket connects at once or fails (EAGAIN: backlog full) */
    if (!sock_path(sa.sun_path, sizeof(sa.sun_path), pid)
        || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    /* the listener must be the child we mean (its credentials are those
     * of listen(), which it called as root or as our user) */
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) < 0
        || cr.pid != pid || (cr.uid != 0 && cr.uid != geteuid())) {
        if (ratelog(&rl_impostor, &quiet)) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ps_server,
                         MWS_LOGNO(00049) "publish: %s is served by pid %ld "
                         "uid %ld, not by child %ld: nothing is sent there "
                         "(%lu so far, %lu not logged; at most one line "
                         "every 10 s)", sa.sun_path, (long)cr.pid,
                         (long)cr.uid, (long)pid, rl_impostor.total, quiet);
        }
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
    char key[MWS_KEY_MAX + 1];
    size_t klen;
    int local, i, rv;
    uint8_t *msg;

    if ((type != MWS_TEXT && type != MWS_BINARY) || (len && !data)) {
        return MWS_ERR_INVALID;
    }
    /* outside a handler callback (no line to scope it by), only
     * server-wide channels */
    if ((rv = channel_key(key, cur_inst, channel)) != MWS_OK) {
        return rv;
    }
    if (type == MWS_TEXT && !ws_utf8_is_valid(data, len)) {
        return MWS_ERR_INVALID;
    }
    if (len > MWS_PUBLISH_MAX) {
        return MWS_ERR_TOO_BIG;
    }
    local = deliver_local(key, type, data, len);
    if (!peers || !ap_scoreboard_image) {
        return local;
    }
    klen = strlen(key);
    msg = malloc(MWS_DG_HDR + klen + len);
    if (!msg) {
        return local;
    }
    memcpy(msg, MWS_DG_MAGIC, 4);
    msg[4] = (uint8_t)type;
    msg[5] = (uint8_t)klen;
    memcpy(msg + MWS_DG_HDR, key, klen);
    if (len) {
        memcpy(msg + MWS_DG_HDR + klen, data, len);
    }
    pthread_mutex_lock(&tx_lock);
    for (i = 0; peers && i < npeers; ++i) {
        pid_t pid = ap_scoreboard_image->parent[i].pid;
        if (pid > 0 && pid != my_pid) {
            send_to_peer(&peers[i], pid, msg, MWS_DG_HDR + klen + len);
        }
    }
    pthread_mutex_unlock(&tx_lock);
    free(msg);
    return local;
}

/* One message from child pid (n bytes of buf): delivered, or dropped and
 * counted when it is not well formed. */
static void rx_message(const uint8_t *buf, size_t n, pid_t pid)
{
    char key[MWS_KEY_MAX + 1];
    const char *why = NULL;
    unsigned long quiet;
    size_t klen = n >= MWS_DG_HDR ? buf[5] : 0;

    if (n < MWS_DG_HDR || memcmp(buf, MWS_DG_MAGIC, 4)) {
        why = "not a message of this version";
    }
    else if (!klen || klen > MWS_KEY_MAX || n < MWS_DG_HDR + klen
             || (buf[4] != MWS_TEXT && buf[4] != MWS_BINARY)) {
        why = "malformed";
    }
    else if (buf[4] == MWS_TEXT
             && !ws_utf8_is_valid(buf + MWS_DG_HDR + klen,
                                  n - MWS_DG_HDR - klen)) {
        why = "text that is not UTF-8";
    }
    if (why) {
        if (ratelog(&rl_invalid, &quiet)) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ps_server,
                         MWS_LOGNO(00047) "publish: dropped a message from "
                         "child %ld: %s (%lu so far, %lu not logged; at most "
                         "one line every 10 s)", (long)pid, why,
                         rl_invalid.total, quiet);
        }
        return;
    }
    memcpy(key, buf + MWS_DG_HDR, klen);
    key[klen] = '\0';
    deliver_local(key, (mws_msg_type)buf[4], buf + MWS_DG_HDR + klen,
                  n - MWS_DG_HDR - klen);
}

/* Read what publisher pid sent on fd, a batch at most.  1 when fd is
 * finished (closed, or an error), else 0. */
static int rx_drain(int fd, pid_t pid, uint8_t *buf)
{
    struct msghdr mh;
    struct iovec iov;
    ssize_t got;
    int k;

    for (k = 0; k < MWS_RX_BATCH; ++k) {
        memset(&mh, 0, sizeof(mh));
        iov.iov_base = buf;
        iov.iov_len = MWS_DGRAM_MAX;
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        got = recvmsg(fd, &mh, MSG_DONTWAIT);
        if (got > 0) {
            if (mh.msg_flags & MSG_TRUNC) {
                rx_message(buf, 0, pid);    /* counted as malformed */
            }
            else {
                rx_message(buf, (size_t)got, pid);
            }
            continue;
        }
        if (got == 0) {
            return 1;                       /* that child went away */
        }
        if (errno == EINTR) {
            continue;
        }
        return errno != EAGAIN && errno != EWOULDBLOCK;
    }
    return 0;                               /* poll() says if more wait */
}

/* Accept waiting connections; keep those of this server's children.
 * Returns -1 when accept() fails for want of resources (the caller waits
 * before it tries again, instead of spinning on a listener that stays
 * readable), else 0. */
static int rx_accept(struct pollfd *pfds, pid_t *pids, int *n, int cap)
{
    struct ucred cr;
    socklen_t crlen;
    unsigned long quiet;
    int k, j, fd;

    for (k = 0; k < MWS_ACCEPT_BATCH; ++k) {
        fd = accept4(rx_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return 0;
            }
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (ratelog(&rl_rxfail, &quiet)) {
                ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno),
                             ps_server, MWS_LOGNO(00048) "publish: cannot "
                             "accept a connection from another child; "
                             "trying again in %d ms (%lu so far, %lu not "
                             "logged; at most one line every 10 s)",
                             MWS_RX_BACKOFF_MS, rl_rxfail.total, quiet);
            }
            return -1;
        }
        crlen = sizeof(cr);
        memset(&cr, 0, sizeof(cr));
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) < 0
            || cr.uid != geteuid() || !is_child(cr.pid)) {
            if (ratelog(&rl_refused, &quiet)) {
                ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ps_server,
                             MWS_LOGNO(00046) "publish: refused a "
                             "connection to %s/%ld.sock from pid %ld uid "
                             "%ld: not a child process of this server (%lu "
                             "so far, %lu not logged; at most one line "
                             "every 10 s)", sock_dir, (long)my_pid,
                             (long)cr.pid, (long)cr.uid, rl_refused.total,
                             quiet);
            }
            close(fd);
            continue;
        }
        if (*n == cap) {
            /* make room: a child that is gone, or that connected again */
            for (j = 2; j < *n; ++j) {
                if (pids[j] == cr.pid || !is_child(pids[j])) {
                    close(pfds[j].fd);
                    pfds[j] = pfds[*n - 1];
                    pids[j] = pids[*n - 1];
                    --*n;
                    break;
                }
            }
        }
        if (*n == cap) {
            if (ratelog(&rl_full, &quiet)) {
                ap_log_error(APLOG_MARK, APLOG_ERR, 0, ps_server,
                             MWS_LOGNO(00051) "publish: more publishing "
                             "children than scoreboard slots; child %ld "
                             "refused (%lu so far, %lu not logged)",
                             (long)cr.pid, rl_full.total, quiet);
            }
            close(fd);
            continue;
        }
        pfds[*n].fd = fd;
        pfds[*n].events = POLLIN;
        pfds[*n].revents = 0;
        pids[*n] = cr.pid;
        ++*n;
    }
    return 0;
}

/* The receive thread: the listening socket, the stop pipe and one
 * connection per publishing child. */
static void *APR_THREAD_FUNC rx_main(apr_thread_t *thd, void *data)
{
    uint8_t *buf = malloc(MWS_DGRAM_MAX);
    int cap = npeers + 2, n = 2, i, timeout;
    struct pollfd *pfds = calloc((size_t)cap, sizeof(*pfds));
    pid_t *pids = calloc((size_t)cap, sizeof(*pids));
    apr_time_t accept_after = 0, now;
    unsigned long quiet;

    if (!buf || !pfds || !pids) {
        ap_log_error(APLOG_MARK, APLOG_ERR, APR_ENOMEM, ps_server,
                     MWS_LOGNO(00050) "publish: no memory for the receive "
                     "thread: this child gets no messages from others");
        free(buf);
        free(pfds);
        free(pids);
        return NULL;
    }
    pfds[0].fd = wake_fd[0];
    pfds[0].events = POLLIN;
    pfds[1].fd = rx_fd;
    pfds[1].events = POLLIN;
    while (!rx_stop) {
        timeout = -1;
        if (accept_after) {
            now = apr_time_now();
            if (now >= accept_after) {
                accept_after = 0;
                pfds[1].events = POLLIN;
            }
            else {
                pfds[1].events = 0;
                timeout = (int)apr_time_as_msec(accept_after - now) + 1;
            }
        }
        if (poll(pfds, (nfds_t)n, timeout) < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (ratelog(&rl_rxfail, &quiet)) {
                ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno),
                             ps_server, MWS_LOGNO(00052) "publish: poll() "
                             "failed in the receive thread; trying again in "
                             "%d ms", MWS_RX_BACKOFF_MS);
            }
            poll(NULL, 0, MWS_RX_BACKOFF_MS);
            continue;
        }
        if (rx_stop || pfds[0].revents) {
            break;
        }
        if ((pfds[1].revents & (POLLIN | POLLERR | POLLHUP))
            && rx_accept(pfds, pids, &n, cap) < 0) {
            accept_after = apr_time_now()
                           + apr_time_from_msec(MWS_RX_BACKOFF_MS);
        }
        for (i = 2; i < n; ++i) {
            if (!pfds[i].revents) {
                continue;
            }
            pfds[i].revents = 0;
            if (rx_drain(pfds[i].fd, pids[i], buf)) {
                close(pfds[i].fd);
                pfds[i] = pfds[n - 1];
                pids[i] = pids[n - 1];
                --n;
                --i;
            }
        }
    }
    for (i = 2; i < n; ++i) {
        close(pfds[i].fd);
    }
    free(pids);
    free(pfds);
    free(buf);
    return NULL;
}

/* ---- the child ---------------------------------------------------------- */

/* Bind this child's socket.  Runs from drop_privileges, before mod_unixd
 * switches to User: in root's folder only root may create the socket; it
 * is then given to the children's group, mode 0660, so that the other
 * children may connect and nobody but root may remove it. */
static void bind_socket(server_rec *s)
{
    struct sockaddr_un sa;
    struct stat st, dst;
    char name[MWS_SOCKNAME_MAX];
    int fd = -1;

    bind_tried = 1;
    my_pid = getpid();
    if (!sock_dir || dir_fd < 0) {
        return;
    }
    sock_name(name, sizeof(name), my_pid);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (!sock_path(sa.sun_path, sizeof(sa.sun_path), my_pid)) {
        return;                     /* refused at start-up already */
    }
    /* the path must lead to the folder the parent checked */
    if (stat(sock_dir, &st) < 0 || fstat(dir_fd, &dst) < 0
        || st.st_dev != dst.st_dev || st.st_ino != dst.st_ino) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, MWS_LOGNO(00045)
                     "%s is no longer the folder checked at start-up: "
                     "publish reaches this child's connections only",
                     sock_dir);
        return;
    }
    /* a socket left by an earlier process with our pid */
    unlink_sock_at(dir_fd, name);
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0
        || (dir_root && geteuid() == 0
            && (fchownat(dir_fd, name, 0, ap_unixd_config.group_id,
                         AT_SYMLINK_NOFOLLOW) < 0
                || fchmodat(dir_fd, name, 0660, 0) < 0))
        || listen(fd, 512) < 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno), s,
                     MWS_LOGNO(00014) "cannot listen on %s: publish reaches "
                     "this child's connections only", sa.sun_path);
        if (fd >= 0) {
            close(fd);
        }
        return;
    }
    rx_fd = fd;
}

static int pubsub_drop_privileges(apr_pool_t *pchild, server_rec *s)
{
    bind_socket(s);
    return DECLINED;
}

static apr_status_t pubsub_child_exit(void *unused)
{
    char name[MWS_SOCKNAME_MAX];
    apr_status_t trv;
    int i;

    pthread_mutex_lock(&ps_lock);
    ps_stopping = 1;
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
        /* in root's folder the parent removes it when it reaps us */
        sock_name(name, sizeof(name), my_pid);
        if (!dir_root) {
            unlink_sock_at(dir_fd, name);
        }
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

/* The table goes last, after every on_close and shutdown() of the child's
 * exit (a handler may unsubscribe there). */
static apr_status_t pubsub_table_gone(void *unused)
{
    pthread_mutex_lock(&ps_lock);
    channels = NULL;
    ps_stopping = 1;
    pthread_mutex_unlock(&ps_lock);
    return APR_SUCCESS;
}

void mws_pubsub_child_open(apr_pool_t *pchild, server_rec *s)
{
    ps_server = s;
    my_pid = getpid();
    pthread_mutex_lock(&ps_lock);
    channels = apr_hash_make(pchild);
    ps_stopping = 0;
    pthread_mutex_unlock(&ps_lock);
    /* registered before the handlers' shutdown, so it runs after it */
    apr_pool_cleanup_register(pchild, NULL, pubsub_table_gone,
                              apr_pool_cleanup_null);
}

void mws_pubsub_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_status_t rv;
    int i, limit = 0;

    if (!bind_tried) {
        bind_socket(s);         /* an MPM without drop_privileges */
    }
    if (rx_fd < 0) {
        return;
    }
    if (pipe2(wake_fd, O_CLOEXEC) < 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno), s,
                     MWS_LOGNO(00053) "cannot make the receive thread's "
                     "pipe: publish reaches this child's connections only");
        close(rx_fd);
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

/* ---- the parent: the socket folder ---------------------------------------- */

/* What is wrong with the socket folder st, or NULL. */
static const char *folder_problem(apr_pool_t *p, const struct stat *st)
{
    uid_t me = geteuid();

    if (S_ISLNK(st->st_mode)) {
        return "is a symbolic link";
    }
    if (!S_ISDIR(st->st_mode)) {
        return "is not a directory";
    }
    if (me == 0 ? (st->st_uid != 0 && st->st_uid != ap_unixd_config.user_id)
                : st->st_uid != me) {
        return apr_psprintf(p, "belongs to uid %ld, not to %s",
                            (long)st->st_uid, me == 0 ? "root or User"
                                                      : "this server's user");
    }
    return NULL;
}

/* Could someone but root (or our user) replace a name in the folder st? */
static int parent_unsafe(const struct stat *st)
{
    return (st->st_uid != 0 && st->st_uid != geteuid())
           || ((st->st_mode & (S_IWGRP | S_IWOTH))
               && !(st->st_mode & S_ISVTX));
}

/* The socket folder's path (*dir) and its parent's (*parent).  OK, or
 * DECLINED without a runtime folder, or an error (logged) when a socket
 * path would not fit in sun_path: cut short, children would share one. */
static int folder_paths(apr_pool_t *p, server_rec *s, const char **dir,
                        const char **parent)
{
    size_t len;

    if (!(*dir = ap_runtime_dir_relative(p, MWS_SOCKDIR))) {
        return DECLINED;
    }
    len = strlen(*dir);
    if (len + MWS_SOCKNAME_MAX > MWS_SUN_PATH_MAX) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, MWS_LOGNO(00040)
                     "the publish sockets would be %s/<pid>.sock: that "
                     "folder is %lu bytes long, a Unix socket path may "
                     "have %lu bytes (sun_path) with its pid: set "
                     "DefaultRuntimeDir to a shorter path", *dir,
                     (unsigned long)len,
                     (unsigned long)(MWS_SUN_PATH_MAX - 1));
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    /* ap_runtime_dir_relative() ends it with "/" MWS_SOCKDIR */
    *parent = apr_pstrndup(p, *dir, len - sizeof(MWS_SOCKDIR));
    if (!**parent) {
        *parent = "/";
    }
    return OK;
}

/* Before the configuration is used (also for httpd -t): refuse a socket
 * path that would not fit, and a folder that is not ours.  Changes
 * nothing; post_config does the work. */
int mws_pubsub_check_config(apr_pool_t *ptemp, server_rec *s, int ninst)
{
    const char *dir, *parent, *why;
    struct stat st;
    int rv;

    if (!ninst || (rv = folder_paths(ptemp, s, &dir, &parent)) == DECLINED) {
        return OK;
    }
    if (rv != OK) {
        return rv;
    }
    if (lstat(dir, &st) == 0 && (why = folder_problem(ptemp, &st))) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, MWS_LOGNO(00042)
                     "the publish socket folder %s %s: refusing to use it "
                     "(remove it; the server makes it)", dir, why);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (stat(parent, &st) == 0 && parent_unsafe(&st)) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, MWS_LOGNO(00041)
                     "DefaultRuntimeDir %s may be written by others than "
                     "root and this server's user: they could put a link "
                     "in place of %s (make it writable by its owner only, "
                     "or sticky)", parent, dir);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

static apr_status_t close_dir_fd(void *data)
{
    if (dir_fd >= 0) {
        close(dir_fd);
        dir_fd = -1;
    }
    return APR_SUCCESS;
}

/* Remove the sockets of processes that are gone: sockets only, by name in
 * the folder fd, never through a link. */
static void remove_stale(int fd)
{
    int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    DIR *dh = dfd >= 0 ? fdopendir(dfd) : NULL;
    struct dirent *de;

    if (!dh) {
        if (dfd >= 0) {
            close(dfd);
        }
        return;
    }
    while ((de = readdir(dh)) != NULL) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (pid > 0 && de->d_name[0] >= '0' && de->d_name[0] <= '9'
            && !strcmp(end, ".sock")
            && kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
            unlink_sock_at(fd, de->d_name);
        }
    }
    closedir(dh);
}

/* Parent, at every (re)start: make the socket folder or take the one there
 * is, without following a link, and make it root's (mode 0710, the
 * children's group may only pass through), or ours when we do not run as
 * root (0700); remove sockets of processes that are gone.  Anything else
 * in place of the folder is refused: the server does not start. */
int mws_pubsub_post_config(apr_pool_t *pconf, apr_pool_t *ptemp,
                           server_rec *s, int ninst)
{
    const char *dir, *parent, *why;
    struct stat st;
    int pfd, fd, rv, root = geteuid() == 0;

    sock_dir = NULL;
    dir_fd = -1;                /* the last generation's: closed with pconf */
    if (!ninst || (rv = folder_paths(pconf, s, &dir, &parent)) == DECLINED) {
        return OK;
    }
    if (rv != OK) {
        return rv;
    }
    pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno), s,
                     MWS_LOGNO(00016) "cannot create %s: publish reaches "
                     "one child's connections only", dir);
        return OK;
    }
    if (fstat(pfd, &st) < 0 || parent_unsafe(&st)) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, MWS_LOGNO(00041)
                     "DefaultRuntimeDir %s may be written by others than "
                     "root and this server's user: they could put a link "
                     "in place of %s (make it writable by its owner only, "
                     "or sticky)", parent, dir);
        close(pfd);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (mkdirat(pfd, MWS_SOCKDIR, 0700) < 0 && errno != EEXIST) {
        ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno), s,
                     MWS_LOGNO(00016) "cannot create %s: publish reaches "
                     "one child's connections only", dir);
        close(pfd);
        return OK;
    }
    fd = openat(pfd, MWS_SOCKDIR,
                O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    close(pfd);
    if (fd < 0) {
        why = (errno == ELOOP || errno == ENOTDIR)
              ? "is a symbolic link or not a directory"
              : apr_psprintf(ptemp, "cannot be opened (%s)", strerror(errno));
    }
    else if (fstat(fd, &st) < 0) {
        why = apr_psprintf(ptemp, "cannot be examined (%s)", strerror(errno));
    }
    else {
        why = folder_problem(ptemp, &st);
    }
    if (why) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, MWS_LOGNO(00042)
                     "the publish socket folder %s %s: refusing to use it "
                     "(remove it; the server makes it)", dir, why);
        if (fd >= 0) {
            close(fd);
        }
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (root ? (fchown(fd, 0, ap_unixd_config.group_id) < 0
                || fchmod(fd, 0710) < 0)
             : fchmod(fd, 0700) < 0) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, APR_FROM_OS_ERROR(errno), s,
                     MWS_LOGNO(00043) "cannot make the publish socket "
                     "folder %s %s", dir, root ? "root's (mode 0710, "
                     "group of Group)" : "ours (mode 0700)");
        close(fd);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    remove_stale(fd);
    dir_fd = fd;
    apr_pool_cleanup_register(pconf, NULL, close_dir_fd,
                              apr_pool_cleanup_null);
    dir_root = root;
    sock_dir = dir;
    return OK;
}

/* Parent: a child was reaped; its socket is removed (it cannot do that
 * itself in root's folder). */
static void pubsub_child_status(server_rec *s, pid_t pid,
                                ap_generation_t gen, int slot,
                                mpm_child_status state)
{
    char name[MWS_SOCKNAME_MAX];

    if (state == MPM_CHILD_EXITED && pid > 0 && dir_fd >= 0
        && pid != getpid()) {
        sock_name(name, sizeof(name), pid);
        unlink_sock_at(dir_fd, name);
    }
}

void mws_pubsub_register_hooks(void)
{
    /* the socket is bound in root's folder while the child is root */
    static const char *const before_unixd[] = { "mod_unixd.c", NULL };

    ap_hook_drop_privileges(pubsub_drop_privileges, NULL, before_unixd,
                            APR_HOOK_MIDDLE);
    ap_hook_child_status(pubsub_child_status, NULL, NULL, APR_HOOK_MIDDLE);
}
