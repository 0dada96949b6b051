/* roundguard-echo: the backend that demos, tests and benchmarks put behind roundguardd. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "roundguard/echo.h"
#include "roundguard/log.h"
#include "roundguard/memcache.h"
#include "roundguard/net.h"
#include "roundguard/parse.h"

#define ECHO_WORKERS_MAX 256

static const char usage_text[] =
    "usage: roundguard-echo [-p PORT] [-l ADDR] [-w N] [--max-body SIZE] [--access-log]\n"
    "                       [-V] [-h]\n"
    "  -p, --port PORT     port to listen on (default 8000)\n"
    "  -l, --listen ADDR   address to listen on (default: all addresses)\n"
    "  -w, --workers N     worker processes sharing the port (default 1)\n"
    "      --max-body SIZE largest accepted request body (default 16MiB)\n"
    "      --access-log    log one line per request\n"
    "  -V, --version       print the version and exit\n"
    "  -h, --help          print this help and exit\n"
    "Environment: LOG_LEVEL (trace, debug, info, warn, error), LOG_FORMAT (text, json)\n";

/* The parent's view of its workers, read by the signal handler. */
static struct {
	pid_t pids[ECHO_WORKERS_MAX];
	int nworkers;
	volatile sig_atomic_t stopping;
} echo_main;

static void __attribute__((noreturn))
usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "roundguard-echo: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'roundguard-echo --help' for more information.\n");
	exit(2);
}

static void
forward_signal(int sig)
{
	int saved = errno;

	echo_main.stopping = 1;
	for (int i = 0; i < echo_main.nworkers; i++)
		if (echo_main.pids[i] > 0)
			kill(echo_main.pids[i], SIGTERM);
	errno = saved;
}

static pid_t
spawn_worker(int i, const int *fds, const struct echo_options *opts)
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	for (int j = 0; j < echo_main.nworkers; j++)
		if (j != i)
			close(fds[j]);
	_exit(echo_worker_run(fds[i], opts));
}

/* Run the workers as children and supervise them: a dead one is started again. */
static int
supervise(const int *fds, const struct echo_options *opts)
{
	struct sigaction sa;
	int status, alive = 0;
	pid_t pid;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = forward_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGHUP, SIG_IGN);

	for (int i = 0; i < echo_main.nworkers; i++) {
		if ((pid = spawn_worker(i, fds, opts)) == -1) {
			log_error("fork failed", "error", strerror(errno), NULL);
			forward_signal(SIGTERM);
			break;
		}
		echo_main.pids[i] = pid;
		alive++;
	}
	while (alive > 0) {
		pid = waitpid(-1, &status, 0);
		if (pid == -1) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int i = 0; i < echo_main.nworkers; i++) {
			if (echo_main.pids[i] != pid)
				continue;
			echo_main.pids[i] = 0;
			alive--;
			if (echo_main.stopping)
				break;
			log_error("worker died, starting it again", "status",
			    WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "exited", NULL);
			usleep(100 * 1000);
			if ((pid = spawn_worker(i, fds, opts)) > 0) {
				echo_main.pids[i] = pid;
				alive++;
			}
			break;
		}
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "listen", required_argument, NULL, 'l' },
		{ "workers", required_argument, NULL, 'w' },
		{ "max-body", required_argument, NULL, 'M' },
		{ "access-log", no_argument, NULL, 'A' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct echo_options opts = { .max_body = 16 * 1024 * 1024, .access_log = false };
	struct listen_addr la = { .host = "", .port = 8000 };
	const char *listen_arg = NULL;
	uint16_t port = 8000;
	bool port_set = false;
	int fds[ECHO_WORKERS_MAX];
	char err[512], shown[PARSE_HOST_MAX + 16];
	const char *errstr = NULL;
	int ch, nworkers = 1;

	memcache_install();
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":p:l:w:Vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			if (parse_port(optarg, &port, err, sizeof(err)) == -1)
				usage_error("--port: %s", err);
			port_set = true;
			break;
		case 'l':
			listen_arg = optarg;
			break;
		case 'w':
			nworkers = (int)strtonum(optarg, 1, ECHO_WORKERS_MAX, &errstr);
			if (errstr != NULL)
				usage_error("--workers: \"%s\": must be a number from 1 to 256", optarg);
			break;
		case 'M':
			if (parse_size(optarg, &opts.max_body, err, sizeof(err)) == -1)
				usage_error("--max-body: %s", err);
			break;
		case 'A':
			opts.access_log = true;
			break;
		case 'V':
			printf("roundguard-echo %s\n", ROUNDGUARD_VERSION);
			return 0;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case ':':
			usage_error("option %s needs a value", argv[optind - 1]);
		default:
			usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument \"%s\"", argv[optind]);

	/* -l takes an address, or an address with a port that -p may override. */
	if (listen_arg != NULL && parse_listen_flag(listen_arg, port, &la, err, sizeof(err)) == -1)
		usage_error("--listen: %s", err);
	if (listen_arg == NULL || port_set)
		la.port = port;

	if (log_init_env(err, sizeof(err)) == -1) {
		fprintf(stderr, "roundguard-echo: %s\n", err);
		return 1;
	}
	log_set_proc("echo");

	for (int i = 0; i < nworkers; i++) {
		if ((fds[i] = net_listen(&la, nworkers > 1, err, sizeof(err))) == -1) {
			log_error("cannot listen", "error", err, NULL);
			return 1;
		}
	}
	snprintf(shown, sizeof(shown), la.is_ipv6 ? "[%s]:%u" : "%s:%u",
	    la.host[0] != '\0' ? la.host : "*", la.port);
	snprintf(err, sizeof(err), "%d", nworkers);
	log_info("listening", "address", shown, "workers", err, NULL);

	if (nworkers == 1)
		return echo_worker_run(fds[0], &opts);
	echo_main.nworkers = nworkers;
	return supervise(fds, &opts);
}
