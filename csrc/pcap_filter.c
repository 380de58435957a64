/* Capture filters (see pcap_filter.h).
 *
 * A recursive-descent parser builds a tree, which is then laid out as a
 * straight list of tests, each with a jump for true and one for false (as
 * BPF does): ``not`` swaps the two targets, ``and``/``or`` point the first
 * operand's success/failure at the second. Every jump goes forward, so a
 * match is one loop over at most every test once, with no recursion on the
 * worker thread. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pcap_filter.h"

/* Real filters have a handful of primitives; the limits only keep the
 * parser's recursion (on the caller's thread) shallow. */
#define MAX_TESTS 1024
#define MAX_DEPTH 100
#define WORD_MAX 80     /* longer words are shown cut in messages */

enum { OP_TRUE, OP_IP4, OP_IP6, OP_NET, OP_PORT, OP_VLAN_ANY, OP_VLAN_ID };
enum { DIR_SRC = 1, DIR_DST = 2, DIR_EITHER = 3 };
enum { KIND_HOST = 1, KIND_NET, KIND_PORT, KIND_PORTRANGE };

#define JUMP_ACCEPT (-1)
#define JUMP_REJECT (-2)

typedef struct {
    uint8_t op, dir, family, prefix;
    uint16_t lo, hi;        /* port range; VLAN id in lo */
    uint8_t addr[16];
} filter_test;

typedef struct {
    filter_test t;
    int jt, jf;             /* the next test, or JUMP_ACCEPT / JUMP_REJECT */
} filter_insn;

struct pcap_filter {
    size_t n;
    filter_insn insns[];
};

/* ------------------------------------------------------------------ */
/* parse tree */

enum { N_TEST, N_NOT, N_AND, N_OR };

typedef struct {
    int kind;
    int a, b;               /* operands (node indices) */
    size_t tests;           /* tests in this subtree */
    filter_test t;
} node;

enum { T_END, T_WORD, T_LPAREN, T_RPAREN, T_NOT, T_AND, T_OR, T_BAD };

typedef struct {
    int type;
    const char *start;
    size_t len;
} token;

typedef struct {
    const char *s;
    size_t pos;
    token tok, prev;
    node *nodes;
    size_t n_nodes, cap_nodes, n_tests;
    int depth;
    int last_kind, last_dir;    /* for a bare value: the last qualifier */
    char *err;
    size_t err_len;
    int failed;
} parser;

static void error(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void error(parser *p, const char *fmt, ...)
{
    if (p->failed)
        return;     /* the first error is the one to report */
    p->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, p->err_len, fmt, ap);
    va_end(ap);
}

/* A token's text for a message (cut if long). */
static const char *text(const token *t, char *buf)
{
    if (t->type == T_END)
        return "the end of the filter";
    size_t n = t->len < WORD_MAX ? t->len : WORD_MAX;
    buf[0] = '\'';
    memcpy(buf + 1, t->start, n);
    strcpy(buf + 1 + n, t->len > WORD_MAX ? "...'" : "'");
    return buf;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int is_special(char c)
{
    return c == '(' || c == ')' || c == '!' || c == '&' || c == '|';
}

static int word_is(const token *t, const char *w)
{
    return t->type == T_WORD && strlen(w) == t->len && memcmp(t->start, w, t->len) == 0;
}

static void advance(parser *p)
{
    p->prev = p->tok;
    const char *s = p->s;
    while (is_space(s[p->pos]))
        p->pos++;
    token *t = &p->tok;
    t->start = s + p->pos;
    t->len = 1;
    char c = s[p->pos];
    if (c == '\0') {
        t->type = T_END;
        t->len = 0;
        return;
    }
    if (c == '(' || c == ')' || c == '!') {
        t->type = c == '(' ? T_LPAREN : c == ')' ? T_RPAREN : T_NOT;
        p->pos++;
        return;
    }
    if (c == '&' || c == '|') {
        if (s[p->pos + 1] == c) {
            t->type = c == '&' ? T_AND : T_OR;
            t->len = 2;
        } else {
            t->type = T_BAD;
        }
        p->pos += t->len;
        return;
    }
    size_t end = p->pos;
    while (s[end] != '\0' && !is_space(s[end]) && !is_special(s[end]))
        end++;
    t->len = end - p->pos;
    p->pos = end;
    t->type = T_WORD;
    if (word_is(t, "not"))
        t->type = T_NOT;
    else if (word_is(t, "and"))
        t->type = T_AND;
    else if (word_is(t, "or"))
        t->type = T_OR;
}

static int new_node(parser *p, int kind, int a, int b)
{
    if (p->failed)
        return -1;
    if (p->n_nodes == p->cap_nodes) {
        size_t cap = p->cap_nodes ? 2 * p->cap_nodes : 16;
        node *nodes = realloc(p->nodes, cap * sizeof(*nodes));
        if (!nodes) {
            error(p, "out of memory compiling the filter");
            return -1;
        }
        p->nodes = nodes;
        p->cap_nodes = cap;
    }
    node *n = &p->nodes[p->n_nodes];
    memset(n, 0, sizeof(*n));
    n->kind = kind;
    n->a = a;
    n->b = b;
    if (kind == N_TEST)
        n->tests = 1;
    else if (kind == N_NOT)
        n->tests = p->nodes[a].tests;
    else
        n->tests = p->nodes[a].tests + p->nodes[b].tests;
    return (int) p->n_nodes++;
}

/* A test node; ``at`` is the word it comes from, for the message if
 * there are too many. */
static int new_test(parser *p, const filter_test *t, const token *at)
{
    char buf[WORD_MAX + 8];
    if (++p->n_tests > MAX_TESTS) {
        error(p, "the filter has more than %d primitives (at %s)", MAX_TESTS, text(at, buf));
        return -1;
    }
    int i = new_node(p, N_TEST, -1, -1);
    if (i >= 0)
        p->nodes[i].t = *t;
    return i;
}

/* ---- values ---- */

/* A decimal number of at most ``max``; -1 if the word is not one. */
static long number(const char *s, size_t len, long max)
{
    if (len == 0 || len > 6)
        return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= max ? v : -1;
}

static int looks_like_value(const token *t)
{
    return t->type == T_WORD && ((t->start[0] >= '0' && t->start[0] <= '9')
                                 || memchr(t->start, ':', t->len) != NULL);
}

/* An IPv4 or IPv6 literal: its family (4 or 6), or 0. */
static int address(const char *s, size_t len, uint8_t out[16])
{
    char buf[64];
    if (len >= sizeof(buf))
        return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    memset(out, 0, 16);
    if (inet_pton(AF_INET, buf, out) == 1)
        return 4;
    if (inet_pton(AF_INET6, buf, out) == 1)
        return 6;
    return 0;
}

/* The value ``v`` of a ``kind`` primitive in direction ``dir``. */
static int value(parser *p, int kind, int dir, const token *v)
{
    char buf[WORD_MAX + 8];
    filter_test t;
    memset(&t, 0, sizeof(t));
    t.dir = (uint8_t) dir;
    switch (kind) {
    case KIND_HOST: {
        int family = address(v->start, v->len, t.addr);
        if (!family) {
            error(p, "%s is not an IPv4 or IPv6 address", text(v, buf));
            return -1;
        }
        t.op = OP_NET;
        t.family = (uint8_t) family;
        t.prefix = family == 4 ? 32 : 128;
        break;
    }
    case KIND_NET: {
        const char *slash = memchr(v->start, '/', v->len);
        if (!slash) {
            error(p, "%s needs a prefix length after net, such as 10.0.0.0/8", text(v, buf));
            return -1;
        }
        size_t alen = (size_t) (slash - v->start);
        int family = address(v->start, alen, t.addr);
        if (!family) {
            error(p, "%s is not an IPv4 or IPv6 network", text(v, buf));
            return -1;
        }
        long prefix = number(slash + 1, v->len - alen - 1, family == 4 ? 32 : 128);
        if (prefix < 0) {
            error(p, "%s has a bad prefix length (0 to %d)", text(v, buf), family == 4 ? 32 : 128);
            return -1;
        }
        /* as tcpdump does: an address with host bits set is a mistake */
        for (int bit = (int) prefix; bit < (family == 4 ? 32 : 128); bit++) {
            if (t.addr[bit / 8] & (0x80 >> (bit % 8))) {
                error(p, "%s has bits set beyond its /%ld prefix", text(v, buf), prefix);
                return -1;
            }
        }
        t.op = OP_NET;
        t.family = (uint8_t) family;
        t.prefix = (uint8_t) prefix;
        break;
    }
    case KIND_PORT: {
        long port = number(v->start, v->len, 65535);
        if (port < 0) {
            error(p, "%s is not a port number (0 to 65535)", text(v, buf));
            return -1;
        }
        t.op = OP_PORT;
        t.lo = t.hi = (uint16_t) port;
        break;
    }
    default: {
        const char *dash = memchr(v->start, '-', v->len);
        long lo = -1, hi = -1;
        if (dash) {
            size_t llen = (size_t) (dash - v->start);
            lo = number(v->start, llen, 65535);
            hi = number(dash + 1, v->len - llen - 1, 65535);
        }
        if (lo < 0 || hi < 0) {
            error(p, "%s is not a port range such as 7148-7151", text(v, buf));
            return -1;
        }
        t.op = OP_PORT;
        /* tcpdump takes the ends in either order */
        t.lo = (uint16_t) (lo < hi ? lo : hi);
        t.hi = (uint16_t) (lo < hi ? hi : lo);
        break;
    }
    }
    p->last_kind = kind;
    p->last_dir = dir;
    return new_test(p, &t, v);
}

/* ---- grammar ---- */

static int kind_of(const token *t)
{
    if (word_is(t, "host"))
        return KIND_HOST;
    if (word_is(t, "net"))
        return KIND_NET;
    if (word_is(t, "port"))
        return KIND_PORT;
    if (word_is(t, "portrange"))
        return KIND_PORTRANGE;
    return 0;
}

static int starts_qualified(const token *t)
{
    return kind_of(t) || word_is(t, "src") || word_is(t, "dst");
}

/* [src|dst] (host|net|port|portrange) VALUE */
static int qualified(parser *p)
{
    char buf[WORD_MAX + 8], buf2[WORD_MAX + 8];
    int dir = DIR_EITHER;
    if (word_is(&p->tok, "src") || word_is(&p->tok, "dst")) {
        dir = p->tok.start[0] == 's' ? DIR_SRC : DIR_DST;
        advance(p);
        if (!kind_of(&p->tok)) {
            error(p, "%s must be followed by host, net, port or portrange, not %s",
                  text(&p->prev, buf), text(&p->tok, buf2));
            return -1;
        }
    }
    int kind = kind_of(&p->tok);
    advance(p);
    if (p->tok.type != T_WORD) {
        error(p, "%s needs a value, not %s", text(&p->prev, buf), text(&p->tok, buf2));
        return -1;
    }
    int i = value(p, kind, dir, &p->tok);
    advance(p);
    return i;
}

static int simple_test(parser *p, int op, const token *at)
{
    filter_test t;
    memset(&t, 0, sizeof(t));
    t.op = (uint8_t) op;
    return new_test(p, &t, at);
}

static int primitive(parser *p)
{
    char buf[WORD_MAX + 8];
    token w = p->tok;
    if (word_is(&w, "udp") || word_is(&w, "ip") || word_is(&w, "ip6")) {
        advance(p);
        /* only UDP datagrams are ever offered: ``udp`` is always true */
        int op = word_is(&w, "udp") ? OP_TRUE : word_is(&w, "ip") ? OP_IP4 : OP_IP6;
        int proto = simple_test(p, op, &w);
        if (!starts_qualified(&p->tok))
            return proto;
        /* ``udp port N``, ``ip host A``: the protocol qualifies the primitive */
        int q = qualified(p);
        if (q < 0)
            return -1;
        return new_node(p, N_AND, proto, q);
    }
    if (word_is(&w, "vlan")) {
        advance(p);
        if (p->tok.type == T_WORD && looks_like_value(&p->tok)) {
            long id = number(p->tok.start, p->tok.len, 4095);
            if (id < 0) {
                error(p, "%s is not a VLAN id (0 to 4095)", text(&p->tok, buf));
                return -1;
            }
            filter_test t;
            memset(&t, 0, sizeof(t));
            t.op = OP_VLAN_ID;
            t.lo = (uint16_t) id;
            int i = new_test(p, &t, &p->tok);
            advance(p);
            return i;
        }
        return simple_test(p, OP_VLAN_ANY, &w);
    }
    if (starts_qualified(&w))
        return qualified(p);
    if (p->last_kind && looks_like_value(&w)) {
        /* tcpdump's shorthand: ``port 7148 or 7149`` */
        int i = value(p, p->last_kind, p->last_dir, &w);
        advance(p);
        return i;
    }
    error(p, "unknown word %s", text(&w, buf));
    return -1;
}

static int expression(parser *p);

static int unary(parser *p)
{
    char buf[WORD_MAX + 8], buf2[WORD_MAX + 8];
    if (p->failed)
        return -1;
    switch (p->tok.type) {
    case T_WORD:
        return primitive(p);
    case T_NOT:
    case T_LPAREN: {
        if (p->depth >= MAX_DEPTH) {
            error(p, "the filter nests more than %d deep (at %s)", MAX_DEPTH, text(&p->tok, buf));
            return -1;
        }
        int paren = p->tok.type == T_LPAREN;
        token open = p->tok;
        advance(p);
        p->depth++;
        int i;
        if (!paren) {
            i = unary(p);
            i = new_node(p, N_NOT, i, -1);
        } else if (p->tok.type == T_RPAREN) {
            error(p, "empty parentheses '()'");
            i = -1;
        } else {
            i = expression(p);
            if (!p->failed && p->tok.type != T_RPAREN) {
                if (p->tok.type == T_BAD)
                    error(p, "unknown operator %s (use && or ||)", text(&p->tok, buf));
                else if (p->tok.type == T_END)
                    error(p, "%s is never closed", text(&open, buf));
                else
                    error(p, "expected 'and', 'or' or ')' before %s", text(&p->tok, buf));
            }
            advance(p);
        }
        p->depth--;
        return p->failed ? -1 : i;
    }
    case T_BAD:
        error(p, "unknown operator %s (use && or ||)", text(&p->tok, buf));
        return -1;
    default:
        if (p->prev.type == T_NOT || p->prev.type == T_AND || p->prev.type == T_OR
            || p->prev.type == T_LPAREN)
            error(p, "%s is not followed by a primitive (found %s)", text(&p->prev, buf),
                  text(&p->tok, buf2));
        else
            error(p, "unexpected %s", text(&p->tok, buf));
        return -1;
    }
}

/* and/or with equal precedence, from the left (libpcap's grammar) */
static int expression(parser *p)
{
    int left = unary(p);
    while (!p->failed && (p->tok.type == T_AND || p->tok.type == T_OR)) {
        int kind = p->tok.type == T_AND ? N_AND : N_OR;
        advance(p);
        int right = unary(p);
        left = new_node(p, kind, left, right);
    }
    return p->failed ? -1 : left;
}

/* ---- layout ---- */

/* Lay out node ``i``'s tests from ``start``: true goes to ``jt``, false to
 * ``jf``. */
static void layout(const node *nodes, int i, filter_insn *out, int start, int jt, int jf)
{
    const node *n = &nodes[i];
    switch (n->kind) {
    case N_TEST:
        out[start].t = n->t;
        out[start].jt = jt;
        out[start].jf = jf;
        break;
    case N_NOT:
        layout(nodes, n->a, out, start, jf, jt);
        break;
    case N_AND: {
        int second = start + (int) nodes[n->a].tests;
        layout(nodes, n->a, out, start, second, jf);
        layout(nodes, n->b, out, second, jt, jf);
        break;
    }
    default: {
        int second = start + (int) nodes[n->a].tests;
        layout(nodes, n->a, out, start, jt, second);
        layout(nodes, n->b, out, second, jt, jf);
        break;
    }
    }
}

pcap_filter *pcap_filter_compile(const char *expr, char *err, size_t err_len)
{
    char buf[WORD_MAX + 8];
    parser p;
    memset(&p, 0, sizeof(p));
    p.s = expr;
    p.err = err;
    p.err_len = err_len;
    err[0] = '\0';
    advance(&p);
    int root = -1;
    if (p.tok.type != T_END) {
        root = expression(&p);
        if (!p.failed && p.tok.type != T_END) {
            if (p.tok.type == T_RPAREN)
                error(&p, "')' without a matching '('");
            else if (p.tok.type == T_BAD)
                error(&p, "unknown operator %s (use && or ||)", text(&p.tok, buf));
            else
                error(&p, "expected 'and' or 'or' before %s", text(&p.tok, buf));
        }
    }
    pcap_filter *f = NULL;
    if (!p.failed) {
        size_t n = root < 0 ? 0 : p.nodes[root].tests;
        f = malloc(sizeof(*f) + n * sizeof(filter_insn));
        if (f) {
            f->n = n;
            if (root >= 0)
                layout(p.nodes, root, f->insns, 0, JUMP_ACCEPT, JUMP_REJECT);
        } else {
            snprintf(err, err_len, "out of memory compiling the filter");
        }
    }
    free(p.nodes);
    return f;
}

void pcap_filter_free(pcap_filter *f)
{
    free(f);
}

/* ---- matching ---- */

static int prefix_match(const uint8_t *a, const uint8_t *net, int prefix)
{
    int whole = prefix / 8;
    if (memcmp(a, net, (size_t) whole) != 0)
        return 0;
    int rest = prefix % 8;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t) (0xff << (8 - rest));
    return (a[whole] & mask) == net[whole];
}

static int test(const filter_test *t, const pcap_udp *d)
{
    switch (t->op) {
    case OP_TRUE:
        return 1;
    case OP_IP4:
        return d->ip_version == 4;
    case OP_IP6:
        return d->ip_version == 6;
    case OP_NET:
        return d->ip_version == t->family
               && (((t->dir & DIR_SRC) && prefix_match(d->src, t->addr, t->prefix))
                   || ((t->dir & DIR_DST) && prefix_match(d->dst, t->addr, t->prefix)));
    case OP_PORT:
        return ((t->dir & DIR_SRC) && d->src_port >= t->lo && d->src_port <= t->hi)
               || ((t->dir & DIR_DST) && d->dst_port >= t->lo && d->dst_port <= t->hi);
    case OP_VLAN_ANY:
        return d->n_vlans > 0;
    case OP_VLAN_ID:
        for (int i = 0; i < d->n_vlans; i++)
            if (d->vlans[i] == t->lo)
                return 1;
        return 0;
    default:
        return 0;
    }
}

int pcap_filter_match(const pcap_filter *f, const pcap_udp *d)
{
    if (f->n == 0)
        return 1;
    int pc = 0;
    for (;;) {
        const filter_insn *in = &f->insns[pc];
        pc = test(&in->t, d) ? in->jt : in->jf;
        if (pc < 0)
            return pc == JUMP_ACCEPT;
    }
}
