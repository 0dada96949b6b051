/* llhttp over evbuffers: head spans recorded in place, bodies counted, pauses at boundaries. */
#include <string.h>

#include <event2/buffer.h>

#include "roundguard/message.h"

static uint32_t
span_off(const struct message_parse *pc, const char *at)
{
	return (uint32_t)(pc->off + (size_t)(at - pc->ptr));
}

static int
on_method(llhttp_t *p, const char *at, size_t len)
{
	struct message_parse *pc = p->data;

	http_span_extend(&pc->head->method, span_off(pc, at), (uint32_t)len);
	return 0;
}

static int
on_url(llhttp_t *p, const char *at, size_t len)
{
	struct message_parse *pc = p->data;

	http_span_extend(&pc->head->target, span_off(pc, at), (uint32_t)len);
	return 0;
}

static int
on_status(llhttp_t *p, const char *at, size_t len)
{
	struct message_parse *pc = p->data;

	http_span_extend(&pc->head->reason, span_off(pc, at), (uint32_t)len);
	return 0;
}

/* Chunk extensions and trailers are head-like bytes inside a body: same limit. */
static int
count_extra(struct message_parse *pc, size_t len)
{
	pc->extra_len += len;
	if (pc->extra_max != 0 && pc->extra_len > pc->extra_max) {
		pc->error_status = 431;
		return -1;
	}
	return 0;
}

static int
on_chunk_extension(llhttp_t *p, const char *at, size_t len)
{
	return count_extra(p->data, len);
}

static int
on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct message_parse *pc = p->data;
	struct http_field *f;

	if (pc->head_done)
		return count_extra(pc, len);	/* a trailer: counted, never passed on */

	if (!pc->field_open) {
		if (pc->head->nfields == HTTP_FIELDS_MAX) {
			pc->error_status = 431;
			return -1;
		}
		f = &pc->head->fields[pc->head->nfields++];
		f->name.len = f->value.len = 0;
		f->value.off = 0;
		pc->field_open = true;
	}
	f = &pc->head->fields[pc->head->nfields - 1];
	http_span_extend(&f->name, span_off(pc, at), (uint32_t)len);
	return 0;
}

static int
on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct message_parse *pc = p->data;
	struct http_span *v;
	uint32_t off;

	if (pc->head_done)
		return count_extra(pc, len);
	if (pc->head->nfields == 0 || pc->head->fields[pc->head->nfields - 1].name.len == 0) {
		/* A value with no name before it (": value"). */
		pc->error_status = 400;
		return -1;
	}
	v = &pc->head->fields[pc->head->nfields - 1].value;
	off = span_off(pc, at);

	/*
	 * llhttp hands over an obs-fold continuation as another piece of the same
	 * value, after a line break: a gap between pieces. RFC 9112 5.2 lets a
	 * proxy reject it, and passing the line break on would be worse. CR, LF,
	 * NUL and other control bytes never get here: strict llhttp (built with
	 * LLHTTP_STRICT_MODE) stops at them with an error (test_abuse.py covers
	 * both directions).
	 */
	if (v->len > 0 && off != v->off + v->len) {
		pc->error_status = 400;
		return -1;
	}

	http_span_extend(v, off, (uint32_t)len);
	return 0;
}

static int
on_header_value_complete(llhttp_t *p)
{
	struct message_parse *pc = p->data;

	if (pc->head_done) {
		pc->trailers_dropped++;
		return 0;
	}
	if (pc->head->nfields == 0 || pc->head->fields[pc->head->nfields - 1].name.len == 0) {
		pc->error_status = 400;		/* ":" with nothing before it */
		return -1;
	}

	pc->field_open = false;
	return 0;
}

static int
on_headers_complete(llhttp_t *p)
{
	struct message_parse *pc = p->data;

	pc->head_done = true;
	return HPE_PAUSED;
}

/* "<size in lower-case hex>\r\n", the only chunk-size line that goes on. */
static int
put_chunk_size(struct evbuffer *out, uint64_t size)
{
	char buf[20];
	char *p = buf + sizeof(buf);

	*--p = '\n';
	*--p = '\r';
	do {
		*--p = "0123456789abcdef"[size & 0xf];
		size >>= 4;
	} while (size != 0);
	return evbuffer_add(out, p, (size_t)(buf + sizeof(buf) - p));
}

static int
on_chunk_header(llhttp_t *p)
{
	struct message_parse *pc = p->data;

	if (p->content_length == 0) {
		/* The trailer section starts here: message_feed() checks its bytes. */
		pc->in_trailer = true;
		pc->trailer_start = true;
		return HPE_PAUSED;
	}
	/* A chunk announced past the limit can only end over it: 413 before any of it goes on. */
	if (pc->body_max != 0 && p->content_length > pc->body_max - pc->body_len) {
		pc->error_status = 413;
		return -1;
	}
	if (pc->body_to != NULL && pc->rechunk && put_chunk_size(pc->body_to, p->content_length) != 0)
		return -1;
	return 0;
}

static int
on_chunk_complete(llhttp_t *p)
{
	struct message_parse *pc = p->data;

	if (pc->body_to == NULL || !pc->rechunk)
		return 0;
	/* After the last chunk and its (dropped) trailers: an empty trailer section. */
	if (pc->in_trailer)
		return evbuffer_add(pc->body_to, "0\r\n\r\n", 5) == 0 ? 0 : -1;
	return evbuffer_add(pc->body_to, "\r\n", 2) == 0 ? 0 : -1;
}

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
	struct message_parse *pc = p->data;

	pc->body_len += len;
	if (pc->body_max != 0 && pc->body_len > pc->body_max) {
		pc->error_status = 413;
		return -1;
	}
	if (pc->body_to != NULL && evbuffer_add(pc->body_to, at, len) != 0)
		return -1;
	return 0;
}

static int
on_message_complete(llhttp_t *p)
{
	struct message_parse *pc = p->data;

	pc->msg_done = true;
	return HPE_PAUSED;
}

/*
 * Whether the trailer bytes llhttp just took hold a LF without a CR before
 * it: strict llhttp ends a trailer section at a bare LF, where a backend that
 * knows only CRLF would read on into the next request.
 */
static bool
trailer_bare_lf(struct message_parse *pc, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\n' && !pc->trailer_cr)
			return true;
		pc->trailer_cr = s[i] == '\r';
	}
	return false;
}

llhttp_errno_t
message_feed(llhttp_t *p, struct message_parse *pc, struct evbuffer *buf, size_t *fed)
{
	struct evbuffer_iovec v[8];
	struct evbuffer_ptr pos;
	size_t len = evbuffer_get_length(buf), took;
	llhttp_errno_t e;
	bool trailer;
	int n;

	if (*fed == len) {
		/* No new bytes, but a resumed parser may still complete a bodiless message. */
		pc->ptr = "";
		pc->off = *fed;
		return llhttp_execute(p, pc->ptr, 0);
	}
	while (*fed < len) {
		/* From the start (the usual case) needs no position lookup. */
		if (*fed == 0) {
			n = evbuffer_peek(buf, -1, NULL, v, 8);
		} else {
			evbuffer_ptr_set(buf, &pos, *fed, EVBUFFER_PTR_SET);
			n = evbuffer_peek(buf, -1, &pos, v, 8);
		}
		for (int i = 0; i < n && i < 8; i++) {
			pc->ptr = v[i].iov_base;
			pc->off = *fed;
			trailer = pc->in_trailer;
			e = llhttp_execute(p, v[i].iov_base, v[i].iov_len);
			if (e != HPE_OK && e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE)
				return e;
			took = e == HPE_OK ? v[i].iov_len :
			    (size_t)(llhttp_get_error_pos(p) - (const char *)v[i].iov_base);
			if (trailer && trailer_bare_lf(pc, v[i].iov_base, took)) {
				pc->error_status = 400;
				pc->error_reason = "A line of the trailer section ends in a bare LF";
				return HPE_USER;
			}
			*fed += took;
			if (e == HPE_PAUSED && pc->trailer_start) {
				/* Paused only to learn where the trailers start: go on from there. */
				pc->trailer_start = false;
				llhttp_resume(p);
				break;
			}
			if (e != HPE_OK)
				return e;
		}
	}
	return HPE_OK;
}

void
message_reset(llhttp_t *p, struct message_parse *pc, struct http_head *head)
{
	llhttp_reset(p);
	memset(pc, 0, sizeof(*pc));
	head->nfields = 0;
	head->method.len = head->target.len = head->reason.len = 0;
	pc->head = head;
	p->data = pc;
}

void
message_settings(llhttp_settings_t *s, bool response)
{
	llhttp_settings_init(s);
	if (response) {
		s->on_status = on_status;
	} else {
		s->on_method = on_method;
		s->on_url = on_url;
	}
	s->on_header_field = on_header_field;
	s->on_header_value = on_header_value;
	s->on_header_value_complete = on_header_value_complete;
	s->on_headers_complete = on_headers_complete;
	s->on_body = on_body;
	s->on_chunk_header = on_chunk_header;
	s->on_chunk_complete = on_chunk_complete;
	s->on_chunk_extension_name = on_chunk_extension;
	s->on_chunk_extension_value = on_chunk_extension;
	s->on_message_complete = on_message_complete;
}
