/*
 * mws_sockdir.c -- the folder of the children's sockets (DefaultRuntimeDir/
 * mod_websocket), made and checked by the parent without following links.
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


/* ---- the parent: the socket folder ---------------------------------------- */

#define MWS_SOCKDIR       "mod_websocket"
#define MWS_SUN_PATH_MAX  (sizeof(((struct sockaddr_un *)0)->sun_path))

mws_sockdir_t mws_sockdir = { NULL, -1, 0 };

void mws_sockdir_name(char *buf, size_t cap, pid_t pid)
{
    apr_snprintf(buf, cap, "%ld.sock", (long)pid);
}

int mws_sockdir_path(char *buf, size_t cap, pid_t pid)
{
    int n = snprintf(buf, cap, "%s/%ld.sock", mws_sockdir.path, (long)pid);

    return n > 0 && (size_t)n < cap;
}

static void unlink_at(int fd, const char *name)
{
    struct stat st;

    if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0
        && S_ISSOCK(st.st_mode)) {
        unlinkat(fd, name, 0);
    }
}

void mws_sockdir_unlink(const char *name)
{
    if (mws_sockdir.fd >= 0) {
        unlink_at(mws_sockdir.fd, name);
    }
}

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
int mws_sockdir_check_config(apr_pool_t *ptemp, server_rec *s, int ninst)
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
    if (mws_sockdir.fd >= 0) {
        close(mws_sockdir.fd);
        mws_sockdir.fd = -1;
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
            unlink_at(fd, de->d_name);
        }
    }
    closedir(dh);
}

/* Open our folder in the parent's (pfd) without following a link; *why
 * says what is wrong with it (NULL: fine).  Returns its descriptor or -1. */
static int open_folder(apr_pool_t *ptemp, int pfd, const char **why)
{
    struct stat st;
    int fd = openat(pfd, MWS_SOCKDIR,
                    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0) {
        *why = (errno == ELOOP || errno == ENOTDIR)
               ? "is a symbolic link or not a directory"
               : apr_psprintf(ptemp, "cannot be opened (%s)",
                              strerror(errno));
    }
    else if (fstat(fd, &st) < 0) {
        *why = apr_psprintf(ptemp, "cannot be examined (%s)",
                            strerror(errno));
    }
    else {
        *why = folder_problem(ptemp, &st);
    }
    return fd;
}

/* Parent, at every (re)start: make the socket folder or take the one there
 * is, without following a link, and make it root's (mode 0710, the
 * children's group may only pass through), or ours when we do not run as
 * root (0700); remove sockets of processes that are gone.  Anything else
 * in place of the folder is refused: the server does not start. */
int mws_sockdir_post_config(apr_pool_t *pconf, apr_pool_t *ptemp,
                           server_rec *s, int ninst)
{
    const char *dir, *parent, *why;
    struct stat st;
    int pfd, fd, rv, root = geteuid() == 0;

    mws_sockdir.path = NULL;
    mws_sockdir.fd = -1;        /* the last generation's: closed with pconf */
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
    fd = open_folder(ptemp, pfd, &why);
    close(pfd);
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
    mws_sockdir.fd = fd;
    apr_pool_cleanup_register(pconf, NULL, close_dir_fd,
                              apr_pool_cleanup_null);
    mws_sockdir.root = root;
    mws_sockdir.path = dir;
    return OK;
}
