/* Unit tests: egress decisions (egress_policy.c): addresses and CIDRs, the
 * built-in special ranges, the operator's lists, the platform's own
 * addresses, mail ports, project policies and their validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "config.h"
#include "egress_policy.h"
#include "errors.h"
#include "tiers.h"
#include "validate.h"

static struct egress_addr A(const char *s) {
	struct egress_addr a;
	assert_int_equal(egress_addr_parse(s, &a), 0);
	return a;
}

static struct egress_policy open_policy = {.mode = EGRESS_OPEN};

/* The decision for an address literal under rules r and the open policy. */
static bool ok_addr(const struct egress_rules *r, const char *addr, uint16_t port, struct egress_decision *d)
{
	struct egress_addr a = A(addr);
	return egress_decide(r, &open_policy, addr, &a, port, d);
}

static void test_addr_parse(void **state)
{
	struct egress_addr a;
	assert_int_equal(egress_addr_parse("1.2.3.4", &a), 0);
	assert_int_equal(a.family, AF_INET);
	assert_memory_equal(a.b, ((uint8_t[]){1, 2, 3, 4}), 4);
	assert_int_equal(egress_addr_parse("2001:db8::1", &a), 0);
	assert_int_equal(a.family, AF_INET6);
	assert_int_equal(egress_addr_parse("::ffff:10.0.0.1", &a), 0);
	assert_int_equal(a.family, AF_INET6);
	const char *bad[] = {"",          "127.1",       "0x7f.0.0.1", "1.2.3.4.5", "1.2.3",
	                     "256.1.1.1", "01.2.3.4",    " 1.2.3.4",   "1.2.3.4 ",  "fe80::1%eth0",
	                     "::g",       "example.com", "1.2.3.-1"};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		assert_int_equal(egress_addr_parse(bad[i], &a), -EINVAL);
	char buf[64];
	assert_string_equal(egress_addr_str(&(struct egress_addr){AF_INET, {10, 0, 0, 5}}, buf, sizeof(buf)),
	                    "10.0.0.5");
}

static void test_cidr_parse(void **state)
{
	struct egress_cidr c;
	struct zerr err = {0};
	assert_int_equal(egress_cidr_parse("10.0.0.0/8", &c, &err), 0);
	assert_int_equal(c.bits, 8);
	assert_true(egress_cidr_contains(&c, &(struct egress_addr){AF_INET, {10, 255, 1, 2}}));
	assert_false(egress_cidr_contains(&c, &(struct egress_addr){AF_INET, {11, 0, 0, 0}}));
	assert_int_equal(egress_cidr_parse("1.2.3.4", &c, &err), 0);
	assert_int_equal(c.bits, 32);
	assert_int_equal(egress_cidr_parse("0.0.0.0/0", &c, &err), 0);
	assert_true(egress_cidr_contains(&c, &(struct egress_addr){AF_INET, {200, 1, 1, 1}}));
	/* A v4 range never contains a v6 address, even a mapped one. */
	struct egress_addr m = A("::ffff:200.1.1.1");
	assert_false(egress_cidr_contains(&c, &m));
	assert_int_equal(egress_cidr_parse("fc00::/7", &c, &err), 0);
	assert_true(egress_cidr_contains(&c, &(struct egress_addr){AF_INET6, {0xfd, 0x12}}));
	assert_false(egress_cidr_contains(&c, &(struct egress_addr){AF_INET6, {0xfe}}));
	assert_int_equal(egress_cidr_parse("172.16.0.0/12", &c, &err), 0);
	assert_true(egress_cidr_contains(&c, &(struct egress_addr){AF_INET, {172, 31, 255, 255}}));
	assert_false(egress_cidr_contains(&c, &(struct egress_addr){AF_INET, {172, 32, 0, 0}}));

	struct egress_cidr keep = {.bits = 77};
	err.msg[0] = '\0';
	assert_int_equal(egress_cidr_parse("10.0.0.1/8", &keep, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "did you mean 10.0.0.0/8?"));
	assert_int_equal(keep.bits, 77);
	const char *bad[] = {"10.0.0.0/33",  "::/129",      "10.0.0.0/", "10.0.0.0/08",   "10.0.0.0/-1", "/8",
	                     "10.0.0.0/8/8", "10.0.0.0/ 8", "x/8",       "10.0.0.0/1000", "fe80::/9x"};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		err.msg[0] = '\0';
		assert_int_equal(egress_cidr_parse(bad[i], &keep, &err), -EINVAL);
		assert_true(err.msg[0] != '\0');
		assert_int_equal(keep.bits, 77);
	}
	assert_int_equal(egress_cidr_parse(NULL, &keep, NULL), -EINVAL);
}

/* Every range the issue names, with the reason a function is told. */
static void test_default_ranges(void **state)
{
	struct egress_rules r;
	egress_rules_init(&r);
	struct {
		const char *addr, *reason;
	} denied[] = {
	    {"127.0.0.1", "127.0.0.1 is a loopback address"},
	    {"127.255.255.254", "a loopback address"},
	    {"0.0.0.0", "a \"this network\" address"},
	    {"0.1.2.3", "this network"},
	    {"10.0.0.5", "10.0.0.5 is a private address"},
	    {"172.16.0.1", "a private address"},
	    {"172.31.255.255", "a private address"},
	    {"192.168.1.1", "a private address"},
	    {"100.64.0.1", "carrier-grade NAT"},
	    {"100.127.255.255", "carrier-grade NAT"},
	    {"169.254.169.254", "169.254.169.254 is cloud metadata (link-local)"},
	    {"169.254.1.1", "a link-local address"},
	    {"192.0.0.8", "an IETF protocol address"},
	    {"192.0.2.1", "a documentation address"},
	    {"198.51.100.7", "a documentation address"},
	    {"203.0.113.200", "a documentation address"},
	    {"198.18.0.1", "a benchmarking address"},
	    {"198.19.255.255", "a benchmarking address"},
	    {"224.0.0.1", "a multicast address"},
	    {"239.255.255.250", "a multicast address"},
	    {"240.0.0.1", "a reserved address"},
	    {"255.255.255.255", "the broadcast address"},
	    {"::1", "::1 is a loopback address"},
	    {"::", "the unspecified address"},
	    {"::ffff:8.8.8.8", "an IPv4-mapped address"},
	    {"64:ff9b::808:808", "a NAT64 address"},
	    {"2002:808:808::1", "a 6to4 address"},
	    {"2001:0:4136:e378:8000:63bf:3fff:fdd2", "a Teredo address"},
	    {"fc00::1", "a unique local (private) address"},
	    {"fdff:ffff::1", "a unique local (private) address"},
	    {"fe80::1", "a link-local address"},
	    {"febf::1", "a link-local address"},
	    {"ff02::1", "a multicast address"},
	    {"2001:db8::1", "a documentation address"},
	    {"::10.0.0.1", "an IPv4-compatible address"},
	};
	for (size_t i = 0; i < ELEMENTSOF(denied); i++) {
		struct egress_decision d;
		assert_false(ok_addr(&r, denied[i].addr, 443, &d));
		assert_int_equal(d.refusal, EGRESS_R_RANGE);
		if (!strstr(d.reason, denied[i].reason))
			fail_msg("%s: \"%s\" lacks \"%s\"", denied[i].addr, d.reason, denied[i].reason);
	}
	const char *allowed[] = {"8.8.8.8",       "1.1.1.1",         "172.32.0.1",      "100.128.0.1",
	                         "169.255.0.1",   "198.20.0.1",      "223.255.255.255", "11.0.0.1",
	                         "192.0.3.1",     "2606:4700::1111", "2a00:1450::200e", "2001:4860::8888",
	                         "9.255.255.255", "126.255.255.255"};
	for (size_t i = 0; i < ELEMENTSOF(allowed); i++) {
		struct egress_decision d;
		if (!ok_addr(&r, allowed[i], 443, &d))
			fail_msg("%s refused: %s", allowed[i], d.reason);
		assert_int_equal(d.refusal, EGRESS_OK);
		assert_string_equal(d.reason, "");
	}
}

static void test_operator_lists(void **state)
{
	struct egress_rules r;
	struct zerr err = {0};
	struct egress_decision d;
	egress_rules_init(&r);
	assert_int_equal(egress_rules_add_list(&r, false, " 10.1.0.0/16 , ,fd00::/8", &err), 0);
	assert_int_equal(r.n_allow, 2);
	assert_int_equal(egress_rules_add_list(&r, true, "8.8.8.0/24,10.1.2.0/24", &err), 0);
	/* Lifted: only the part the allow covers. */
	assert_true(ok_addr(&r, "10.1.0.1", 80, &d));
	assert_false(ok_addr(&r, "10.2.0.1", 80, &d));
	assert_int_equal(d.refusal, EGRESS_R_RANGE);
	assert_true(ok_addr(&r, "fd00::5", 80, &d));
	assert_false(ok_addr(&r, "fc00::5", 80, &d));
	/* Deny wins over allow, and adds to the built-in list. */
	assert_false(ok_addr(&r, "10.1.2.3", 80, &d));
	assert_int_equal(d.refusal, EGRESS_R_OPERATOR);
	assert_string_equal(d.reason, "10.1.2.3 is in a range the operator denies");
	assert_false(ok_addr(&r, "8.8.8.8", 80, &d));
	assert_int_equal(d.refusal, EGRESS_R_OPERATOR);
	assert_true(ok_addr(&r, "8.8.4.4", 80, &d));

	/* A bad item leaves the rules as they were and is named. */
	struct egress_rules before = r;
	assert_int_equal(egress_rules_add_list(&r, false, "1.2.3.0/24,nonsense", &err), -EINVAL);
	assert_non_null(strstr(err.msg, "nonsense"));
	assert_memory_equal(&before, &r, sizeof(r));
	char big[64 * 16 + 1] = "";
	for (int i = 0; i < EGRESS_RULES_MAX; i++)
		snprintf(big + strlen(big), sizeof(big) - strlen(big), "%s1.2.%d.0/24", i ? "," : "", i);
	assert_int_equal(egress_rules_add_list(&r, true, big, &err), -E2BIG);
	assert_memory_equal(&before, &r, sizeof(r));
	assert_int_equal(egress_rules_add_list(&r, true, "", &err), 0);
	assert_int_equal(egress_rules_add_list(&r, true, NULL, &err), 0);
}

static void test_transition_forms(void **state)
{
	struct egress_rules r;
	struct egress_decision d;
	egress_rules_init(&r);
	/* The operator lifts NAT64 (a NAT64 network): the IPv4 address it
	 * carries must still pass. */
	assert_int_equal(egress_rules_add_list(&r, false, "64:ff9b::/96,2002::/16,::ffff:0:0/96,2001::/32", NULL), 0);
	assert_true(ok_addr(&r, "64:ff9b::808:808", 443, &d));
	assert_false(ok_addr(&r, "64:ff9b::a00:5", 443, &d));
	assert_int_equal(d.refusal, EGRESS_R_RANGE);
	assert_non_null(strstr(d.reason, "carries 10.0.0.5 is a private address"));
	assert_false(ok_addr(&r, "::ffff:127.0.0.1", 443, &d));
	assert_non_null(strstr(d.reason, "loopback"));
	assert_false(ok_addr(&r, "::ffff:169.254.169.254", 80, &d));
	assert_non_null(strstr(d.reason, "cloud metadata"));
	assert_true(ok_addr(&r, "::ffff:8.8.8.8", 443, &d));
	assert_false(ok_addr(&r, "2002:a9fe:a9fe::1", 80, &d)); /* 6to4 of 169.254.169.254 */
	assert_non_null(strstr(d.reason, "cloud metadata"));
	assert_true(ok_addr(&r, "2002:808:808::1", 80, &d));
	/* Teredo: the client address, inverted, in the last 32 bits. */
	assert_false(ok_addr(&r, "2001:0:4136:e378:8000:63bf:f5ff:fffa", 80, &d)); /* ~10.0.0.5 */
	assert_non_null(strstr(d.reason, "10.0.0.5"));
	/* The platform's own IPv4 address behind a mapped form. */
	assert_int_equal(egress_rules_add_self(&r, &(struct egress_addr){AF_INET, {8, 8, 8, 8}}, 0), 0);
	assert_false(ok_addr(&r, "::ffff:8.8.8.8", 443, &d));
	assert_int_equal(d.refusal, EGRESS_R_SELF);
}

static void test_self(void **state)
{
	struct egress_rules r;
	struct egress_decision d;
	egress_rules_init(&r);
	assert_int_equal(egress_rules_add_list(&r, false, "127.0.0.0/8,0.0.0.0/0,::/0", NULL), 0);
	assert_int_equal(egress_rules_add_self(&r, &(struct egress_addr){AF_INET, {127, 0, 0, 1}}, 8080), 0);
	assert_int_equal(egress_rules_add_self(&r, &(struct egress_addr){AF_INET, {198, 51, 100, 9}}, 0), 0);
	assert_true(ok_addr(&r, "127.0.0.1", 8081, &d));
	assert_false(ok_addr(&r, "127.0.0.1", 8080, &d));
	assert_int_equal(d.refusal, EGRESS_R_SELF);
	assert_string_equal(d.reason, "127.0.0.1 is an address of the platform itself");
	assert_false(ok_addr(&r, "198.51.100.9", 1, &d));
	assert_false(ok_addr(&r, "198.51.100.9", 65535, &d));
	assert_true(ok_addr(&r, "198.51.100.10", 443, &d));
	/* A project's allowlist never lifts it. */
	struct egress_policy p = {.mode = EGRESS_ALLOWLIST, .n = 1};
	assert_int_equal(egress_entry_parse("198.51.100.9", &p.e[0], NULL), 0);
	struct egress_addr a = A("198.51.100.9");
	assert_false(egress_decide(&r, &p, "198.51.100.9", &a, 443, &d));
	assert_int_equal(d.refusal, EGRESS_R_SELF);
	assert_int_equal(egress_rules_add_self(&r, &(struct egress_addr){.family = AF_INET}, 0), -EINVAL);
	assert_int_equal(egress_rules_add_self(&r, &(struct egress_addr){.family = AF_INET6}, 0), -EINVAL);
	for (int i = (int)r.n_self; i < EGRESS_SELF_MAX; i++)
		assert_int_equal(egress_rules_add_self(&r, &(struct egress_addr){AF_INET, {1, 1, 1, 1}}, 1), 0);
	assert_int_equal(egress_rules_add_self(&r, &(struct egress_addr){AF_INET, {1, 1, 1, 1}}, 1), -E2BIG);
}

static void test_ports(void **state)
{
	struct egress_rules r;
	struct egress_decision d;
	struct zerr err = {0};
	egress_rules_init(&r);
	assert_true(egress_port_default_denied(25));
	assert_true(egress_port_default_denied(465));
	assert_true(egress_port_default_denied(587));
	assert_false(egress_port_default_denied(2525));
	assert_false(ok_addr(&r, "8.8.8.8", 25, &d));
	assert_int_equal(d.refusal, EGRESS_R_PORT);
	assert_string_equal(d.reason, "port 25 is closed to functions (mail)");
	assert_false(ok_addr(&r, "8.8.8.8", 0, &d));
	assert_int_equal(d.refusal, EGRESS_R_PORT);
	assert_true(ok_addr(&r, "8.8.8.8", 65535, &d));
	assert_int_equal(egress_rules_add_ports(&r, "587", &err), 0);
	assert_true(ok_addr(&r, "8.8.8.8", 587, &d));
	assert_false(ok_addr(&r, "8.8.8.8", 465, &d));
	const char *bad[] = {"0", "65536", "-1", "25x", "025", "99999999", "1.5"};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		assert_int_equal(egress_rules_add_ports(&r, bad[i], &err), -EINVAL);
	/* A name is refused before its port is looked at only when the
	 * name is bad. */
	assert_false(egress_decide(&r, &open_policy, "mail.example.com", NULL, 25, &d));
	assert_int_equal(d.refusal, EGRESS_R_PORT);
}

static void test_names(void **state)
{
	const char *good[] = {"example.com",   "EXAMPLE.com.", "a",         "a-b.c",         "xn--bcher-kva.example",
	                      "1password.com", "123.example",  "localhost", "a.b.c.d.e.f.g", "x1"};
	for (size_t i = 0; i < ELEMENTSOF(good); i++)
		if (!egress_name_valid(good[i]))
			fail_msg("%s should be valid", good[i]);
	char long_label[80], long_name[300];
	memset(long_label, 'a', 64);
	long_label[64] = '\0';
	/* 254 bytes: four labels of 63 and dots, plus one. */
	snprintf(long_name, sizeof(long_name), "%.63s.%.63s.%.63s.%.63s", long_label, long_label, long_label,
	         long_label);
	assert_int_equal(strlen(long_name), 255);
	const char *bad[] = {"",          ".",       "..",    "-a.com", "a-.com", "a..com",  "a_b.com",  "exa mple.com",
	                     "bücher.de", "1.2.3.4", "127.1", "0x7f.1", "a.123",  "*.a.com", long_label, long_name,
	                     "a.com..",   ".a.com",  "a/b",   "a:b"};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		if (egress_name_valid(bad[i]))
			fail_msg("%s should be invalid", bad[i]);
	long_label[63] = '\0';
	assert_true(egress_name_valid(long_label));
	assert_false(egress_name_valid(NULL));
}

static void test_entries(void **state)
{
	struct egress_entry e;
	struct zerr err = {0};
	assert_int_equal(egress_entry_parse("API.Stripe.com.", &e, &err), 0);
	assert_int_equal(e.kind, EGRESS_E_NAME);
	assert_string_equal(e.name, "api.stripe.com");
	assert_int_equal(egress_entry_parse("*.Example.COM", &e, &err), 0);
	assert_int_equal(e.kind, EGRESS_E_SUFFIX);
	assert_string_equal(e.name, "example.com");
	assert_int_equal(egress_entry_parse("203.0.113.0/24", &e, &err), 0);
	assert_int_equal(e.kind, EGRESS_E_CIDR);
	assert_int_equal(e.cidr.bits, 24);
	assert_int_equal(egress_entry_parse("8.8.8.8", &e, &err), 0);
	assert_int_equal(e.kind, EGRESS_E_CIDR);
	assert_int_equal(e.cidr.bits, 32);
	assert_int_equal(egress_entry_parse("2001:4860::8888", &e, &err), 0);
	assert_int_equal(e.cidr.bits, 128);
	struct {
		const char *s, *msg;
	} bad[] = {
	    {"", "empty"},
	    {"*", "not a host name"},
	    {"*.", "after \"*.\""},
	    {"**.a.com", "not a host name"},
	    {"a.*.com", "not a host name"},
	    {"*.*.com", "after \"*.\""},
	    {"10.0.0.1/8", "did you mean 10.0.0.0/8?"},
	    {"10.0.0.0/40", "prefix length"},
	    {"http://a.com", "not an IP address or CIDR"},
	    {"a.com:443", "not an IP address or CIDR"},
	    {"bücher.de", "xn--"},
	    {"127.1", "not a host name"},
	    {"a b", "not a host name"},
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		err.msg[0] = '\0';
		if (egress_entry_parse(bad[i].s, &e, &err) != -EINVAL || !strstr(err.msg, bad[i].msg))
			fail_msg("%s: \"%s\"", bad[i].s, err.msg);
	}
	char big[EGRESS_ENTRY_MAX + 2];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(egress_entry_parse(big, &e, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "longer than"));
}

static json_t *js(const char *text)
{
	json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	assert_non_null(j);
	return j;
}

static int policy(const char *text, struct egress_policy *p, struct zerr *err)
{
	json_t *j = js(text);
	int r = egress_policy_from_json(j, p, err);
	json_decref(j);
	return r;
}

static void test_policy_json(void **state)
{
	static struct egress_policy p;
	struct zerr err = {0};
	assert_int_equal(policy("{}", &p, &err), 0);
	assert_int_equal(p.mode, EGRESS_OPEN);
	assert_int_equal(p.n, 0);
	assert_int_equal(policy("{\"mode\":\"allowlist\",\"allow\":[\"API.stripe.com\",\"*.Example.com\","
	                        "\"203.0.113.0/24\",\"2001:db8::1\"]}",
	                        &p, &err),
	                 0);
	assert_int_equal(p.mode, EGRESS_ALLOWLIST);
	assert_int_equal(p.n, 4);
	json_t *out = egress_policy_to_json(&p);
	char *text = json_dumps(out, JSON_COMPACT);
	assert_string_equal(text, "{\"mode\":\"allowlist\",\"allow\":[\"api.stripe.com\",\"*.example.com\","
	                          "\"203.0.113.0/24\",\"2001:db8::1\"]}");
	/* The normalized form reads back to itself. */
	static struct egress_policy q;
	assert_int_equal(egress_policy_from_json(out, &q, &err), 0);
	assert_int_equal(q.n, p.n);
	free(text);
	json_decref(out);
	egress_policy_default(&q);
	out = egress_policy_to_json(&q);
	text = json_dumps(out, JSON_COMPACT);
	assert_string_equal(text, "{\"mode\":\"open\",\"allow\":[]}");
	free(text);
	json_decref(out);

	struct {
		const char *body, *msg;
	} bad[] = {
	    {"[]", "egress: want"},
	    {"\"open\"", "egress: want"},
	    {"{\"mode\":\"closed\"}", "egress.mode"},
	    {"{\"mode\":1}", "egress.mode"},
	    {"{\"mode\":\"open\",\"extra\":1}", "unknown field \"extra\""},
	    {"{\"allow\":\"a.com\"}", "egress.allow: want an array"},
	    {"{\"allow\":[1]}", "egress.allow[0]: want a string"},
	    {"{\"allow\":[\"a.com\",\"a..com\"]}", "egress.allow[1]: \"a..com\" is not a host name"},
	    {"{\"allow\":[\"A.com\",\"a.com.\"]}", "egress.allow[1]: the same entry as egress.allow[0]"},
	    {"{\"allow\":[\"10.0.0.0/8\",\"10.0.0.0/8\"]}", "the same entry"},
	    {"{\"allow\":[\"a\\u0000b.com\"]}", "NUL"},
	};
	p.n = 7;
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		err.msg[0] = '\0';
		if (policy(bad[i].body, &p, &err) != -EINVAL || !strstr(err.msg, bad[i].msg))
			fail_msg("%s: \"%s\"", bad[i].body, err.msg);
		assert_int_equal(p.n, 7); /* untouched */
	}
	/* 100 entries are fine, 101 are not. */
	json_t *allow = json_array();
	for (int i = 0; i < EGRESS_POLICY_MAX_ENTRIES; i++) {
		char name[32];
		snprintf(name, sizeof(name), "h%d.example.com", i);
		json_array_append_new(allow, json_string(name));
	}
	json_t *body = json_pack("{s:s,s:O}", "mode", "allowlist", "allow", allow);
	assert_int_equal(egress_policy_from_json(body, &p, &err), 0);
	assert_int_equal(p.n, EGRESS_POLICY_MAX_ENTRIES);
	json_array_append_new(allow, json_string("one-more.example.com"));
	json_object_set(body, "allow", allow);
	assert_int_equal(egress_policy_from_json(body, &p, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "at most 100"));
	json_decref(body);
	json_decref(allow);
}

static void test_decide_modes(void **state)
{
	static struct egress_policy p;
	struct egress_rules r;
	struct egress_decision d;
	struct zerr err = {0};
	egress_rules_init(&r);
	struct egress_addr pub = A("93.184.216.34"), priv = A("10.0.0.5");

	/* none: refused before anything else. */
	assert_int_equal(policy("{\"mode\":\"none\",\"allow\":[\"a.com\"]}", &p, &err), 0);
	assert_false(egress_decide(&r, &p, "a.com", NULL, 443, &d));
	assert_int_equal(d.refusal, EGRESS_R_NONE);
	assert_string_equal(d.reason, "the project allows no outbound requests");
	assert_false(egress_decide(&r, &p, "a.com", &pub, 443, &d));

	/* open: any valid name, the address decides. */
	assert_int_equal(policy("{\"mode\":\"open\"}", &p, &err), 0);
	assert_true(egress_decide(&r, &p, "example.com", NULL, 443, &d));
	assert_true(egress_decide(&r, &p, "example.com", &pub, 443, &d));
	assert_false(egress_decide(&r, &p, "rebind.example.com", &priv, 443, &d));
	assert_string_equal(d.reason, "10.0.0.5 is a private address");
	/* A literal is decided before resolution. */
	assert_false(egress_decide(&r, &p, "10.0.0.5", NULL, 443, &d));
	assert_int_equal(d.refusal, EGRESS_R_RANGE);
	assert_false(egress_decide(&r, &p, "127.1", NULL, 443, &d));
	assert_int_equal(d.refusal, EGRESS_R_NAME);
	assert_false(egress_decide(&r, &p, "", NULL, 443, &d));
	assert_false(egress_decide(&r, &p, NULL, NULL, 443, &d));
	assert_false(egress_decide(&r, &p, "bad\nname\x01", NULL, 443, &d));
	assert_int_equal(d.refusal, EGRESS_R_NAME);
	assert_null(strchr(d.reason, '\n'));
	assert_null(strchr(d.reason, '\x01'));

	/* allowlist of names only: refused before resolution. */
	assert_int_equal(policy("{\"mode\":\"allowlist\",\"allow\":[\"api.stripe.com\",\"*.example.com\"]}", &p, &err),
	                 0);
	assert_true(egress_decide(&r, &p, "API.Stripe.com.", NULL, 443, &d));
	assert_true(egress_decide(&r, &p, "api.stripe.com", &pub, 443, &d));
	assert_false(egress_decide(&r, &p, "stripe.com", NULL, 443, &d));
	assert_int_equal(d.refusal, EGRESS_R_ALLOWLIST);
	assert_string_equal(d.reason, "stripe.com is not in the project's allowlist");
	assert_false(egress_decide(&r, &p, "evilapi.stripe.com", NULL, 443, &d));
	assert_true(egress_decide(&r, &p, "a.example.com", NULL, 443, &d));
	assert_true(egress_decide(&r, &p, "a.b.EXAMPLE.com", &pub, 443, &d));
	assert_false(egress_decide(&r, &p, "example.com", NULL, 443, &d));
	assert_false(egress_decide(&r, &p, "badexample.com", NULL, 443, &d));
	assert_false(egress_decide(&r, &p, "example.com.evil.org", NULL, 443, &d));
	assert_false(egress_decide(&r, &p, "93.184.216.34", NULL, 443, &d));
	assert_int_equal(d.refusal, EGRESS_R_ALLOWLIST);
	/* A listed name resolving to a denied address is still refused. */
	assert_false(egress_decide(&r, &p, "api.stripe.com", &priv, 443, &d));
	assert_int_equal(d.refusal, EGRESS_R_RANGE);
	/* And its port must still pass. */
	assert_false(egress_decide(&r, &p, "api.stripe.com", NULL, 25, &d));
	assert_int_equal(d.refusal, EGRESS_R_PORT);

	/* allowlist with a range: names may resolve into it. */
	assert_int_equal(policy("{\"mode\":\"allowlist\",\"allow\":[\"93.184.216.0/24\",\"10.0.0.0/8\"]}", &p, &err),
	                 0);
	assert_true(egress_decide(&r, &p, "anything.org", NULL, 443, &d));
	assert_true(egress_decide(&r, &p, "anything.org", &pub, 443, &d));
	assert_false(egress_decide(&r, &p, "anything.org", &(struct egress_addr){AF_INET, {93, 184, 217, 1}}, 443, &d));
	assert_int_equal(d.refusal, EGRESS_R_ALLOWLIST);
	assert_true(egress_decide(&r, &p, "93.184.216.34", NULL, 443, &d));
	/* A project's range never lifts a default one. */
	assert_false(egress_decide(&r, &p, "10.0.0.5", NULL, 443, &d));
	assert_int_equal(d.refusal, EGRESS_R_RANGE);
	/* The operator's can. */
	assert_int_equal(egress_rules_add_list(&r, false, "10.0.0.0/24", NULL), 0);
	assert_true(egress_decide(&r, &p, "10.0.0.5", NULL, 443, &d));
	/* An empty allowlist allows nothing. */
	assert_int_equal(policy("{\"mode\":\"allowlist\"}", &p, &err), 0);
	assert_false(egress_decide(&r, &p, "example.com", NULL, 443, &d));
	assert_false(egress_decide(&r, &p, "8.8.8.8", NULL, 443, &d));
}

/* PATCH /projects/{pid} {"egress": ...}: checked, normalized in the body. */
static void test_val_project_egress(void **state)
{
	struct tiers tiers = {.n = 1};
	snprintf(tiers.t[0].name, sizeof(tiers.t[0].name), "free");
	struct val_project in;
	struct zerr err = {0};
	json_t *body = js("{\"egress\":{\"mode\":\"allowlist\",\"allow\":[\"*.Example.COM\",\"10.0.0.0/8\"]}}");
	assert_int_equal(val_project(body, &tiers, false, &in, &err), 0);
	assert_non_null(in.egress);
	char *text = json_dumps(in.egress, JSON_COMPACT);
	assert_string_equal(text, "{\"mode\":\"allowlist\",\"allow\":[\"*.example.com\",\"10.0.0.0/8\"]}");
	free(text);
	json_decref(body);
	body = js("{\"name\":\"x\"}");
	assert_int_equal(val_project(body, &tiers, false, &in, &err), 0);
	assert_null(in.egress);
	json_decref(body);
	body = js("{\"egress\":{\"mode\":\"allowlist\",\"allow\":[\"a..b\"]}}");
	assert_int_equal(val_project(body, &tiers, false, &in, &err), -ZE_INVALID_EGRESS);
	assert_non_null(strstr(err.msg, "egress.allow[0]"));
	json_decref(body);
	/* Not on create: a project starts open. */
	body = js("{\"name\":\"x\",\"egress\":{}}");
	assert_int_equal(val_project(body, &tiers, true, &in, &err), -ZE_UNKNOWN_FIELD);
	json_decref(body);
}

/* The tier fields are optional: an older tiers file still loads. */
static void test_tiers_egress_fields(void **state)
{
	char path[] = "/tmp/zmesh-test-tiers-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *text = "{\"tiers\":{\"free\":{\"max_timeout_ms\":1000,\"max_memory_mb\":128,"
	                   "\"monthly_invocations\":10,\"concurrency\":1},"
	                   "\"pro\":{\"max_timeout_ms\":1000,\"max_memory_mb\":128,\"monthly_invocations\":10,"
	                   "\"concurrency\":1,\"egress_requests\":25,\"egress_bytes\":1024,"
	                   "\"egress_connect_timeout_ms\":100}}}";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	static struct tiers t;
	struct zerr err = {0};
	assert_int_equal(tiers_load(path, &t, &err), 0);
	const struct tier *f = tiers_find(&t, "free"), *p = tiers_find(&t, "pro");
	assert_int_equal(f->egress_requests, TIERS_DEFAULT_EGRESS_REQUESTS);
	assert_int_equal(f->egress_bytes, TIERS_DEFAULT_EGRESS_BYTES);
	assert_int_equal(f->egress_connect_timeout_ms, TIERS_DEFAULT_EGRESS_CONNECT_TIMEOUT_MS);
	assert_int_equal(p->egress_requests, 25);
	assert_int_equal(p->egress_bytes, 1024);
	assert_int_equal(p->egress_connect_timeout_ms, 100);
	fd = open(path, O_WRONLY | O_TRUNC);
	text = "{\"tiers\":{\"free\":{\"max_timeout_ms\":1000,\"max_memory_mb\":128,"
	       "\"monthly_invocations\":10,\"concurrency\":1,\"egress_connect_timeout_ms\":0}}}";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(tiers_load(path, &t, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "egress_connect_timeout_ms"));
	unlink(path);
	/* The shipped file has them. */
	assert_int_equal(tiers_load(ZMESH_POLICY_DIR "/tiers.json", &t, &err), 0);
	assert_int_equal(tiers_find(&t, "free")->egress_requests, 5);
	assert_int_equal(tiers_find(&t, "pro")->egress_requests, 25);
	assert_int_equal(tiers_find(&t, "enterprise")->egress_requests, 100);
}

/* --egress-allow/--egress-deny/--egress-allow-port: repeatable flags,
 * comma lists in the environment, checked at load. */
static void test_config_lists(void **state)
{
	static struct zconfig cfg;
	static struct egress_rules r;
	struct zerr err = {0};
	setenv("ZMESH_EGRESS_ALLOW", "192.168.0.0/16", 1);
	setenv("ZMESH_EGRESS_DENY", "8.8.8.0/24, 9.9.9.9", 1);
	char *argv1[] = {"zmeshd", NULL};
	assert_int_equal(zconfig_load(&cfg, 1, argv1, &err), 0);
	assert_string_equal(cfg.egress_allow, "192.168.0.0/16");
	assert_int_equal(zconfig_egress_rules(&cfg, &r, &err), 0);
	assert_int_equal(r.n_allow, 1);
	assert_int_equal(r.n_deny, 2);
	/* Flags replace the environment, then add up. */
	char *argv2[] = {
	    "zmeshd", "--egress-allow", "10.0.0.0/8", "--egress-allow=fd00::/8", "--egress-allow-port", "587", NULL};
	assert_int_equal(zconfig_load(&cfg, 6, argv2, &err), 0);
	assert_string_equal(cfg.egress_allow, "10.0.0.0/8,fd00::/8");
	assert_int_equal(zconfig_egress_rules(&cfg, &r, &err), 0);
	assert_int_equal(r.n_allow, 2);
	assert_int_equal(r.n_ports, 1);
	char *argv3[] = {"zmeshd", "--egress-deny", "10.0.0.1/8", NULL};
	assert_int_equal(zconfig_load(&cfg, 3, argv3, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "egress-deny"));
	assert_non_null(strstr(err.msg, "10.0.0.0/8"));
	char *argv4[] = {"zmeshd", "--egress-allow-port", "25x", NULL};
	assert_int_equal(zconfig_load(&cfg, 3, argv4, &err), -EINVAL);
	unsetenv("ZMESH_EGRESS_ALLOW");
	unsetenv("ZMESH_EGRESS_DENY");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_addr_parse),
	    cmocka_unit_test(test_cidr_parse),
	    cmocka_unit_test(test_default_ranges),
	    cmocka_unit_test(test_operator_lists),
	    cmocka_unit_test(test_transition_forms),
	    cmocka_unit_test(test_self),
	    cmocka_unit_test(test_ports),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_entries),
	    cmocka_unit_test(test_policy_json),
	    cmocka_unit_test(test_decide_modes),
	    cmocka_unit_test(test_val_project_egress),
	    cmocka_unit_test(test_tiers_egress_fields),
	    cmocka_unit_test(test_config_lists),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
