/*
 * relay: the floor under a user-space proxy's tunnel, for bench/run's WebSocket section.
 *
 * A TCP relay that does nothing a proxy could leave out: accept, connect to the next of
 * the backends (round robin), then per readiness one recv() and one send() to the other
 * side, and nothing else: no HTTP, no buffers of its own, no timers, no metrics, no logs.
 * Its CPU per echoed message is what any proxy with the same I/O model cannot go below on
 * this machine; roundguardd's is compared with it. With -m uring the same relay runs on
 * io_uring (multishot accept and receive into a ring of provided buffers, sends queued
 * and submitted together, one io_uring_enter per wake-up): what a different I/O model
 * could save in system calls.
 *
 * Only for the bench's load (small messages, one in flight per connection): a send that
 * does not take the whole message ends the relay with an error (it keeps no buffers to
 * wait with), and so does any other failure. Loopback addresses only.
 *
 * usage: relay [-m epoll|uring] -l PORT -b PORT[,PORT...]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef HAVE_LIBURING
#include <liburing.h>
#endif

#define MAX_BACKENDS	8
#define MSG_MAX		16384

static int backends[MAX_BACKENDS], nbackends, next_backend;
static int *peer;		/* fd -> the other side's fd */
static uint8_t *eof;		/* fd -> its read side ended (1), then closed */
static int nfds;

static void
die(const char *what)
{
	fprintf(stderr, "relay: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void
nodelay(int fd)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1)
		die("TCP_NODELAY");
}

static struct sockaddr_in
loopback(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static int
listen_on(int port)
{
	struct sockaddr_in a = loopback(port);
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (fd == -1 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, (struct sockaddr *)&a, sizeof(a)) == -1 || listen(fd, 4096) == -1)
		die("listen");
	return fd;
}

/* A blocking connect to the next backend: on loopback it is done at once. */
static int
pair_with_backend(int client)
{
	struct sockaddr_in a = loopback(backends[next_backend++ % nbackends]);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd == -1 || connect(fd, (struct sockaddr *)&a, sizeof(a)) == -1)
		die("connect to a backend");
	if (fd >= nfds || client >= nfds) {
		errno = EMFILE;
		die("descriptor table");
	}
	nodelay(client);
	nodelay(fd);
	peer[client] = fd;
	peer[fd] = client;
	eof[client] = eof[fd] = 0;
	return fd;
}

/* One side's end: passed on as a half-close; both ended, both closed. */
static void
side_ended(int fd)
{
	int other = peer[fd];

	eof[fd] = 1;
	shutdown(other, SHUT_WR);
	if (eof[other]) {
		close(fd);
		close(other);
	}
}

static void
send_all(int to, const void *p, size_t n)
{
	ssize_t sent = send(to, p, n, MSG_NOSIGNAL);

	if (sent != (ssize_t)n) {
		if (sent == -1 && (errno == EPIPE || errno == ECONNRESET))
			return;		/* the peer is gone; its end comes as a read */
		fprintf(stderr, "relay: a send took %zd of %zu bytes (this relay keeps no buffers)\n",
		    sent, n);
		exit(1);
	}
}

static void
run_epoll(int lfd)
{
	static char buf[MSG_MAX];
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd }, evs[512];
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep == -1 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) == -1)
		die("epoll");
	for (;;) {
		int n = epoll_wait(ep, evs, 512, -1);

		if (n == -1 && errno != EINTR)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd, c, b;
			uint32_t closing;
			ssize_t got;

			if (fd == lfd) {
				if ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) == -1)
					continue;
				b = pair_with_backend(c);
				ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
				ev.data.fd = c;
				if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) == -1)
					die("epoll_ctl");
				ev.data.fd = b;
				if (epoll_ctl(ep, EPOLL_CTL_ADD, b, &ev) == -1)
					die("epoll_ctl");
				continue;
			}
			if (eof[fd])
				continue;
			/*
			 * Edge-triggered: read until a short read (the kernel queue is empty), or
			 * to the end when the peer closed (its edge is not reported again).
			 */
			closing = evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
			do {
				got = recv(fd, buf, sizeof(buf), 0);
				if (got > 0)
					send_all(peer[fd], buf, (size_t)got);
			} while (got == (ssize_t)sizeof(buf) || (closing && got > 0));
			if (got == 0 || (got == -1 && errno != EAGAIN && errno != EINTR))
				side_ended(fd);
		}
	}
}

#ifdef HAVE_LIBURING
#define NBUF		1024		/* provided receive buffers, shared by all connections */
#define BUF_SIZE	4096
#define BUF_GROUP	1
enum { OP_ACCEPT = 1, OP_RECV, OP_SEND };
/* user_data: operation, buffer id, descriptor */
#define UD(op, bid, fd)	(((uint64_t)(op) << 56) | ((uint64_t)(bid) << 32) | (uint32_t)(fd))

static struct io_uring ring;
static struct io_uring_buf_ring *bufring;
static char *bufs;

static struct io_uring_sqe *
sqe(void)
{
	struct io_uring_sqe *s = io_uring_get_sqe(&ring);

	if (s == NULL) {	/* the submission queue is full: submit what it holds */
		io_uring_submit(&ring);
		if ((s = io_uring_get_sqe(&ring)) == NULL) {
			fprintf(stderr, "relay: no io_uring submission entry\n");
			exit(1);
		}
	}
	return s;
}

static void
arm_recv(int fd)
{
	struct io_uring_sqe *s = sqe();

	io_uring_prep_recv_multishot(s, fd, NULL, 0, 0);
	s->flags |= IOSQE_BUFFER_SELECT;
	s->buf_group = BUF_GROUP;
	io_uring_sqe_set_data64(s, UD(OP_RECV, 0, fd));
}

static void
buf_give(unsigned bid)
{
	io_uring_buf_ring_add(bufring, bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, (unsigned short)bid,
	    io_uring_buf_ring_mask(NBUF), 0);
	io_uring_buf_ring_advance(bufring, 1);
}

static void
uring_completion(int lfd, const struct io_uring_cqe *cqe)
{
	int op = (int)(cqe->user_data >> 56), fd = (int)(uint32_t)cqe->user_data;
	unsigned bid = (unsigned)(cqe->user_data >> 32) & 0xffffff;
	struct io_uring_sqe *s;

	switch (op) {
	case OP_ACCEPT:
		if (cqe->res >= 0) {
			int b = pair_with_backend(cqe->res);

			arm_recv(cqe->res);
			arm_recv(b);
		}
		if (!(cqe->flags & IORING_CQE_F_MORE))
			die("multishot accept ended");
		(void)lfd;
		break;
	case OP_RECV:
		if (cqe->res == -ENOBUFS) {	/* every buffer in flight: receive again */
			arm_recv(fd);
			break;
		}
		if (cqe->res <= 0) {
			if (!eof[fd])
				side_ended(fd);
			break;
		}
		bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		s = sqe();
		io_uring_prep_send(s, peer[fd], bufs + (size_t)bid * BUF_SIZE, (size_t)cqe->res, MSG_NOSIGNAL);
		io_uring_sqe_set_data64(s, UD(OP_SEND, bid, cqe->res));
		if (!(cqe->flags & IORING_CQE_F_MORE))
			arm_recv(fd);
		break;
	case OP_SEND:
		/* fd holds the length asked for here */
		if (cqe->res != fd && cqe->res != -EPIPE && cqe->res != -ECONNRESET) {
			fprintf(stderr, "relay: a send took %d of %d bytes (this relay keeps no buffers)\n",
			    cqe->res, fd);
			exit(1);
		}
		buf_give(bid);
		break;
	}
}

static void
run_uring(int lfd)
{
	struct io_uring_params p = { .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN };
	struct io_uring_buf_reg reg = { .ring_entries = NBUF, .bgid = BUF_GROUP };
	struct io_uring_sqe *s;
	int rc;

	if ((rc = io_uring_queue_init_params(4096, &ring, &p)) < 0) {
		errno = -rc;
		die("io_uring_queue_init_params");
	}
	bufring = mmap(NULL, NBUF * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
	    MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (bufring == MAP_FAILED || (bufs = malloc((size_t)NBUF * BUF_SIZE)) == NULL)
		die("buffers");
	io_uring_buf_ring_init(bufring);
	reg.ring_addr = (unsigned long)bufring;
	if ((rc = io_uring_register_buf_ring(&ring, &reg, 0)) < 0) {
		errno = -rc;
		die("io_uring_register_buf_ring");
	}
	for (unsigned i = 0; i < NBUF; i++)
		buf_give(i);
	s = sqe();
	io_uring_prep_multishot_accept(s, lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(s, UD(OP_ACCEPT, 0, lfd));
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;

		/* Sends queued by the last round go out with the wait for the next. */
		if ((rc = io_uring_submit_and_wait(&ring, 1)) < 0 && rc != -EINTR) {
			errno = -rc;
			die("io_uring_submit_and_wait");
		}
		io_uring_for_each_cqe(&ring, head, cqe) {
			uring_completion(lfd, cqe);
			seen++;
		}
		io_uring_cq_advance(&ring, seen);
	}
}
#endif

static void
usage(void)
{
	fprintf(stderr, "usage: relay [-m epoll|uring] -l PORT -b PORT[,PORT...]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *mode = "epoll";
	struct rlimit rl;
	int port = 0, opt;
	char *s, *end;

	while ((opt = getopt(argc, argv, "m:l:b:")) != -1) {
		switch (opt) {
		case 'm':
			mode = optarg;
			break;
		case 'l':
			port = atoi(optarg);
			break;
		case 'b':
			for (s = strtok(optarg, ","); s != NULL && nbackends < MAX_BACKENDS; s = strtok(NULL, ",")) {
				long v = strtol(s, &end, 10);

				if (*end != '\0' || v < 1 || v > 65535)
					usage();
				backends[nbackends++] = (int)v;
			}
			break;
		default:
			usage();
		}
	}
	if (port < 1 || port > 65535 || nbackends == 0)
		usage();
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		die("getrlimit");
	nfds = rl.rlim_cur > 1048576 ? 1048576 : (int)rl.rlim_cur;
	if ((peer = calloc((size_t)nfds, sizeof(*peer))) == NULL || (eof = calloc((size_t)nfds, 1)) == NULL)
		die("calloc");
	if (strcmp(mode, "epoll") == 0) {
		run_epoll(listen_on(port));
	} else if (strcmp(mode, "uring") == 0) {
#ifdef HAVE_LIBURING
		run_uring(listen_on(port));
#else
		fprintf(stderr, "relay: built without liburing\n");
		return 2;
#endif
	}
	usage();
}
