/*
 * names — small pure helpers the sync layer shares: IMAP date-time and
 * flag lists as the state keeps them, UID sets, mailbox names (the
 * source's, the destination's, --folder/--exclude/--map), growable arrays.
 *
 * Not for: anything that talks to a server or to the state.
 */
#include "engine/sync/job_int.h"

static char *translate_name(struct job *j, const struct mbox *mb);
static int ns_prefixed(const char *pre, size_t plen, const char *name, size_t len);
static unsigned special_by_name(const struct mbox *mb);
static const char *mb_name_at(void *ctx, size_t i, size_t *len);

static const char *const special_names[] = {"\\Sent", "\\Drafts", "\\Trash", "\\Junk",
					   "\\Archive", "\\All", "\\Flagged"};

unsigned special_bits(const struct imap_node *attrs)
{
	unsigned bits = 0;

	for (const struct imap_node *f = attrs ? attrs->child : NULL; f; f = f->next)
		for (unsigned i = 0; i < sizeof(special_names) / sizeof(special_names[0]); i++)
			if (imap_node_is(f, special_names[i]))
				bits |= 1u << i;
	return bits;
}

/* ---- small parsers --------------------------------------------------------- */

/* "17-Jul-1996 02:44:25 -0700" → unix seconds (RFC 3501 date-time). */
int parse_idate(const char *s, size_t n, int64_t *out)
{
	struct imap_date d;

	if (imap_date_parse(s, n, &d) < 0)
		return -1;
	*out = imap_date_unix(&d);
	return 0;
}

/* FLAGS list → "\Seen $Forwarded" without \Recent (APPEND cannot set it).
 * Only what may go on a command line is written: system flags from a
 * fixed table, keywords that are atoms. The first flag that is neither
 * (or a FLAGS value that is not a list) is left out and put in *bad (if
 * bad), for the caller to refuse the message or the change. */
size_t flags_string(const struct imap_node *list, char *out, size_t cap,
                           const struct imap_node **bad)
{
	size_t n = 0;

	if (bad)
		*bad = list && list->type != IMAP_NODE_LIST ? list : NULL;
	for (const struct imap_node *f = list ? list->child : NULL; f; f = f->next) {
		const char *canon = NULL;
		enum imap_flag_kind kind = f->type == IMAP_NODE_ATOM
		                               ? imap_flag_classify(f->s, f->len, &canon)
		                               : IMAP_FLAG_INVALID;
		size_t len = canon ? strlen(canon) : f->len;

		if (kind == IMAP_FLAG_RECENT)
			continue;
		if (kind == IMAP_FLAG_INVALID) {
			if (bad && !*bad)
				*bad = f;
			continue;
		}
		if (n + len + 2 > cap)
			break;
		if (n)
			out[n++] = ' ';
		memcpy(out + n, canon ? canon : f->s, len);
		n += len;
	}
	out[n] = '\0';
	return n;
}

/* "5:7,9" → calls fn for 5,6,7,9 in order. */
int uidset_each(const char *s, size_t n, void (*fn)(void *ctx, uint32_t uid), void *ctx)
{
	size_t i = 0;

	while (i < n) {
		uint64_t a = 0, b;
		size_t st = i;

		while (i < n && s[i] >= '0' && s[i] <= '9')
			a = a * 10 + (uint64_t)(s[i++] - '0');
		if (i == st || a > UINT32_MAX)
			return -1;
		b = a;
		if (i < n && s[i] == ':') {
			st = ++i;
			b = 0;
			while (i < n && s[i] >= '0' && s[i] <= '9')
				b = b * 10 + (uint64_t)(s[i++] - '0');
			if (i == st || b > UINT32_MAX)
				return -1;
		}
		if (b < a) {
			uint64_t t = a;
			a = b;
			b = t;
		}
		if (b - a > 1000000)
			return -1;
		for (uint64_t u = a; u <= b; u++)
			fn(ctx, (uint32_t)u);
		if (i < n && s[i] != ',')
			return -1;
		i++;
	}
	return 0;
}

/* ---- mailbox names ------------------------------------------------------------ */

char *dupn(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

int is_inbox(const char *s, size_t n)
{
	return n == 5 && !strncasecmp(s, "INBOX", 5);
}

/* Source name with the source separator → destination name: the source's
 * personal namespace prefix taken off, the destination's put on (RFC 2342;
 * "INBOX.Sent" on Courier is "Sent" on Dovecot), INBOX as it is. A
 * character that is the destination's separator but not the source's
 * cannot be kept (it would create a hierarchy level): it becomes '_' and
 * we say so. */
/* A source name with 8-bit bytes is UTF-8 (a source in RFC 6855 UTF-8
 * mode, or one that sends raw UTF-8 anyway); we never ENABLE UTF8=ACCEPT,
 * so the destination gets it as modified UTF-7 (RFC 3501 §5.1.3). Courier
 * takes raw 8-bit names and stores them mangled, each byte sign-extended
 * ("B&,8P,vA-cher" for "Bücher"). What is not UTF-8 goes as it is. Returns
 * the length written to enc, 0 if the name stays as it is. */
static size_t name_to_utf7(const struct mbox *mb, const char *s, size_t n, char *enc, size_t cap)
{
	size_t i = 0;
	ssize_t k;

	while (i < n && (unsigned char)s[i] < 0x80)
		i++;
	if (i == n)
		return 0;
	k = utf7_encode(s, n, enc, cap);
	if (k <= 0) {
		mf_log(MF_LOG_WARN, "mailbox \"%s\": an 8-bit name that is not UTF-8; sent as "
		                    "it is", mb->display);
		return 0;
	}
	return (size_t)k;
}

static char *translate_name(struct job *j, const struct mbox *mb)
{
	size_t skip = src_ns_skip(j, mb->name, mb->len), n = mb->len - skip;
	size_t pre = j->dst_ns_len;
	const char *from = mb->name + skip;
	char enc[STATE_NAME_MAX];
	size_t k;
	char *d;

	if (is_inbox(mb->name, mb->len))
		return dupn("INBOX", 5);
	if ((k = name_to_utf7(mb, from, n, enc, sizeof(enc)))) {
		from = enc;
		n = k;
	}
	if (!(d = malloc(pre + n + 1)))
		return NULL;
	memcpy(d, j->dst_ns, pre);
	memcpy(d + pre, from, n);
	d[pre + n] = '\0';
	for (size_t i = pre; i < pre + n; i++) {
		if (mb->sep && d[i] == mb->sep) {
			d[i] = j->dst_sep ? j->dst_sep : mb->sep;
		} else if (j->dst_sep && d[i] == j->dst_sep) {
			d[i] = '_';
			mf_log(MF_LOG_WARN, "mailbox \"%s\": '%c' is the destination's separator; "
					    "written as '_'", mb->display, j->dst_sep);
		}
	}
	return d;
}

/* ---- personal namespaces (RFC 2342) ---------------------------------------- */

/* Does name begin with the namespace prefix pre? Its INBOX part is
 * case-insensitive (RFC 3501 §5.1), the rest compared byte for byte. */
static int ns_prefixed(const char *pre, size_t plen, const char *name, size_t len)
{
	size_t i = 0;

	if (!plen || len < plen)
		return 0;
	if (plen >= 5 && !strncasecmp(pre, "INBOX", 5) && !strncasecmp(name, "INBOX", 5))
		i = 5;
	return !memcmp(pre + i, name + i, plen - i);
}

/* "* NAMESPACE (("INBOX." ".")) NIL NIL" (RFC 2342 §5): the first personal
 * namespace's prefix into out (JOB_NS_MAX bytes), its separator in *sep
 * (0 if none given). An empty one (most servers) is 0; one we will not
 * put on a command line (a NUL, CR or LF, or longer than JOB_NS_MAX) is
 * ignored with a warning naming who, and names go as they are. Returns
 * the prefix's length. */
size_t ns_personal(const char *who, const struct imap_node *a, char *out, char *sep)
{
	const struct imap_node *pers = a->next, *first, *sn;
	char esc[JOB_NS_MAX * 4];
	const char *s;
	size_t n;

	*sep = 0;
	first = pers && pers->type == IMAP_NODE_LIST ? pers->child : NULL;
	if (!first || first->type != IMAP_NODE_LIST || node_str(first->child, &s, &n) < 0 || !n)
		return 0;
	if (n >= JOB_NS_MAX || imap_mailbox_name_bad(s, n)) {
		mf_log(MF_LOG_WARN,
		       "%s: personal namespace prefix not usable (%zu bytes); "
		       "folder names are taken without it",
		       who, n);
		return 0;
	}
	memcpy(out, s, n);
	out[n] = '\0';
	sn = first->child->next;
	if (sn && sn->type == IMAP_NODE_STRING && sn->len == 1)
		*sep = sn->s[0];
	mf_escape(s, n, esc, sizeof(esc));
	mf_log(MF_LOG_DEBUG, "%s: personal namespace prefix \"%s\"", who, esc);
	return n;
}

/* The source's (dst 0) or the destination's NAMESPACE answer: its
 * personal prefix (ns_personal) kept, the first one only; the
 * destination's separator taken from it if LIST has not told it. 1: a
 * prefix was taken. */
int ns_take(struct job *j, const struct imap_client *c, const struct imap_node *a, int dst)
{
	size_t *len = dst ? &j->dst_ns_len : &j->src_ns_len;
	char pre[JOB_NS_MAX], sep;
	size_t n;

	if (*len || !(n = ns_personal(imap_client_who(c), a, pre, &sep)))
		return 0;
	memcpy(dst ? j->dst_ns : j->src_ns, pre, n + 1);
	*len = n;
	if (dst && sep && !j->dst_sep)
		j->dst_sep = sep;
	return 1;
}

/* The other users' and shared namespaces of the source's NAMESPACE answer
 * (RFC 2342 §5: "* NAMESPACE personal other shared", each NIL or a list of
 * (prefix separator) lists). Up to JOB_SHARED_NS prefixes are noted; a
 * prefix we would not put on a command line is left out (its mailboxes
 * are then taken as personal ones, which --exclude can still skip). */
void ns_take_shared(struct job *j, const struct imap_client *c, const struct imap_node *a)
{
	const struct imap_node *cls = a->next ? a->next->next : NULL;

	(void)c;
	for (int k = 0; k < 2 && cls; k++, cls = cls->next) {
		if (cls->type != IMAP_NODE_LIST)
			continue;
		for (const struct imap_node *ns = cls->child; ns && j->nshared_ns < JOB_SHARED_NS;
		     ns = ns->next) {
			const char *s;
			size_t n;

			if (ns->type != IMAP_NODE_LIST || node_str(ns->child, &s, &n) < 0 ||
			    n >= JOB_NS_MAX || (n && imap_mailbox_name_bad(s, n)))
				continue;
			memcpy(j->shared_ns[j->nshared_ns], s, n);
			j->shared_ns[j->nshared_ns][n] = '\0';
			j->shared_ns_len[j->nshared_ns++] = n;
		}
	}
}

/* A name in a namespace: it starts with the prefix, or is the prefix
 * without its trailing separator (the namespace's root, "Public"). */
static size_t ns_match(const char *pre, size_t plen, const char *name, size_t len, char sep)
{
	if (!plen)
		return 0;
	if (ns_prefixed(pre, plen, name, len))
		return plen;
	if (sep && pre[plen - 1] == sep && len == plen - 1 && !memcmp(pre, name, len))
		return plen;
	return 0;
}

int mbox_in_shared(const struct job *j, const struct mbox *mb)
{
	size_t best = 0, mine;

	for (size_t i = 0; i < j->nshared_ns; i++) {
		size_t m = ns_match(j->shared_ns[i], j->shared_ns_len[i], mb->name, mb->len, mb->sep);

		if (m > best)
			best = m;
	}
	if (!best)
		return 0;
	/* INBOX is the account's own, whatever a prefix says (RFC 3501 §5.1) */
	if (is_inbox(mb->name, mb->len))
		return 0;
	mine = ns_match(j->src_ns, j->src_ns_len, mb->name, mb->len, mb->sep);
	return best > mine;
}

/* How much of a source name is the personal namespace prefix ns: none
 * for INBOX, for the prefix alone, or for "INBOX.INBOX" (without the
 * prefix it would be INBOX). */
size_t ns_skip(const char *ns, size_t nslen, const char *name, size_t len)
{
	if (!ns_prefixed(ns, nslen, name, len) || len <= nslen || is_inbox(name + nslen, len - nslen))
		return 0;
	return nslen;
}

size_t src_ns_skip(const struct job *j, const char *name, size_t len)
{
	return ns_skip(j->src_ns, j->src_ns_len, name, len);
}

/* People, --folder, --exclude and --map see a source name without the
 * source's personal namespace prefix ("Sent", not "INBOX/Sent"), modified
 * UTF-7 decoded (as it is if it is not mUTF-7), '/' for the separator.
 * Writes at most cap-1 bytes and a NUL; returns the length. */
size_t display_name(const char *ns, size_t nslen, const char *name, size_t len, char sep,
                    char *out, size_t cap)
{
	size_t skip = ns_skip(ns, nslen, name, len);
	ssize_t dl;

	if (!cap)
		return 0;
	name += skip;
	len -= skip;
	dl = utf7_decode(name, len, out, cap - 1);
	if (dl < 0) {
		dl = (ssize_t)(len < cap - 1 ? len : cap - 1);
		memcpy(out, name, (size_t)dl);
	}
	out[dl] = '\0';
	if (sep && sep != '/')
		for (char *p = out; *p; p++)
			if (*p == sep)
				*p = '/';
	return (size_t)dl;
}

/* The source's prefix is known after the mailbox was listed: its display
 * made again without it. */
void mbox_ns_display(struct job *j, struct mbox *mb)
{
	char disp[STATE_NAME_MAX * 2];
	size_t dl;
	char *d;

	if (!src_ns_skip(j, mb->name, mb->len))
		return;
	dl = display_name(j->src_ns, j->src_ns_len, mb->name, mb->len, mb->sep, disp, sizeof(disp));
	if (!(d = dupn(disp, dl)))
		return; /* out of memory: the whole name is shown */
	free(mb->display);
	mb->display = d;
}

/* Usual names of special-use folders in the languages of our corpus, for a
 * source without SPECIAL-USE (Courier): bits as in special_names. */
static const struct {
	const char *name;
	unsigned bit;
} special_table[] = {
    {"Sent", 0},
    {"Sent Items", 0},
    {"Sent Messages", 0},
    {"Sent Mail", 0},
    {"Gesendet", 0},
    {"Gesendete Elemente", 0},
    {"Gesendete Objekte", 0},
    {"Drafts", 1},
    {"Entw\xc3\xbcrfe", 1},
    {"Trash", 2},
    {"Deleted Items", 2},
    {"Deleted Messages", 2},
    {"Papierkorb", 2},
    {"Gel\xc3\xb6schte Elemente", 2},
    {"Gel\xc3\xb6schte Objekte", 2},
    {"Junk", 3},
    {"Spam", 3},
    {"Junk E-Mail", 3},
    {"Junk-E-Mail", 3},
    {"Archive", 4},
    {"Archiv", 4},
};

/* The special use a folder's name suggests: a top-level folder with a
 * usual name, 0 otherwise. */
static unsigned special_by_name(const struct mbox *mb)
{
	if (mb->noselect || is_inbox(mb->name, mb->len) || strchr(mb->display, '/'))
		return 0;
	for (size_t k = 0; k < sizeof(special_table) / sizeof(special_table[0]); k++)
		if (!strcasecmp(mb->display, special_table[k].name))
			return 1u << special_table[k].bit;
	return 0;
}

/* A source that marks no folder with SPECIAL-USE (RFC 6154): its top-level
 * folders with a usual name ("Sent", "Entwürfe", ...) count as marked, so
 * they land in the destination's special-use folders (issue 22 item 5).
 * A use two of them would claim is given to neither: folders are not
 * merged on a guess. --map still comes first. */
void special_guess(struct job *j)
{
	unsigned seen = 0, twice = 0;

	if (j->w[0].src.caps & IMAP_CAP_SPECIAL_USE)
		return;
	for (size_t i = 0; i < j->nmb; i++) {
		unsigned b = special_by_name(&j->mb[i]);

		if (j->mb[i].special)
			return;
		twice |= seen & b;
		seen |= b;
	}
	for (size_t i = 0; i < j->nmb; i++) {
		unsigned b = special_by_name(&j->mb[i]);

		if (b && !(b & twice))
			j->mb[i].special = b;
	}
}

/* ---- name indexes --------------------------------------------------------- */

size_t name_hash(const char *s, size_t n)
{
	uint64_t h = UINT64_C(14695981039346656037);

	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * UINT64_C(1099511628211);
	return (size_t)(h ^ (h >> 29));
}

/* Indexes entries x->n..count-1 (get(i) gives entry i's name), growing the
 * table to keep it at most half full. -1: out of memory (callers then scan). */
int nx_update(struct name_index *x, size_t count, void *ctx,
                     const char *(*get)(void *ctx, size_t i, size_t *len))
{
	if (count * 2 > x->cap) {
		size_t cap = 1024;
		uint32_t *ns;

		while (cap < count * 2)
			cap *= 2;
		if (!(ns = calloc(cap, sizeof(*ns))))
			return -1;
		free(x->slot);
		x->slot = ns;
		x->cap = cap;
		x->n = 0;
	}
	if (count < x->n) { /* shrunk or reordered: start again */
		memset(x->slot, 0, x->cap * sizeof(*x->slot));
		x->n = 0;
	}
	for (; x->n < count; x->n++) {
		size_t len, h;
		const char *nm = get(ctx, x->n, &len);

		for (h = name_hash(nm, len) & (x->cap - 1); x->slot[h]; h = (h + 1) & (x->cap - 1))
			;
		x->slot[h] = (uint32_t)(x->n + 1);
	}
	return 0;
}

void nx_reset(struct name_index *x)
{
	if (x->slot)
		memset(x->slot, 0, x->cap * sizeof(*x->slot));
	x->n = 0;
}

static const char *mb_name_at(void *ctx, size_t i, size_t *len)
{
	struct job *j = ctx;

	*len = j->mb[i].len;
	return j->mb[i].name;
}

const char *dst_name_at(void *ctx, size_t i, size_t *len)
{
	struct job *j = ctx;

	*len = strlen(j->dst_names[i]);
	return j->dst_names[i];
}

struct mbox *mbox_find(struct job *j, const char *name, size_t len)
{
	if (j->mbx.n != j->nmb && nx_update(&j->mbx, j->nmb, j, mb_name_at) < 0) {
		for (size_t i = 0; i < j->nmb; i++)
			if (j->mb[i].len == len && !memcmp(j->mb[i].name, name, len))
				return &j->mb[i];
		return NULL;
	}
	for (size_t h = name_hash(name, len) & (j->mbx.cap - 1); j->mbx.cap && j->mbx.slot[h];
	     h = (h + 1) & (j->mbx.cap - 1)) {
		struct mbox *mb = &j->mb[j->mbx.slot[h] - 1];

		if (mb->len == len && !memcmp(mb->name, name, len))
			return mb;
	}
	return NULL;
}

struct mbox *mbox_add(struct job *j, const char *name, size_t len)
{
	struct mbox *mb;
	char disp[STATE_NAME_MAX * 2];
	ssize_t dl;

	if (j->nmb == j->cmb) {
		size_t nc = j->cmb ? j->cmb * 2 : 64;
		struct mbox *nm = realloc(j->mb, nc * sizeof(*nm));

		if (!nm)
			return NULL;
		j->mb = nm;
		j->cmb = nc;
	}
	mb = &j->mb[j->nmb];
	memset(mb, 0, sizeof(*mb));
	mb->name = dupn(name, len);
	mb->len = len;
	dl = utf7_decode(name, len, disp, sizeof(disp));
	mb->display = dl >= 0 ? dupn(disp, (size_t)dl) : dupn(name, len);
	if (!mb->name || !mb->display)
		return NULL;
	j->nmb++;
	return mb;
}

/* ---- control: LIST on the source ------------------------------------------ */

int node_str(const struct imap_node *n, const char **s, size_t *len)
{
	if (!n || (n->type != IMAP_NODE_ATOM && n->type != IMAP_NODE_STRING))
		return -1;
	*s = n->s;
	*len = n->len;
	return 0;
}

/* Where a source mailbox goes: --map SRC=DST first (UTF-8 names), then
 * SPECIAL-USE (the source's \Sent goes to the destination's \Sent, whatever
 * either is called), else the same name with the separator translated. */
/* A destination name the user wrote (UTF-8, '/' for hierarchy) in the
 * destination's wire form: modified UTF-7, its separator, its personal
 * namespace prefix unless the name has it already (or is INBOX). NULL if
 * it cannot be encoded (ok = 0) or out of memory (ok = 1). */
static char *dst_from_utf8(struct job *j, const char *utf8, int *ok)
{
	char enc[STATE_NAME_MAX], *d;
	ssize_t n = utf7_encode(utf8, strlen(utf8), enc, sizeof(enc));

	*ok = n > 0;
	if (n <= 0)
		return NULL;
	for (ssize_t i = 0; i < n; i++)
		if (enc[i] == '/' && j->dst_sep)
			enc[i] = j->dst_sep;
	/* "Sent" is "INBOX.Sent" on Courier */
	if (is_inbox(enc, (size_t)n) || ns_prefixed(j->dst_ns, j->dst_ns_len, enc, (size_t)n))
		return dupn(enc, (size_t)n);
	if ((d = malloc(j->dst_ns_len + (size_t)n + 1))) {
		memcpy(d, j->dst_ns, j->dst_ns_len);
		memcpy(d + j->dst_ns_len, enc, (size_t)n);
		d[j->dst_ns_len + (size_t)n] = '\0';
	}
	return d;
}

/* Where mailbox mb goes: --map wins; then --rename and --dst-prefix; then
 * the destination's folder of the same special use; then the same name. */
char *dst_name_for(struct job *j, const struct mbox *mb)
{
	char *named, *d;
	int ok, changed;

	for (const char *const *m = j->o->maps; m && *m; m++) {
		const char *eq = strchr(*m, '=');

		if (!eq || (size_t)(eq - *m) != strlen(mb->display) ||
		    memcmp(*m, mb->display, (size_t)(eq - *m)))
			continue;
		d = dst_from_utf8(j, eq + 1, &ok);
		if (ok)
			return d;
		mf_log(MF_LOG_WARN, "--map %s: not a valid destination name; ignored", *m);
	}
	if (!(named = rules_dst_display(j, mb->display, &changed)))
		return NULL;
	if (changed) {
		d = dst_from_utf8(j, named, &ok);
		if (ok) {
			free(named);
			return d;
		}
		mf_log(MF_LOG_WARN, "mailbox \"%s\": --rename/--dst-prefix made \"%s\", not a valid "
		                    "destination name; ignored",
		       mb->display, named);
	}
	free(named);
	if (mb->special && !is_inbox(mb->name, mb->len))
		for (size_t i = 0; i < j->ndst; i++)
			if (j->dst_special[i] & mb->special) {
				if (strcmp(j->dst_names[i], mb->name))
					mf_log(MF_LOG_INFO, "mailbox \"%s\" goes to the destination's \"%s\" "
							    "(same special use)",
					       mb->display, j->dst_names[i]);
				return dupn(j->dst_names[i], strlen(j->dst_names[i]));
			}
	return translate_name(j, mb);
}

void fetch_meta(const struct imap_resp *r, const struct imap_node *key,
		       struct fetch_meta *fm)
{
	const struct imap_node *items = r->first->next->next;

	memset(fm, 0, sizeof(*fm));
	for (const struct imap_node *it = items ? items->child : NULL; it && it != key && it->next;
	     it = it->next) {
		if (imap_node_is(it, "UID"))
			imap_node_u32(it->next, &fm->uid);
		else if (imap_node_is(it, "FLAGS"))
			fm->flags = it->next;
		else if (imap_node_is(it, "INTERNALDATE"))
			fm->date = it->next;
		else if (imap_node_is(it, "MODSEQ") && it->next->child)
			imap_node_u64(it->next->child, &fm->modseq);
		else if (imap_node_is(it, "RFC822.SIZE"))
			fm->has_size = !imap_node_u64(it->next, &fm->size);
	}
}

int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	size_t nc;
	void *np;

	if (need <= *cap)
		return 0;
	nc = *cap ? *cap : 64;
	while (nc < need)
		nc *= 2;
	np = realloc(*p, nc * elem);
	if (!np)
		return -ENOMEM;
	*p = np;
	*cap = nc;
	return 0;
}
