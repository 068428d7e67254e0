/* egress_policy.c - see egress_policy.h */
#define _GNU_SOURCE
#include "egress_policy.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "cleanup.h"

/* ---- addresses ----------------------------------------------------------- */

int egress_addr_parse(const char *s, struct egress_addr *ret)
{
	struct egress_addr a = {0};
	if (!s || !s[0] || strlen(s) > INET6_ADDRSTRLEN)
		return -EINVAL;
	/* inet_pton(AF_INET) takes exactly four decimal parts and no leading
	 * zeros: none of inet_aton's "127.1" or "0x7f.0.0.1". */
	if (strchr(s, ':')) {
		if (inet_pton(AF_INET6, s, a.b) != 1)
			return -EINVAL;
		a.family = AF_INET6;
	} else {
		if (inet_pton(AF_INET, s, a.b) != 1)
			return -EINVAL;
		a.family = AF_INET;
	}
	*ret = a;
	return 0;
}

static unsigned addr_bits(const struct egress_addr *a)
{
	return a->family == AF_INET ? 32 : 128;
}

/* Whether the first bits bits of x and y agree. */
static bool prefix_equal(const uint8_t *x, const uint8_t *y, unsigned bits)
{
	unsigned full = bits / 8, rest = bits % 8;
	if (memcmp(x, y, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (x[full] & mask) == (y[full] & mask);
}

bool egress_cidr_contains(const struct egress_cidr *c, const struct egress_addr *a)
{
	return c->a.family == a->family && prefix_equal(c->a.b, a->b, c->bits);
}

const char *egress_addr_str(const struct egress_addr *a, char *buf, size_t size)
{
	if (!inet_ntop(a->family == AF_INET ? AF_INET : AF_INET6, a->b, buf, (socklen_t)size))
		snprintf(buf, size, "?");
	return buf;
}

/* s as a quoted, printable excerpt for a message: bytes outside printable
 * ASCII become '?', at most 64 of them. */
static const char *printable(const char *s, char *buf, size_t size)
{
	size_t k = 0;
	for (; s && *s && k + 1 < size && k < 64; s++)
		buf[k++] = *s >= 0x20 && *s < 0x7f && *s != '"' ? *s : '?';
	buf[k] = '\0';
	return buf;
}

int egress_cidr_parse(const char *s, struct egress_cidr *ret, struct zerr *err)
{
	char shown[72], text[INET6_ADDRSTRLEN + 1];
	const char *slash = s ? strchr(s, '/') : NULL;
	size_t alen = slash ? (size_t)(slash - s) : (s ? strlen(s) : 0);
	struct egress_cidr c = {0};
	if (!s || alen == 0 || alen >= sizeof(text))
		return zerr_set(err, -EINVAL, "\"%s\" is not an IP address or CIDR",
		                printable(s, shown, sizeof(shown)));
	memcpy(text, s, alen);
	text[alen] = '\0';
	if (egress_addr_parse(text, &c.a) < 0)
		return zerr_set(err, -EINVAL, "\"%s\" is not an IP address or CIDR",
		                printable(s, shown, sizeof(shown)));
	unsigned max = addr_bits(&c.a), bits = max;
	if (slash) {
		const char *d = slash + 1;
		size_t n = strlen(d);
		bool digits = n > 0 && n <= 3 && strspn(d, "0123456789") == n && (d[0] != '0' || n == 1);
		bits = digits ? (unsigned)atoi(d) : max + 1;
		if (bits > max)
			return zerr_set(err, -EINVAL, "\"%s\": the prefix length must be 0..%u",
			                printable(s, shown, sizeof(shown)), max);
	}
	c.bits = (uint8_t)bits;
	struct egress_addr masked = {.family = c.a.family};
	for (unsigned i = 0; i < bits / 8; i++)
		masked.b[i] = c.a.b[i];
	if (bits % 8)
		masked.b[bits / 8] = (uint8_t)(c.a.b[bits / 8] & (0xff << (8 - bits % 8)));
	if (memcmp(masked.b, c.a.b, sizeof(masked.b)) != 0) {
		char fixed[INET6_ADDRSTRLEN];
		return zerr_set(err, -EINVAL, "\"%s\" has bits set past /%u (did you mean %s/%u?)",
		                printable(s, shown, sizeof(shown)), bits,
		                egress_addr_str(&masked, fixed, sizeof(fixed)), bits);
	}
	*ret = c;
	return 0;
}

/* ---- built-in special-purpose ranges ------------------------------------- */

struct special {
	int family;
	uint8_t b[16];
	uint8_t bits;
	const char *what;
};

/* IANA's IPv4 and IPv6 special-purpose registries, every range that is not
 * globally reachable, and the IPv6 forms that carry an IPv4 address. The
 * first match names the reason, so narrower ranges come first. */
static const struct special specials[] = {
    {AF_INET, {0}, 8, "a \"this network\" address"},
    {AF_INET, {127}, 8, "a loopback address"},
    {AF_INET, {10}, 8, "a private address"},
    {AF_INET, {172, 16}, 12, "a private address"},
    {AF_INET, {192, 168}, 16, "a private address"},
    {AF_INET, {100, 64}, 10, "a shared (carrier-grade NAT) address"},
    {AF_INET, {169, 254, 169, 254}, 32, "cloud metadata (link-local)"},
    {AF_INET, {169, 254}, 16, "a link-local address"},
    {AF_INET, {192, 0, 0}, 24, "an IETF protocol address"},
    {AF_INET, {192, 0, 2}, 24, "a documentation address"},
    {AF_INET, {198, 51, 100}, 24, "a documentation address"},
    {AF_INET, {203, 0, 113}, 24, "a documentation address"},
    {AF_INET, {198, 18}, 15, "a benchmarking address"},
    {AF_INET, {224}, 4, "a multicast address"},
    {AF_INET, {255, 255, 255, 255}, 32, "the broadcast address"},
    {AF_INET, {240}, 4, "a reserved address"},
    {AF_INET6, {0}, 128, "the unspecified address"},
    {AF_INET6, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, "a loopback address"},
    {AF_INET6, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96, "an IPv4-mapped address"},
    {AF_INET6, {0}, 96, "an IPv4-compatible address"},
    {AF_INET6, {0x00, 0x64, 0xff, 0x9b}, 96, "a NAT64 address"},
    {AF_INET6, {0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48, "a NAT64 address"},
    {AF_INET6, {0x01, 0x00}, 64, "a discard-only address"},
    {AF_INET6, {0x20, 0x02}, 16, "a 6to4 address"},
    {AF_INET6, {0x20, 0x01, 0x00, 0x00}, 32, "a Teredo address"},
    {AF_INET6, {0x20, 0x01, 0x0d, 0xb8}, 32, "a documentation address"},
    {AF_INET6, {0xfc}, 7, "a unique local (private) address"},
    {AF_INET6, {0xfe, 0x80}, 10, "a link-local address"},
    {AF_INET6, {0xfe, 0xc0}, 10, "a site-local address"},
    {AF_INET6, {0xff}, 8, "a multicast address"},
};

bool egress_addr_special(const struct egress_addr *a, const char **ret_what)
{
	for (size_t i = 0; i < ELEMENTSOF(specials); i++)
		if (specials[i].family == a->family && prefix_equal(specials[i].b, a->b, specials[i].bits)) {
			if (ret_what)
				*ret_what = specials[i].what;
			return true;
		}
	return false;
}

/* The IPv4 address an IPv6 transition form carries, which the kernel or a
 * relay would end up reaching: mapped, compatible and NAT64 (last four
 * bytes), 6to4 (bytes 2..5), Teredo (the client, last four bytes
 * inverted). */
static bool embedded_v4(const struct egress_addr *a, struct egress_addr *ret)
{
	static const uint8_t zero[12] = {0}, mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff},
	                     nat64[12] = {0x00, 0x64, 0xff, 0x9b};
	if (a->family != AF_INET6)
		return false;
	*ret = (struct egress_addr){.family = AF_INET};
	if (memcmp(a->b, mapped, 12) == 0 || memcmp(a->b, nat64, 12) == 0 ||
	    (memcmp(a->b, zero, 12) == 0 && (a->b[12] | a->b[13] | a->b[14] | (a->b[15] & 0xfe)) != 0)) {
		memcpy(ret->b, a->b + 12, 4);
		return true;
	}
	if (a->b[0] == 0x20 && a->b[1] == 0x02) {
		memcpy(ret->b, a->b + 2, 4);
		return true;
	}
	if (a->b[0] == 0x20 && a->b[1] == 0x01 && a->b[2] == 0 && a->b[3] == 0) {
		for (int i = 0; i < 4; i++)
			ret->b[i] = (uint8_t)~a->b[12 + i];
		return true;
	}
	return false;
}

/* ---- the operator's layer ------------------------------------------------ */

void egress_rules_init(struct egress_rules *r)
{
	memset(r, 0, sizeof(*r));
}

/* Calls item(ctx, text) for each trimmed, non-empty item of a
 * comma-separated list. */
static int each_item(const char *list, int (*item)(void *, const char *, struct zerr *), void *ctx, struct zerr *err)
{
	for (const char *p = list ? list : ""; *p;) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		while (n > 0 && (*p == ' ' || *p == '\t'))
			p++, n--;
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n > 0) {
			char buf[128];
			if (n >= sizeof(buf))
				return zerr_set(err, -EINVAL, "\"%.40s...\" is too long", p);
			memcpy(buf, p, n);
			buf[n] = '\0';
			int r = item(ctx, buf, err);
			if (r < 0)
				return r;
		}
		p = end ? end + 1 : p + strlen(p);
	}
	return 0;
}

struct list_ctx {
	struct egress_cidr *v;
	size_t *n;
};

static int add_cidr(void *ctx, const char *s, struct zerr *err)
{
	struct list_ctx *l = ctx;
	if (*l->n >= EGRESS_RULES_MAX)
		return zerr_set(err, -E2BIG, "at most %d ranges in a list", EGRESS_RULES_MAX);
	return egress_cidr_parse(s, &l->v[(*l->n)++], err) < 0 ? ((*l->n)--, -EINVAL) : 0;
}

int egress_rules_add_list(struct egress_rules *r, bool deny, const char *list, struct zerr *err)
{
	struct egress_rules copy = *r;
	struct list_ctx l = {deny ? copy.deny : copy.allow, deny ? &copy.n_deny : &copy.n_allow};
	int ret = each_item(list, add_cidr, &l, err);
	if (ret == 0)
		*r = copy;
	return ret;
}

static int add_port(void *ctx, const char *s, struct zerr *err)
{
	struct egress_rules *r = ctx;
	size_t n = strlen(s);
	unsigned long v = n > 0 && n <= 5 && strspn(s, "0123456789") == n && s[0] != '0' ? strtoul(s, NULL, 10) : 0;
	if (v == 0 || v > 65535)
		return zerr_set(err, -EINVAL, "\"%s\" is not a port (1..65535)", s);
	if (r->n_ports >= EGRESS_PORTS_MAX)
		return zerr_set(err, -E2BIG, "at most %d ports", EGRESS_PORTS_MAX);
	r->ports[r->n_ports++] = (uint16_t)v;
	return 0;
}

int egress_rules_add_ports(struct egress_rules *r, const char *list, struct zerr *err)
{
	struct egress_rules copy = *r;
	int ret = each_item(list, add_port, &copy, err);
	if (ret == 0)
		*r = copy;
	return ret;
}

int egress_rules_add_self(struct egress_rules *r, const struct egress_addr *a, uint16_t port)
{
	static const uint8_t zero[16] = {0};
	if ((a->family != AF_INET && a->family != AF_INET6) || memcmp(a->b, zero, a->family == AF_INET ? 4 : 16) == 0)
		return -EINVAL;
	if (r->n_self >= EGRESS_SELF_MAX)
		return -E2BIG;
	r->self[r->n_self].a = *a;
	r->self[r->n_self].port = port;
	r->n_self++;
	return 0;
}

bool egress_port_default_denied(uint16_t port)
{
	return port == 25 || port == 465 || port == 587;
}

/* ---- a project's policy -------------------------------------------------- */

bool egress_name_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0 || n > EGRESS_NAME_MAX)
		return false;
	size_t label = 0;
	bool digits_only = true;
	for (size_t i = 0; i <= n; i++) {
		char c = i < n ? s[i] : '.';
		if (c == '.') {
			if (label == 0 || label > 63 || s[i - 1] == '-')
				return false;
			if (i < n) {
				label = 0;
				digits_only = true;
			}
			continue;
		}
		bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'), digit = c >= '0' && c <= '9';
		if (!alpha && !digit && !(c == '-' && label > 0))
			return false;
		digits_only = digits_only && digit;
		label++;
	}
	return !digits_only;
}

/* s lower-cased without its trailing dot into buf (EGRESS_NAME_MAX + 1);
 * s must be a valid name. */
static void name_norm(const char *s, char *buf)
{
	size_t n = strlen(s);
	if (n > 0 && s[n - 1] == '.')
		n--;
	for (size_t i = 0; i < n; i++)
		buf[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
	buf[n] = '\0';
}

int egress_entry_parse(const char *s, struct egress_entry *ret, struct zerr *err)
{
	char shown[72];
	struct egress_entry e = {0};
	if (!s || !s[0])
		return zerr_set(err, -EINVAL, "an empty entry");
	if (strlen(s) > EGRESS_ENTRY_MAX)
		return zerr_set(err, -EINVAL, "\"%s...\" is longer than %d bytes", printable(s, shown, sizeof(shown)),
		                EGRESS_ENTRY_MAX);
	if (strchr(s, '/') || strchr(s, ':') || egress_addr_parse(s, &e.cidr.a) == 0) {
		e.kind = EGRESS_E_CIDR;
		int r = egress_cidr_parse(s, &e.cidr, err);
		if (r < 0)
			return r;
	} else if (strncmp(s, "*.", 2) == 0) {
		e.kind = EGRESS_E_SUFFIX;
		if (!egress_name_valid(s + 2))
			return zerr_set(err, -EINVAL,
			                "\"%s\": after \"*.\" comes a host name (letters, digits, inner hyphens, dots; "
			                "internationalized names in their xn-- form)",
			                printable(s, shown, sizeof(shown)));
		name_norm(s + 2, e.name);
	} else {
		e.kind = EGRESS_E_NAME;
		if (!egress_name_valid(s))
			return zerr_set(err, -EINVAL,
			                "\"%s\" is not a host name, *.suffix, IP address or CIDR (names: letters, "
			                "digits, inner hyphens, dots; internationalized names in their xn-- form)",
			                printable(s, shown, sizeof(shown)));
		name_norm(s, e.name);
	}
	*ret = e;
	return 0;
}

static bool entry_equal(const struct egress_entry *x, const struct egress_entry *y)
{
	if (x->kind != y->kind)
		return false;
	if (x->kind == EGRESS_E_CIDR)
		return x->cidr.bits == y->cidr.bits && x->cidr.a.family == y->cidr.a.family &&
		       memcmp(x->cidr.a.b, y->cidr.a.b, sizeof(x->cidr.a.b)) == 0;
	return strcmp(x->name, y->name) == 0;
}

static const char *const mode_names[] = {
    [EGRESS_OPEN] = "open", [EGRESS_ALLOWLIST] = "allowlist", [EGRESS_NONE] = "none"};

void egress_policy_default(struct egress_policy *p)
{
	p->mode = EGRESS_OPEN;
	p->n = 0;
}

int egress_policy_from_json(json_t *j, struct egress_policy *ret, struct zerr *err)
{
	if (!json_is_object(j))
		return zerr_set(err, -EINVAL,
		                "egress: want {\"mode\": \"open\"|\"allowlist\"|\"none\", \"allow\": [...]}");
	const char *k;
	json_t *v;
	json_object_foreach (j, k, v)
		if (strcmp(k, "mode") != 0 && strcmp(k, "allow") != 0)
			return zerr_set(err, -EINVAL, "egress: unknown field \"%.64s\" (mode, allow)", k);
	_cleanup_free_ struct egress_policy *p = calloc(1, sizeof(*p));
	if (!p)
		return zerr_set(err, -ENOMEM, "egress: out of memory");
	json_t *mode = json_object_get(j, "mode");
	if (mode) {
		const char *m = json_string_value(mode);
		size_t i = 0;
		while (m && i < ELEMENTSOF(mode_names) && strcmp(m, mode_names[i]) != 0)
			i++;
		if (!m || i == ELEMENTSOF(mode_names))
			return zerr_set(err, -EINVAL, "egress.mode: want \"open\", \"allowlist\" or \"none\"");
		p->mode = (enum egress_mode)i;
	}
	json_t *allow = json_object_get(j, "allow");
	if (allow && !json_is_array(allow))
		return zerr_set(err, -EINVAL, "egress.allow: want an array of strings");
	if (json_array_size(allow) > EGRESS_POLICY_MAX_ENTRIES)
		return zerr_set(err, -EINVAL, "egress.allow: at most %d entries", EGRESS_POLICY_MAX_ENTRIES);
	size_t i;
	json_array_foreach (allow, i, v) {
		struct zerr why = {0};
		const char *s = json_string_value(v);
		if (!s)
			return zerr_set(err, -EINVAL, "egress.allow[%zu]: want a string", i);
		if (strlen(s) != json_string_length(v))
			return zerr_set(err, -EINVAL, "egress.allow[%zu]: contains a NUL byte", i);
		if (egress_entry_parse(s, &p->e[p->n], &why) < 0)
			return zerr_set(err, -EINVAL, "egress.allow[%zu]: %s", i, why.msg);
		for (size_t x = 0; x < p->n; x++)
			if (entry_equal(&p->e[x], &p->e[p->n]))
				return zerr_set(err, -EINVAL, "egress.allow[%zu]: the same entry as egress.allow[%zu]",
				                i, x);
		p->n++;
	}
	memcpy(ret, p, sizeof(*p));
	return 0;
}

json_t *egress_policy_to_json(const struct egress_policy *p)
{
	json_t *allow = json_array();
	for (size_t i = 0; allow && i < p->n; i++) {
		const struct egress_entry *e = &p->e[i];
		char buf[EGRESS_NAME_MAX + 8];
		if (e->kind == EGRESS_E_NAME)
			snprintf(buf, sizeof(buf), "%s", e->name);
		else if (e->kind == EGRESS_E_SUFFIX)
			snprintf(buf, sizeof(buf), "*.%s", e->name);
		else {
			char a[INET6_ADDRSTRLEN];
			egress_addr_str(&e->cidr.a, a, sizeof(a));
			if (e->cidr.bits == addr_bits(&e->cidr.a))
				snprintf(buf, sizeof(buf), "%s", a);
			else
				snprintf(buf, sizeof(buf), "%s/%u", a, e->cidr.bits);
		}
		json_array_append_new(allow, json_string(buf));
	}
	return allow ? json_pack("{s:s,s:o}", "mode", mode_names[p->mode], "allow", allow) : NULL;
}

/* ---- the decision -------------------------------------------------------- */

static bool refuse(struct egress_decision *ret, enum egress_refusal why, const char *fmt, ...) _printf_(3, 4);
static bool refuse(struct egress_decision *ret, enum egress_refusal why, const char *fmt, ...)
{
	if (ret) {
		va_list ap;
		va_start(ap, fmt);
		ret->refusal = why;
		vsnprintf(ret->reason, sizeof(ret->reason), fmt, ap);
		va_end(ap);
	}
	return false;
}

static bool lifted(const struct egress_rules *r, const struct egress_addr *a)
{
	for (size_t i = 0; i < r->n_allow; i++)
		if (egress_cidr_contains(&r->allow[i], a))
			return true;
	return false;
}

/* Layers 1 and 2 for one address (and, depth allowing, the IPv4 address
 * it embeds). */
static bool addr_allowed(const struct egress_rules *r, const struct egress_addr *a, uint16_t port, int depth,
                         struct egress_decision *ret)
{
	char s[INET6_ADDRSTRLEN];
	for (size_t i = 0; i < r->n_self; i++)
		if (r->self[i].a.family == a->family && memcmp(r->self[i].a.b, a->b, sizeof(a->b)) == 0 &&
		    (r->self[i].port == 0 || r->self[i].port == port))
			return refuse(ret, EGRESS_R_SELF, "%s is an address of the platform itself",
			              egress_addr_str(a, s, sizeof(s)));
	for (size_t i = 0; i < r->n_deny; i++)
		if (egress_cidr_contains(&r->deny[i], a))
			return refuse(ret, EGRESS_R_OPERATOR, "%s is in a range the operator denies",
			              egress_addr_str(a, s, sizeof(s)));
	const char *what;
	if (egress_addr_special(a, &what) && !lifted(r, a))
		return refuse(ret, EGRESS_R_RANGE, "%s is %s", egress_addr_str(a, s, sizeof(s)), what);
	struct egress_addr v4;
	if (depth == 0 && embedded_v4(a, &v4) && !addr_allowed(r, &v4, port, 1, ret)) {
		char inner[EGRESS_REASON_MAX];
		snprintf(inner, sizeof(inner), "%s", ret ? ret->reason : "");
		return refuse(ret, ret ? ret->refusal : EGRESS_R_RANGE, "%s carries %s",
		              egress_addr_str(a, s, sizeof(s)), inner);
	}
	return true;
}

static bool port_allowed(const struct egress_rules *r, uint16_t port)
{
	if (port == 0)
		return false;
	if (!egress_port_default_denied(port))
		return true;
	for (size_t i = 0; i < r->n_ports; i++)
		if (r->ports[i] == port)
			return true;
	return false;
}

static bool name_listed(const struct egress_policy *p, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < p->n; i++) {
		const struct egress_entry *e = &p->e[i];
		size_t m = strlen(e->name);
		if (e->kind == EGRESS_E_NAME && strcmp(e->name, name) == 0)
			return true;
		if (e->kind == EGRESS_E_SUFFIX && n > m + 1 && name[n - m - 1] == '.' &&
		    strcmp(name + n - m, e->name) == 0)
			return true;
	}
	return false;
}

bool egress_decide(const struct egress_rules *rules, const struct egress_policy *p, const char *host,
                   const struct egress_addr *addr, uint16_t port, struct egress_decision *ret)
{
	char shown[72], name[EGRESS_NAME_MAX + 1] = "";
	if (ret)
		*ret = (struct egress_decision){.refusal = EGRESS_OK};
	if (p->mode == EGRESS_NONE)
		return refuse(ret, EGRESS_R_NONE, "the project allows no outbound requests");
	struct egress_addr literal;
	bool is_literal = host && egress_addr_parse(host, &literal) == 0;
	if (!is_literal && !egress_name_valid(host))
		return refuse(ret, EGRESS_R_NAME, "\"%s\" is not a valid host name or IP address",
		              printable(host, shown, sizeof(shown)));
	if (!is_literal)
		name_norm(host, name);
	if (!port_allowed(rules, port))
		return refuse(ret, EGRESS_R_PORT,
		              port == 0 ? "port 0 is not a port" : "port %u is closed to functions (mail)", port);
	if (is_literal && !addr)
		addr = &literal;
	if (addr && !addr_allowed(rules, addr, port, 0, ret))
		return false;
	if (p->mode == EGRESS_ALLOWLIST) {
		bool ok = name[0] && name_listed(p, name), any_cidr = false;
		for (size_t i = 0; !ok && i < p->n; i++)
			if (p->e[i].kind == EGRESS_E_CIDR) {
				any_cidr = true;
				ok = addr && egress_cidr_contains(&p->e[i].cidr, addr);
			}
		/* Before resolution a name may still resolve into a listed
		 * range. */
		if (!ok && !(addr == NULL && any_cidr))
			return refuse(ret, EGRESS_R_ALLOWLIST, "%s is not in the project's allowlist",
			              is_literal ? printable(host, shown, sizeof(shown)) : name);
	}
	return true;
}
