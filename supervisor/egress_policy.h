/* egress_policy.h - which outbound connections a function may make: pure
 * decisions, no I/O (no resolver, no sockets, no clock), so every rule is
 * unit-tested and fuzzed. The gateway (egress.c) resolves names itself and
 * asks egress_decide() about every address it would connect to.
 *
 * Three layers, in this order; the first that refuses wins:
 *  1. the platform's own addresses (egress_rules_add_self): always refused;
 *  2. the operator's rules (--egress-deny, --egress-allow, --egress-allow-port)
 *     over the built-in list of special-purpose ranges and mail ports, which
 *     refuse by default: an operator deny always refuses, an operator allow
 *     lifts (the part it covers of) a built-in range and nothing else;
 *  3. the project's policy: mode open, none, or allowlist (names matched
 *     before resolution, IP and CIDR entries against the resolved address).
 *     A project never lifts what layers 1 and 2 refuse.
 * IPv6 forms that embed an IPv4 address (mapped, NAT64, 6to4, Teredo) are
 * refused by default; where the operator lifts one, the embedded IPv4
 * address must pass on its own too. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define EGRESS_NAME_MAX           253 /* RFC 1035 host name, without a trailing dot */
#define EGRESS_POLICY_MAX_ENTRIES 100 /* allow entries of one project */
#define EGRESS_ENTRY_MAX          300 /* bytes of one allow entry as written */
#define EGRESS_RULES_MAX          64  /* operator allow (and deny) ranges */
#define EGRESS_PORTS_MAX          16  /* ports the operator lifts */
#define EGRESS_SELF_MAX           64  /* the platform's own addresses */
#define EGRESS_REASON_MAX         192

/* An address of either family: IPv4 in b[0..3]. */
struct egress_addr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t b[16];
};

struct egress_cidr {
	struct egress_addr a; /* host bits zero */
	uint8_t bits;         /* 0..32 or 0..128 */
};

/* The operator's layer and the platform's own addresses: built at start,
 * read-only (and shared by every thread) afterwards. */
struct egress_rules {
	struct egress_cidr allow[EGRESS_RULES_MAX], deny[EGRESS_RULES_MAX];
	size_t n_allow, n_deny;
	uint16_t ports[EGRESS_PORTS_MAX]; /* lifted from the mail ports */
	size_t n_ports;
	struct {
		struct egress_addr a;
		uint16_t port; /* 0: every port of that address */
	} self[EGRESS_SELF_MAX];
	size_t n_self;
};

enum egress_mode { EGRESS_OPEN, EGRESS_ALLOWLIST, EGRESS_NONE };
enum egress_entry_kind { EGRESS_E_NAME, EGRESS_E_SUFFIX, EGRESS_E_CIDR };

/* One allow entry, normalized: a name lower-cased without a trailing dot;
 * "*.example.com" kept as the suffix "example.com" (it matches names below
 * it, at any depth, not example.com itself); an IP address as a /32 or
 * /128 CIDR. */
struct egress_entry {
	enum egress_entry_kind kind;
	char name[EGRESS_NAME_MAX + 1];
	struct egress_cidr cidr;
};

/* A project's policy; a snapshot of it travels with each invocation. */
struct egress_policy {
	enum egress_mode mode;
	size_t n;
	struct egress_entry e[EGRESS_POLICY_MAX_ENTRIES];
};

/* ---- addresses ---- */

/* Parse a numeric IPv4 (dotted quad, four decimal parts) or IPv6 address;
 * no zone id, no shorthand such as "127.1". 0 or -EINVAL. */
int egress_addr_parse(const char *s, struct egress_addr *ret);
/* "a.b.c.d/n", "v6/n", or a bare address (a /32 or /128). The prefix is
 * decimal without leading zeros; host bits must be zero. On failure
 * -EINVAL with a message that says what is wrong; *ret untouched. */
int egress_cidr_parse(const char *s, struct egress_cidr *ret, struct zerr *err);
bool egress_cidr_contains(const struct egress_cidr *c, const struct egress_addr *a);
/* The text form (inet_ntop); buf of at least 46 bytes. */
const char *egress_addr_str(const struct egress_addr *a, char *buf, size_t size);

/* Whether a is in a built-in special-purpose range; ret_what (may be NULL)
 * gets "a private address" and the like. Ignores the operator's rules. */
bool egress_addr_special(const struct egress_addr *a, const char **ret_what);

/* ---- the operator's layer ---- */

void egress_rules_init(struct egress_rules *r);
/* A comma-separated list of CIDRs (spaces around items allowed, empty
 * items ignored) added to allow (deny false) or deny. -EINVAL with the bad
 * item named, -E2BIG past EGRESS_RULES_MAX; on failure r is unchanged. */
int egress_rules_add_list(struct egress_rules *r, bool deny, const char *list, struct zerr *err);
/* A comma-separated list of ports (1..65535) lifted from the mail ports
 * refused by default (25, 465, 587). Same contract as above. */
int egress_rules_add_ports(struct egress_rules *r, const char *list, struct zerr *err);
/* One of the platform's own addresses (its API, its database, its
 * pgbouncer): refused whatever any list says. port 0: every port. An
 * unspecified address (0.0.0.0, ::) is -EINVAL: the caller registers the
 * addresses a wildcard listener really answers on. -E2BIG when full. */
int egress_rules_add_self(struct egress_rules *r, const struct egress_addr *a, uint16_t port);
/* Whether port is refused by default (25, 465, 587). */
bool egress_port_default_denied(uint16_t port);

/* ---- a project's policy ---- */

/* RFC 1123 host name: labels of 1..63 letters, digits and inner hyphens,
 * at most 253 bytes, one trailing dot allowed; a last label of digits only
 * is not a name (it would read as an IPv4 shorthand). Case-insensitive. */
bool egress_name_valid(const char *s);
/* One allow entry as written; on failure -EINVAL with a message naming the
 * entry. */
int egress_entry_parse(const char *s, struct egress_entry *ret, struct zerr *err);
/* {"mode": "open"|"allowlist"|"none", "allow": [string, ...]}: both keys
 * optional (mode open, no entries), no other key; at most
 * EGRESS_POLICY_MAX_ENTRIES entries; duplicates (after normalization) are
 * refused. Messages name the field ("egress.allow[2]: ..."). */
int egress_policy_from_json(json_t *j, struct egress_policy *ret, struct zerr *err);
/* The normalized JSON form of p (what is stored and shown): a new reference. */
json_t *egress_policy_to_json(const struct egress_policy *p);
void egress_policy_default(struct egress_policy *p);

/* ---- the decision ---- */

enum egress_refusal {
	EGRESS_OK = 0,
	EGRESS_R_NONE,      /* the project's mode is none */
	EGRESS_R_PORT,      /* a mail port, not lifted */
	EGRESS_R_NAME,      /* not a valid host name or address */
	EGRESS_R_SELF,      /* the platform's own address */
	EGRESS_R_OPERATOR,  /* in a range the operator denies */
	EGRESS_R_RANGE,     /* a built-in special range, not lifted */
	EGRESS_R_ALLOWLIST, /* not in the project's allowlist */
};

struct egress_decision {
	enum egress_refusal refusal;
	char reason[EGRESS_REASON_MAX]; /* "10.0.0.5 is a private address"; "" when allowed */
};

/* May a function of a project with policy p connect to host (the name or
 * address literal it asked for, as it asked) at port, resolved to addr?
 * addr NULL asks before resolution: refuses what no address could make
 * allowed (mode none, a mail port, a name not allowed when the allowlist
 * has no IP or CIDR entry, a host that is no valid name); an allow then
 * only means "resolve and ask again for each address". Returns true when
 * allowed; ret (may be NULL) gets the refusal and its reason. */
bool egress_decide(const struct egress_rules *rules, const struct egress_policy *p, const char *host,
                   const struct egress_addr *addr, uint16_t port, struct egress_decision *ret);
