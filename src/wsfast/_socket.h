/* System calls of wsfast._speedups' socket transport (POSIX only).
 *
 * Each returns the byte count, or -errno on failure (EINTR retried). On
 * Windows they fail with -ENOSYS: wsfast uses the event loop's own
 * transports there.
 */
#ifndef WSFAST_SOCKET_H
#define WSFAST_SOCKET_H

#include <errno.h>
#include <stddef.h>

#define WSF_IOV_MAX 64

typedef struct {
    const void *base;
    size_t len;
} wsf_iov;

/* The call failed only because the socket is not ready. */
static inline int wsf_would_block(ptrdiff_t result)
{
    return result == -EAGAIN || result == -EWOULDBLOCK;
}

#ifndef _WIN32
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* macOS: Python ignores SIGPIPE anyway */
#endif

static inline ptrdiff_t wsf_recv(int fd, void *buf, size_t n)
{
    ssize_t r;
    do {
        r = recv(fd, buf, n, 0);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? -(ptrdiff_t)errno : (ptrdiff_t)r;
}

static inline ptrdiff_t wsf_send(int fd, const void *buf, size_t n)
{
    ssize_t r;
    do {
        r = send(fd, buf, n, MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? -(ptrdiff_t)errno : (ptrdiff_t)r;
}

/* Send up to WSF_IOV_MAX buffers in one system call. */
static inline ptrdiff_t wsf_sendv(int fd, const wsf_iov *bufs, int count)
{
    struct iovec iov[WSF_IOV_MAX];
    struct msghdr msg;
    ssize_t r;
    int i;
    if (count > WSF_IOV_MAX)
        count = WSF_IOV_MAX;
    for (i = 0; i < count; i++) {
        iov[i].iov_base = (void *)bufs[i].base;
        iov[i].iov_len = bufs[i].len;
    }
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = count;
    do {
        r = sendmsg(fd, &msg, MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? -(ptrdiff_t)errno : (ptrdiff_t)r;
}

#else /* _WIN32 */

static inline ptrdiff_t wsf_recv(int fd, void *buf, size_t n)
{
    (void)fd; (void)buf; (void)n;
    return -ENOSYS;
}

static inline ptrdiff_t wsf_send(int fd, const void *buf, size_t n)
{
    (void)fd; (void)buf; (void)n;
    return -ENOSYS;
}

static inline ptrdiff_t wsf_sendv(int fd, const wsf_iov *bufs, int count)
{
    (void)fd; (void)bufs; (void)count;
    return -ENOSYS;
}

#endif /* _WIN32 */
#endif /* WSFAST_SOCKET_H */
