/* fuzz_egress_policy.c - the egress decisions (egress_policy.c): CIDR
 * parsing, allow entries and project policies as JSON, and egress_decide on
 * random addresses, names, ports, operator rules and policies.
 *
 * Invariants checked, beyond "no crash":
 *   - a CIDR that parses contains its own address, has no host bits, and
 *     its text form parses back to itself; a failure leaves the output
 *     untouched and says why;
 *   - a policy that loads has at most 100 entries, and its normalized JSON
 *     loads back to the same policy;
 *   - a refusal always has a printable reason, an allow never has one;
 *   - never allowed: mode none; a mail port the operator did not lift; a
 *     built-in special range the operator did not lift; a range the
 *     operator denies; the platform's own address; in allowlist mode, a
 *     name not listed whose address is in no listed range;
 *   - the check before resolution never refuses what a resolved address
 *     would allow.
 *
 * Input: one selector byte, then the case's bytes. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress_policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                  \
	do {                                                                                         \
		if (!(cond)) {                                                                       \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                     \
		}                                                                                    \
	} while (0)

static bool printable_text(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

static void check_cidr(const char *s)
{
	struct egress_cidr c, keep;
	memset(&c, 0x5a, sizeof(c));
	keep = c;
	struct zerr err = {0};
	int r = egress_cidr_parse(s, &c, &err);
	if (r < 0) {
		CHECK(r == -EINVAL);
		CHECK(err.msg[0] != '\0');
		CHECK(memcmp(&c, &keep, sizeof(c)) == 0);
		return;
	}
	CHECK(c.a.family == AF_INET || c.a.family == AF_INET6);
	CHECK(c.bits <= (c.a.family == AF_INET ? 32 : 128));
	CHECK(egress_cidr_contains(&c, &c.a));
	char text[64], again[80];
	egress_addr_str(&c.a, text, sizeof(text));
	snprintf(again, sizeof(again), "%s/%u", text, c.bits);
	struct egress_cidr d;
	CHECK(egress_cidr_parse(again, &d, NULL) == 0);
	CHECK(d.bits == c.bits && d.a.family == c.a.family && memcmp(d.a.b, c.a.b, sizeof(d.a.b)) == 0);
	/* Every address past the prefix (flip the last bit) is still in it
	 * unless the prefix is full length. */
	struct egress_addr x = c.a;
	x.b[c.a.family == AF_INET ? 3 : 15] ^= 1;
	CHECK(egress_cidr_contains(&c, &x) == (c.bits < (c.a.family == AF_INET ? 32 : 128)));
}

static void check_policy(const char *text, size_t len)
{
	json_t *j = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	if (!j)
		return;
	static struct egress_policy p, q;
	struct zerr err = {0};
	int r = egress_policy_from_json(j, &p, &err);
	json_decref(j);
	if (r < 0) {
		CHECK(r == -EINVAL);
		CHECK(err.msg[0] != '\0');
		return;
	}
	CHECK(p.n <= EGRESS_POLICY_MAX_ENTRIES);
	json_t *out = egress_policy_to_json(&p);
	CHECK(out);
	CHECK(egress_policy_from_json(out, &q, &err) == 0);
	json_decref(out);
	CHECK(q.mode == p.mode && q.n == p.n);
	for (size_t i = 0; i < p.n; i++) {
		CHECK(q.e[i].kind == p.e[i].kind);
		if (p.e[i].kind == EGRESS_E_CIDR)
			CHECK(q.e[i].cidr.bits == p.e[i].cidr.bits &&
			      memcmp(q.e[i].cidr.a.b, p.e[i].cidr.a.b, 16) == 0);
		else {
			CHECK(strcmp(q.e[i].name, p.e[i].name) == 0);
			CHECK(egress_name_valid(p.e[i].name));
			for (const char *c = p.e[i].name; *c; c++)
				CHECK(!(*c >= 'A' && *c <= 'Z'));
		}
	}
}

/* Bytes consumed from the front of the input. */
struct cursor {
	const uint8_t *p;
	size_t n;
};

static uint8_t take(struct cursor *c)
{
	if (c->n == 0)
		return 0;
	c->n--;
	return *c->p++;
}

/* An address biased towards the interesting ranges: a prefix from a
 * table, the rest random. */
static struct egress_addr pick_addr(struct cursor *c)
{
	static const char *const seeds[] = {
	    "127.0.0.1",  "10.0.0.0",    "169.254.169.254", "100.64.0.0", "192.168.0.0",
	    "172.16.0.0", "8.8.8.8",     "0.0.0.0",         "224.0.0.0",  "::1",
	    "::ffff:0:0", "64:ff9b::",   "2002::",          "2001::",     "fc00::",
	    "fe80::",     "2606:4700::", "ff00::",          "::",         "203.0.113.0"};
	struct egress_addr a;
	uint8_t sel = take(c);
	CHECK(egress_addr_parse(seeds[sel % ELEMENTSOF(seeds)], &a) == 0);
	unsigned keep = take(c) % 17, len = a.family == AF_INET ? 4 : 16;
	for (unsigned i = keep; i < len; i++)
		a.b[i] = take(c);
	return a;
}

static bool in_any(const struct egress_cidr *v, size_t n, const struct egress_addr *a)
{
	for (size_t i = 0; i < n; i++)
		if (egress_cidr_contains(&v[i], a))
			return true;
	return false;
}

static void check_decide(struct cursor *c)
{
	static struct egress_rules r;
	static struct egress_policy p;
	egress_rules_init(&r);
	unsigned n_allow = take(c) % 4, n_deny = take(c) % 3;
	for (unsigned i = 0; i < n_allow; i++) {
		r.allow[r.n_allow].a = pick_addr(c);
		r.allow[r.n_allow].bits = (uint8_t)(take(c) % (r.allow[r.n_allow].a.family == AF_INET ? 33 : 129));
		r.n_allow++;
	}
	for (unsigned i = 0; i < n_deny; i++) {
		r.deny[r.n_deny].a = pick_addr(c);
		r.deny[r.n_deny].bits = (uint8_t)(take(c) % (r.deny[r.n_deny].a.family == AF_INET ? 33 : 129));
		r.n_deny++;
	}
	if (take(c) & 1)
		r.ports[r.n_ports++] = 587;
	struct egress_addr self = pick_addr(c);
	uint16_t self_port = (uint16_t)(take(c) << 8 | take(c));
	bool has_self = egress_rules_add_self(&r, &self, self_port) == 0;

	egress_policy_default(&p);
	p.mode = (enum egress_mode)(take(c) % 3);
	unsigned n_entries = take(c) % 4;
	for (unsigned i = 0; i < n_entries; i++) {
		char entry[64];
		size_t k = 0;
		for (uint8_t len = take(c) % 24; k < len && c->n; k++)
			entry[k] = (char)take(c);
		entry[k] = '\0';
		if (egress_entry_parse(entry, &p.e[p.n], NULL) == 0)
			p.n++;
	}

	struct egress_addr a = pick_addr(c);
	uint16_t port = (uint16_t)(take(c) << 8 | take(c));
	if (take(c) & 1)
		port = (uint16_t[]){25, 465, 587, 443}[take(c) % 4];
	/* The rest is the host name as asked. */
	char host[300];
	size_t hl = c->n < sizeof(host) - 1 ? c->n : sizeof(host) - 1;
	memcpy(host, c->p, hl);
	host[hl] = '\0';

	struct egress_decision d;
	bool ok = egress_decide(&r, &p, host, &a, port, &d);
	CHECK(ok == (d.refusal == EGRESS_OK));
	CHECK(ok == (d.reason[0] == '\0'));
	CHECK(printable_text(d.reason));
	if (ok) {
		CHECK(p.mode != EGRESS_NONE);
		CHECK(port != 0);
		if (egress_port_default_denied(port))
			CHECK(port == 587 && r.n_ports == 1);
		CHECK(!in_any(r.deny, r.n_deny, &a));
		if (egress_addr_special(&a, NULL))
			CHECK(in_any(r.allow, r.n_allow, &a));
		if (has_self)
			CHECK(!(self.family == a.family && memcmp(self.b, a.b, 16) == 0 &&
			        (self_port == 0 || self_port == port)));
		/* Before resolution, the same question is not refused. */
		struct egress_addr lit;
		if (egress_addr_parse(host, &lit) != 0)
			CHECK(egress_decide(&r, &p, host, NULL, port, NULL));
		if (p.mode == EGRESS_ALLOWLIST) {
			bool listed = false;
			for (size_t i = 0; i < p.n; i++)
				listed =
				    listed || p.e[i].kind != EGRESS_E_CIDR || egress_cidr_contains(&p.e[i].cidr, &a);
			CHECK(listed);
		}
	}
	/* The default ranges, unlifted, with an open policy: never allowed. */
	egress_rules_init(&r);
	egress_policy_default(&p);
	if (egress_addr_special(&a, NULL)) {
		char text[64];
		egress_addr_str(&a, text, sizeof(text));
		CHECK(!egress_decide(&r, &p, text, NULL, 443, &d));
		CHECK(d.refusal == EGRESS_R_RANGE);
		CHECK(!egress_decide(&r, &p, "example.com", &a, 443, &d));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 4096)
		return 0;
	uint8_t sel = data[0];
	data++;
	size--;
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	switch (sel % 4) {
	case 0:
		check_cidr(s);
		break;
	case 1: {
		struct egress_entry e;
		struct zerr err = {0};
		if (egress_entry_parse(s, &e, &err) < 0)
			CHECK(err.msg[0] != '\0' && printable_text(err.msg));
		else
			CHECK(e.kind == EGRESS_E_CIDR || egress_name_valid(e.name));
		struct egress_rules r;
		egress_rules_init(&r);
		struct egress_rules before = r;
		if (egress_rules_add_list(&r, sel & 4, s, &err) < 0)
			CHECK(memcmp(&before, &r, sizeof(r)) == 0);
		if (egress_rules_add_ports(&r, s, &err) == 0)
			for (size_t i = 0; i < r.n_ports; i++)
				CHECK(r.ports[i] != 0);
		break;
	}
	case 2:
		check_policy(s, size);
		break;
	case 3: {
		struct cursor c = {data, size};
		check_decide(&c);
		break;
	}
	}
	free(s);
	return 0;
}
