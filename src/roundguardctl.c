/* roundguardctl: one request to roundguardd's control socket; its answer for people or scripts. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>

#include "config.h"
#include "roundguard/control.h"
#include "roundguard/parse.h"
#include "roundguard/proc.h"

#define NS_S			INT64_C(1000000000)
#define TIMEOUT_DEFAULT_NS	(10 * NS_S)
#define TIMEOUT_MAX_S		86400
/* A status answer takes a few hundred bytes per backend: 4096 backends fit several times over. */
#define ANSWER_MAX		(4 * 1024 * 1024)
/* Object, backends array, backend object; the rest is slack for a newer daemon. */
#define ANSWER_DEPTH		16

/* Exit statuses, as roundguardctl(8) documents them. */
enum {
	CTL_OK = 0,
	CTL_REFUSED = 1,	/* the daemon answered ok: false */
	CTL_USAGE = 2,
	CTL_UNREACHABLE = 3,
	CTL_DENIED = 4,
	CTL_BAD_ANSWER = 5,	/* none, cut short, not JSON, too large or too late */
};

static const char usage_text[] =
    "usage: roundguardctl [-s SOCKET] [--json] [-t SECONDS] COMMAND [ARGUMENT...]\n"
    "       roundguardctl -V | -h\n"
    "Commands:\n"
    "  status              every backend: state, last check, weight, load\n"
    "  drain BACKEND       no new requests; those in flight finish; checks go on\n"
    "  maint BACKEND       out of rotation and not checked\n"
    "  ready BACKEND       back to normal: takes traffic once its checks pass\n"
    "  weight BACKEND N    share of new requests, 0-256 (0: none)\n"
    "BACKEND is a backend's URL as configured or its host:port, as status shows it.\n"
    "Options:\n"
    "  -s, --socket PATH   the control socket (default " CONTROL_SOCKET_DEFAULT ")\n"
    "      --json          print the daemon's answer, JSON as received\n"
    "  -t, --timeout SECONDS  how long to wait for the answer (default 10)\n"
    "  -V, --version       print the version and exit\n"
    "  -h, --help          print this help and exit\n"
    "Environment: " CONTROL_SOCKET_ENV " (the socket when -s is not given)\n";

static struct {
	const char *socket;
	bool json;
	int64_t timeout_ns;
} opt = { NULL, false, TIMEOUT_DEFAULT_NS };

static void __attribute__((noreturn, format(printf, 1, 2)))
usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("roundguardctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'roundguardctl --help' for more information.\n", stderr);
	exit(CTL_USAGE);
}

static void __attribute__((noreturn, format(printf, 2, 3)))
die(int status, const char *fmt, ...)
{
	va_list ap;

	fputs("roundguardctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(status);
}

/* Text from the daemon made safe for a terminal: control bytes (escapes too) become '?'. */
static char *
clean(char *s)
{
	for (char *p = s; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
	return s;
}

/* A heap string, cleaned; out of memory ends the program. */
static char * __attribute__((format(printf, 1, 2)))
xprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n == -1)
		die(EXIT_FAILURE, "out of memory");
	return clean(s);
}

/* -t: seconds ("10", "0.5") or a duration as the configuration writes them ("30s", "1m"). */
static int64_t
timeout_arg(const char *s)
{
	char *end, why[128];
	double sec;
	int64_t ns;

	errno = 0;
	sec = strtod(s, &end);
	if (end != s && *end == '\0' && errno == 0)
		ns = sec > 0 && sec <= TIMEOUT_MAX_S ? (int64_t)(sec * (double)NS_S) : 0;
	else if (parse_duration(s, &ns, why, sizeof(why)) == -1)
		usage_error("-t: \"%s\" is not a number of seconds", s);
	if (ns <= 0 || ns > TIMEOUT_MAX_S * NS_S)
		usage_error("-t: \"%s\" is out of range (more than 0, at most %d seconds)", s,
		    TIMEOUT_MAX_S);
	return ns;
}

static int
parse_cli(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":s:t:Vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			opt.socket = optarg;
			break;
		case 'j':
			opt.json = true;
			break;
		case 't':
			opt.timeout_ns = timeout_arg(optarg);
			break;
		case 'V':
			printf("roundguardctl %s\n", ROUNDGUARD_VERSION);
			exit(CTL_OK);
		case 'h':
			fputs(usage_text, stdout);
			exit(CTL_OK);
		case ':':
			usage_error("option %s needs a value", argv[optind - 1]);
		default:
			usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	return optind;
}

/* N of "weight B N": an integer here; its range is the parser's to check, in the parser's words. */
static int
weight_arg(const char *s)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || *end != '\0' || (*s != '-' && *s != '+' && (*s < '0' || *s > '9')))
		usage_error("weight: \"%s\" is not an integer", s);
	if (errno == ERANGE || v < INT_MIN || v > INT_MAX)
		usage_error("weight: %s is out of range (0-%d)", s, CONTROL_WEIGHT_MAX);
	return (int)v;
}

/*
 * The request the command line asks for as JSON text in text, checked by the
 * daemon's own parser so that a bad request stops here, before any
 * connection, with the reason the daemon would give. Its length.
 */
static size_t
build_request(int argc, char **argv, struct control_request *r, char *text, size_t len)
{
	struct control_request again;
	char err[512];
	int want, n;

	if (argc < 1)
		usage_error("no command (status, drain, maint, ready or weight)");
	if (control_command_from_name(argv[0], &r->command) == -1)
		usage_error("unknown command \"%s\" (use status, drain, maint, ready or weight)",
		    argv[0]);
	want = r->command == CONTROL_STATUS ? 0 : r->command == CONTROL_WEIGHT ? 2 : 1;
	if (argc - 1 != want)
		usage_error("%s takes %s", argv[0], want == 0 ? "no argument" :
		    want == 1 ? "one argument: BACKEND" : "two arguments: BACKEND N");
	r->backend[0] = '\0';
	r->weight = -1;
	if (want >= 1 && strlcpy(r->backend, argv[1], sizeof(r->backend)) >= sizeof(r->backend))
		usage_error("backend: too long: %zu bytes (at most %d)", strlen(argv[1]),
		    CONTROL_BACKEND_MAX);
	if (want == 2)
		r->weight = weight_arg(argv[2]);
	n = control_request_format(r, text, len);
	if (n == -1)
		usage_error("the request does not fit in %zu bytes", len - 1);
	if (control_request_parse(text, (size_t)n, &again, err, sizeof(err)) == -1)
		usage_error("%s", err);
	return (size_t)n;
}

/* Wait until fd is ready for events: true, or false when the deadline has passed. */
static bool
wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };
	int64_t left;
	int n;

	for (;;) {
		left = deadline - proc_now_ns();
		if (left <= 0)
			return false;
		left = (left + 999999) / 1000000;
		n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
		/* Ready or failed: either way the next send() or recv() says which. */
		if (n > 0 || (n == -1 && errno != EINTR))
			return true;
	}
}

/* A stream socket connected to path before the deadline; a failure ends the program (2, 3 or 4). */
static int
connect_control(const char *path, int64_t deadline)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval tv;
	char waited[32];
	int64_t left;
	int fd;

	if (path[0] == '\0')
		usage_error("the control socket path is empty");
	if (strlcpy(sun.sun_path, path, sizeof(sun.sun_path)) >= sizeof(sun.sun_path))
		usage_error("socket path too long (at most %zu bytes): %s", sizeof(sun.sun_path) - 1,
		    path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		die(CTL_UNREACHABLE, "socket: %s", strerror(errno));
	/* connect() waits while the master's backlog is full; SO_SNDTIMEO bounds it (EAGAIN). */
	left = deadline - proc_now_ns();
	if (left < 1000)
		left = 1000;
	tv = proc_timeval(left);
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		switch (errno) {
		case EACCES:
		case EPERM:
			die(CTL_DENIED, "permission denied on %s: run as root or as a member of its "
			    "group", path);
		case ENOENT:
		case ENOTDIR:
		case ECONNREFUSED:
			die(CTL_UNREACHABLE, "no roundguardd is listening on %s (is it running? is "
			    "control.socket set?)", path);
		case EAGAIN:
		case EINPROGRESS:
		case ETIMEDOUT:
			format_duration(waited, sizeof(waited), opt.timeout_ns);
			die(CTL_UNREACHABLE, "roundguardd on %s did not take the connection within %s",
			    path, waited);
		default:
			die(CTL_UNREACHABLE, "cannot connect to %s: %s", path, strerror(errno));
		}
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == -1)
		die(CTL_UNREACHABLE, "fcntl: %s", strerror(errno));
	return fd;
}

static void __attribute__((noreturn))
too_late(const char *path)
{
	char waited[32];

	format_duration(waited, sizeof(waited), opt.timeout_ns);
	die(CTL_BAD_ANSWER, "no answer from roundguardd on %s within %s (the request may still "
	    "be carried out: see status)", path, waited);
}

/* The request, then the end of it (SHUT_WR), which tells the master the request is whole. */
static void
send_request(int fd, const char *path, const char *text, size_t len, int64_t deadline)
{
	size_t off = 0;
	ssize_t n;

	while (off < len) {
		n = send(fd, text + off, len - off, MSG_NOSIGNAL);
		if (n > 0)
			off += (size_t)n;
		else if (errno == EAGAIN && !wait_fd(fd, POLLOUT, deadline))
			too_late(path);
		else if (errno != EAGAIN && errno != EINTR)
			return;		/* closed early: what the master said is read next */
	}
	(void)shutdown(fd, SHUT_WR);
}

/* The whole answer, up to the end of file: NUL-terminated, for the caller to free. */
static char *
read_answer(int fd, const char *path, int64_t deadline, size_t *lenp)
{
	size_t len = 0, cap = 0;
	char *buf = NULL, *p;
	ssize_t n;

	for (;;) {
		if (cap - len < 2) {
			/* One byte past the limit tells an answer over it; one more for the NUL. */
			cap = cap == 0 ? 16384 : cap * 2;
			if (cap > ANSWER_MAX + 2)
				cap = ANSWER_MAX + 2;
			if ((p = realloc(buf, cap)) == NULL)
				die(EXIT_FAILURE, "out of memory");
			buf = p;
		}
		n = recv(fd, buf + len, cap - len - 1, 0);
		if (n > 0) {
			len += (size_t)n;
			if (len > ANSWER_MAX)
				die(CTL_BAD_ANSWER, "the answer from roundguardd is over %d MiB",
				    ANSWER_MAX >> 20);
		} else if (n == 0) {
			break;
		} else if (errno == EAGAIN) {
			if (!wait_fd(fd, POLLIN, deadline))
				too_late(path);
		} else if (errno != EINTR) {
			die(CTL_BAD_ANSWER, "reading the answer from %s: %s", path, strerror(errno));
		}
	}
	buf[len] = '\0';
	*lenp = len;
	return buf;
}

/* The answer as a JSON object with a boolean "ok"; anything else ends the program (5). */
static struct json_object *
parse_answer(const char *buf, size_t len)
{
	struct json_tokener *tok;
	struct json_object *root, *ok;
	enum json_tokener_error e;

	if (strspn(buf, " \t\r\n") == len)
		die(CTL_BAD_ANSWER, "roundguardd closed the connection without an answer");
	if (len > INT_MAX || (tok = json_tokener_new_ex(ANSWER_DEPTH)) == NULL)
		die(EXIT_FAILURE, "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, buf, (int)len);
	e = json_tokener_get_error(tok);
	json_tokener_free(tok);
	if (e == json_tokener_continue)
		die(CTL_BAD_ANSWER, "the answer from roundguardd is cut short");
	if (e != json_tokener_success)
		die(CTL_BAD_ANSWER, "the answer from roundguardd is not JSON: %s",
		    json_tokener_error_desc(e));
	if (!json_object_is_type(root, json_type_object) ||
	    !json_object_object_get_ex(root, "ok", &ok) ||
	    !json_object_is_type(ok, json_type_boolean))
		die(CTL_BAD_ANSWER, "the answer from roundguardd is not an object with \"ok\"");
	return root;
}

/* ---- showing the answer ---- */

/* Member key of o if it has type t (for a number, an integer will do), else NULL. */
static struct json_object *
member(struct json_object *o, const char *key, enum json_type t)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || v == NULL)
		return NULL;
	if (json_object_is_type(v, t) || (t == json_type_double &&
	    json_object_is_type(v, json_type_int)))
		return v;
	return NULL;
}

static const char *
str_member(struct json_object *o, const char *key)
{
	struct json_object *v = member(o, key, json_type_string);

	return v != NULL ? json_object_get_string(v) : NULL;
}

/* A duration for people: "45s", "4m12s", "1h02m03s", "3d04h05m"; "-" when there is none. */
static char *
human_duration(struct json_object *v)
{
	double s = v != NULL ? json_object_get_double(v) : -1;
	int64_t t;

	if (!isfinite(s) || s < 0 || s > 1e15)
		return xprintf("-");
	t = (int64_t)s;
	if (t < 60)
		return xprintf("%" PRId64 "s", t);
	if (t < 3600)
		return xprintf("%" PRId64 "m%02" PRId64 "s", t / 60, t % 60);
	if (t < 86400)
		return xprintf("%" PRId64 "h%02" PRId64 "m%02" PRId64 "s", t / 3600, t / 60 % 60,
		    t % 60);
	return xprintf("%" PRId64 "d%02" PRId64 "h%02" PRId64 "m", t / 86400, t / 3600 % 24,
	    t / 60 % 60);
}

enum { COL_BACKEND, COL_STATE, COL_CHECK, COL_SINCE, COL_WEIGHT, COL_ACTIVE, COL_RATE, NCOLS };

static const char *const col_titles[NCOLS] = {
	"BACKEND", "STATE", "CHECK", "SINCE", "WEIGHT", "ACTIVE", "REQ/S",
};

/* The cells of one backend of a status answer. */
static void
status_row(struct json_object *b, char *cell[NCOLS])
{
	const char *url = str_member(b, "url"), *name = str_member(b, "name");
	const char *state = str_member(b, "state"), *check = str_member(b, "check");
	const char *reason = str_member(b, "reason");
	struct json_object *w = member(b, "weight", json_type_int);
	struct json_object *ew = member(b, "effective_weight", json_type_int);
	struct json_object *active = member(b, "active_connections", json_type_int);
	struct json_object *rate = member(b, "requests_per_s", json_type_double);

	/* The name says it all for a plain "http://host:port", else the URL; both name it. */
	if (name != NULL && (url == NULL || (strncmp(url, "http://", 7) == 0 &&
	    strcmp(url + 7, name) == 0)))
		cell[COL_BACKEND] = xprintf("%s", name);
	else
		cell[COL_BACKEND] = xprintf("%s", url != NULL ? url : "-");
	cell[COL_STATE] = xprintf("%s", state != NULL ? state : "-");
	if (check != NULL && reason != NULL && reason[0] != '\0' && strcmp(reason, check) != 0)
		cell[COL_CHECK] = xprintf("%s (%s)", check, reason);
	else
		cell[COL_CHECK] = xprintf("%s", check != NULL ? check : "-");
	cell[COL_SINCE] = human_duration(member(b, "since_s", json_type_double));
	if (w == NULL)
		cell[COL_WEIGHT] = xprintf("-");
	else if (ew != NULL && json_object_get_int64(ew) != json_object_get_int64(w))
		cell[COL_WEIGHT] = xprintf("%" PRId64 "/%" PRId64, json_object_get_int64(ew),
		    json_object_get_int64(w));
	else
		cell[COL_WEIGHT] = xprintf("%" PRId64, json_object_get_int64(w));
	cell[COL_ACTIVE] = active != NULL ?
	    xprintf("%" PRId64, json_object_get_int64(active)) : xprintf("-");
	cell[COL_RATE] = rate != NULL ? xprintf("%.1f", json_object_get_double(rate)) : xprintf("-");
}

/* Characters, not bytes, so that UTF-8 in a reason keeps the columns straight. */
static size_t
text_width(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

static void
print_row(char *const cell[NCOLS], const size_t width[NCOLS])
{
	for (int c = 0; c < NCOLS; c++) {
		fputs(cell[c], stdout);
		if (c == NCOLS - 1)
			break;
		for (size_t pad = text_width(cell[c]); pad < width[c] + 2; pad++)
			putchar(' ');
	}
	putchar('\n');
}

/* The header line and one aligned row per backend. */
static void
print_status(struct json_object *root)
{
	struct json_object *backends = member(root, "backends", json_type_array);
	struct json_object *gen = member(root, "generation", json_type_int);
	struct json_object *workers = member(root, "workers", json_type_int);
	const char *version = str_member(root, "version");
	size_t n, width[NCOLS];
	char *(*rows)[NCOLS], *uptime, *head;

	if (backends == NULL)
		die(CTL_BAD_ANSWER, "the status answer from roundguardd has no \"backends\" list");
	n = json_object_array_length(backends);
	for (size_t i = 0; i < n; i++) {
		if (!json_object_is_type(json_object_array_get_idx(backends, i), json_type_object))
			die(CTL_BAD_ANSWER, "the status answer from roundguardd has backends[%zu] that "
			    "is not an object", i);
	}
	if ((rows = calloc(n + 1, sizeof(*rows))) == NULL)
		die(EXIT_FAILURE, "out of memory");
	for (int c = 0; c < NCOLS; c++) {
		rows[0][c] = xprintf("%s", col_titles[c]);
		width[c] = text_width(rows[0][c]);
	}
	for (size_t i = 0; i < n; i++) {
		status_row(json_object_array_get_idx(backends, i), rows[i + 1]);
		for (int c = 0; c < NCOLS; c++) {
			size_t w = text_width(rows[i + 1][c]);

			if (w > width[c])
				width[c] = w;
		}
	}

	uptime = human_duration(member(root, "uptime_s", json_type_double));
	head = xprintf("roundguardd %s, generation %s, %s %s, up %s", version != NULL ? version :
	    "?", gen != NULL ? json_object_get_string(gen) : "?",
	    workers != NULL ? json_object_get_string(workers) : "?",
	    workers != NULL && json_object_get_int64(workers) == 1 ? "worker" : "workers", uptime);
	puts(head);
	free(head);
	free(uptime);
	for (size_t i = 0; i <= n; i++) {
		print_row(rows[i], width);
		for (int c = 0; c < NCOLS; c++)
			free(rows[i][c]);
	}
	free(rows);
}

/* Print the answer; the exit status it calls for. */
static int
show_answer(struct json_object *root, enum control_command command, const char *raw, size_t len)
{
	struct json_object *ok;
	const char *text;
	char *line;

	json_object_object_get_ex(root, "ok", &ok);
	if (opt.json) {
		fwrite(raw, 1, len, stdout);
		if (raw[len - 1] != '\n')
			putchar('\n');
	}
	if (!json_object_get_boolean(ok)) {
		text = str_member(root, "error");
		line = xprintf("%s", text != NULL ? text : "the request was refused");
		fprintf(stderr, "roundguardctl: %s\n", line);
		free(line);
		return CTL_REFUSED;
	}
	if (opt.json)
		return CTL_OK;
	if (command == CONTROL_STATUS) {
		print_status(root);
	} else if ((text = str_member(root, "message")) != NULL) {
		line = xprintf("%s", text);
		puts(line);
		free(line);
	}
	return CTL_OK;
}

int
main(int argc, char **argv)
{
	struct control_request r;
	char text[CONTROL_REQUEST_MAX + 1];
	const char *path;
	struct json_object *root;
	char *answer;
	size_t len, answer_len;
	int64_t deadline;
	int first, fd, status;

	first = parse_cli(argc, argv);
	len = build_request(argc - first, argv + first, &r, text, sizeof(text));
	path = opt.socket;
	if (path == NULL && (path = getenv(CONTROL_SOCKET_ENV)) != NULL && path[0] == '\0')
		path = NULL;
	if (path == NULL)
		path = CONTROL_SOCKET_DEFAULT;

	deadline = proc_now_ns() + opt.timeout_ns;
	fd = connect_control(path, deadline);
	send_request(fd, path, text, len, deadline);
	answer = read_answer(fd, path, deadline, &answer_len);
	close(fd);
	root = parse_answer(answer, answer_len);
	status = show_answer(root, r.command, answer, answer_len);
	json_object_put(root);
	free(answer);
	if (fflush(stdout) == EOF || ferror(stdout))
		die(EXIT_FAILURE, "writing to standard output: %s", strerror(errno));
	return status;
}
