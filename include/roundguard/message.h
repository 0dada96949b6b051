/* llhttp over evbuffers: head spans recorded in place, bodies counted, pauses at boundaries. */
#ifndef ROUNDGUARD_MESSAGE_H
#define ROUNDGUARD_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "roundguard/http.h"

struct evbuffer;

/*
 * One message being parsed (parser->data points here). The callbacks record
 * the head as spans (offsets from the message start) into head, refuse what
 * a proxy must not pass on (obs-fold, CR/LF/NUL in values, a value with no
 * name, too many fields: error_status 400/431), hold chunk extensions and
 * trailers to extra_max and the body to body_max (413), and pause llhttp at
 * the end of the head and at the end of the message.
 *
 * With body_to set, the body goes there as llhttp parsed it, never as the
 * peer framed it: re-chunked (rechunk: sizes in lower-case hex, extensions
 * dropped, "0\r\n\r\n" at the end) or as plain data (de-chunking for an
 * HTTP/1.0 client). Trailer fields are dropped either way (counted in
 * trailers_dropped), and a bare LF in the trailer section, which strict
 * llhttp takes, is an error (400).
 */
struct message_parse {
	struct http_head *head;
	const char *ptr;	/* start of the piece being parsed */
	size_t off;		/* its offset from the start of the message */
	uint64_t body_len;
	uint64_t body_max;	/* 0 = no limit */
	uint64_t extra_len;	/* chunk extensions and trailers, held to the head limit */
	uint64_t extra_max;	/* 0 = no limit */
	struct evbuffer *body_to;	/* the parsed body goes here (see above) */
	bool rechunk;		/* ... framed as chunked again */
	uint32_t trailers_dropped;	/* trailer fields seen and not passed on */
	int error_status;
	const char *error_reason;	/* for the error body, when there is more to say */
	bool field_open;
	bool head_done;
	bool msg_done;
	bool in_trailer;	/* past the last chunk's size line */
	bool trailer_start;	/* paused at the last chunk's size line: message_feed resumes */
	bool trailer_cr;	/* the last trailer byte fed was CR */
};

/* Callbacks for requests or responses. */
void message_settings(llhttp_settings_t *s, bool response);

/* Ready p for the next message, recording its head into head (limits zeroed). */
void message_reset(llhttp_t *p, struct message_parse *mp, struct http_head *head);

/*
 * Give llhttp the bytes of buf past *fed. It stops early at a pause (head or
 * message complete); *fed then says how far it got. With no new bytes, a
 * resumed parser may still complete a message without a body. A bare LF in
 * a trailer section is HPE_USER with error_status 400.
 */
llhttp_errno_t message_feed(llhttp_t *p, struct message_parse *mp, struct evbuffer *buf,
    size_t *fed);

#endif
