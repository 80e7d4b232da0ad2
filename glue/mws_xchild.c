/*
 * mws_xchild.c -- channels across child processes: every child listens on a
 * Unix seqpacket socket in the socket folder; a publish goes to each other
 * live child of this server, and a receive thread delivers what arrives.
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
#include "http_connection.h"
#include "util_filter.h"

#include "mws_private.h"

/* a message published across children fits one socket message
 * (MWS_PUBLISH_MAX, 64 KiB) */
#define MWS_DGRAM_MAX     (MWS_PUBLISH_MAX + MWS_KEY_MAX + 8)
/* "/<pid>.sock" after the folder, with its NUL: pid_t has 10 digits */
#define MWS_SUN_PATH_MAX  (sizeof(((struct sockaddr_un *)0)->sun_path))

/* cross-child transport */
static int bind_tried;            /* this child tried to bind its socket */
static int rx_fd = -1;            /* our bound socket */
static pid_t my_pid;
static apr_thread_t *rx_thread;
static volatile int rx_stop;
static server_rec *ps_server;
static mws_xchild_deliver_fn *xchild_deliver;

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

/* A child the parent forked a moment ago may talk before the parent has
 * written its pid into the scoreboard: a process whose parent is ours (the
 * server's parent process, never init) is a child of this server too. */
static int same_parent(pid_t pid)
{
    char path[64], buf[512], *p;
    long ppid = 0;
    ssize_t n;
    int fd;

    apr_snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        return 0;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    /* "pid (comm) state ppid ...": comm may hold spaces and parentheses */
    if (!(p = strrchr(buf, ')')) || sscanf(p + 1, " %*c %ld", &ppid) != 1) {
        return 0;
    }
    return ppid > 1 && ppid == (long)getppid();
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
    return same_parent(pid);
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
    if (!mws_sockdir_path(sa.sun_path, sizeof(sa.sun_path), pid)
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

/* Send a message published here to every other live child of this
 * server. */
void mws_xchild_send(const char *key, mws_msg_type type, const void *data,
                     size_t len)
{
    size_t klen;
    uint8_t *msg;
    int i;

    if (!peers || !ap_scoreboard_image) {
        return;
    }
    klen = strlen(key);
    msg = malloc(MWS_DG_HDR + klen + len);
    if (!msg) {
        return;
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
    xchild_deliver(key, (mws_msg_type)buf[4], buf + MWS_DG_HDR + klen,
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

/* Is the peer of fd one of this server's children (its pid in the
 * scoreboard now, our uid)?  *cr is filled in. */
static int peer_allowed(int fd, struct ucred *cr)
{
    socklen_t crlen = sizeof(*cr);
    unsigned long quiet;

    memset(cr, 0, sizeof(*cr));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cr, &crlen) == 0
        && cr->uid == geteuid() && is_child(cr->pid)) {
        return 1;
    }
    if (ratelog(&rl_refused, &quiet)) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ps_server,
                     MWS_LOGNO(00046) "publish: refused a connection to "
                     "%s/%ld.sock from pid %ld uid %ld: not a child process "
                     "of this server (%lu so far, %lu not logged; at most "
                     "one line every 10 s)", mws_sockdir.path, (long)my_pid,
                     (long)cr->pid, (long)cr->uid, rl_refused.total, quiet);
    }
    return 0;
}

/* Room for one more publishing child's connection: when all slots are
 * taken, one of a child that is gone, or of the same child (it connected
 * again), is closed.  0: no room. */
static int rx_slot(struct pollfd *pfds, pid_t *pids, int *n, int cap,
                   const struct ucred *cr)
{
    unsigned long quiet;
    int j;

    for (j = 2; *n == cap && j < *n; ++j) {
        if (pids[j] == cr->pid || !is_child(pids[j])) {
            close(pfds[j].fd);
            pfds[j] = pfds[*n - 1];
            pids[j] = pids[*n - 1];
            --*n;
        }
    }
    if (*n < cap) {
        return 1;
    }
    if (ratelog(&rl_full, &quiet)) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, ps_server, MWS_LOGNO(00051)
                     "publish: more publishing children than scoreboard "
                     "slots; child %ld refused (%lu so far, %lu not logged)",
                     (long)cr->pid, rl_full.total, quiet);
    }
    return 0;
}

/* Accept waiting connections; keep those of this server's children.
 * Returns -1 when accept() fails for want of resources (the caller waits
 * before it tries again, instead of spinning on a listener that stays
 * readable), else 0. */
static int rx_accept(struct pollfd *pfds, pid_t *pids, int *n, int cap)
{
    struct ucred cr;
    unsigned long quiet;
    int k, fd;

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
        if (!peer_allowed(fd, &cr) || !rx_slot(pfds, pids, n, cap, &cr)) {
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

/* Read what every publishing child sent; a connection that ended or
 * misbehaved is closed and its slot freed. */
static void rx_drain_all(struct pollfd *pfds, pid_t *pids, int *n,
                         uint8_t *buf)
{
    int i;

    for (i = 2; i < *n; ++i) {
        if (!pfds[i].revents) {
            continue;
        }
        pfds[i].revents = 0;
        if (rx_drain(pfds[i].fd, pids[i], buf)) {
            close(pfds[i].fd);
            pfds[i] = pfds[*n - 1];
            pids[i] = pids[*n - 1];
            --*n;
            --i;
        }
    }
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
        rx_drain_all(pfds, pids, &n, buf);
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
    if (!mws_sockdir.path || mws_sockdir.fd < 0) {
        return;
    }
    mws_sockdir_name(name, sizeof(name), my_pid);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (!mws_sockdir_path(sa.sun_path, sizeof(sa.sun_path), my_pid)) {
        return;                     /* refused at start-up already */
    }
    /* the path must lead to the folder the parent checked */
    if (stat(mws_sockdir.path, &st) < 0 || fstat(mws_sockdir.fd, &dst) < 0
        || st.st_dev != dst.st_dev || st.st_ino != dst.st_ino) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, MWS_LOGNO(00045)
                     "%s is no longer the folder checked at start-up: "
                     "publish reaches this child's connections only",
                     mws_sockdir.path);
        return;
    }
    /* a socket left by an earlier process with our pid */
    mws_sockdir_unlink(name);
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0
        || (mws_sockdir.root && geteuid() == 0
            && (fchownat(mws_sockdir.fd, name, 0, ap_unixd_config.group_id,
                         AT_SYMLINK_NOFOLLOW) < 0
                || fchmodat(mws_sockdir.fd, name, 0660, 0) < 0))
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

static int xchild_drop_privileges(apr_pool_t *pchild, server_rec *s)
{
    bind_socket(s);
    return DECLINED;
}

static apr_status_t xchild_child_exit(void *unused)
{
    char name[MWS_SOCKNAME_MAX];
    apr_status_t trv;
    int i;

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
        mws_sockdir_name(name, sizeof(name), my_pid);
        if (!mws_sockdir.root) {
            mws_sockdir_unlink(name);
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

void mws_xchild_child_init(apr_pool_t *pchild, server_rec *s,
                           mws_xchild_deliver_fn *deliver)
{
    apr_status_t rv;
    int i, limit = 0;

    xchild_deliver = deliver;
    ps_server = s;
    my_pid = getpid();

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
    apr_pool_cleanup_register(pchild, NULL, xchild_child_exit,
                              apr_pool_cleanup_null);
    rv = apr_thread_create(&rx_thread, NULL, rx_main, NULL, pchild);
    if (rv != APR_SUCCESS) {
        rx_thread = NULL;
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, MWS_LOGNO(00015)
                     "cannot start the publish receiver thread");
    }
}

/* Parent: a child was reaped; its socket is removed (it cannot do that
 * itself in root's folder). */
static void xchild_child_status(server_rec *s, pid_t pid,
                                ap_generation_t gen, int slot,
                                mpm_child_status state)
{
    char name[MWS_SOCKNAME_MAX];

    if (state == MPM_CHILD_EXITED && pid > 0 && mws_sockdir.fd >= 0
        && pid != getpid()) {
        mws_sockdir_name(name, sizeof(name), pid);
        mws_sockdir_unlink(name);
    }
}

void mws_xchild_register_hooks(void)
{
    /* the socket is bound in root's folder while the child is root */
    static const char *const before_unixd[] = { "mod_unixd.c", NULL };

    ap_hook_drop_privileges(xchild_drop_privileges, NULL, before_unixd,
                            APR_HOOK_MIDDLE);
    ap_hook_child_status(xchild_child_status, NULL, NULL, APR_HOOK_MIDDLE);
}
