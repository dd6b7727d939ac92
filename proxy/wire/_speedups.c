/* The wire layer's hot path in C: RequestParser and ReplyFramer, the same classes as proxy/wire/resp.py's
 * PyRequestParser and PyReplyFramer (same API, attributes, limits, error texts, buffering and no-copy cases).
 * resp.py picks these when this module imports; the Python classes are the reference and the fallback, and
 * tests/test_speedups.py checks the two against each other on fuzzed input.
 *
 * Why C: the Python framer spends a third of a microsecond or more per element of an aggregate reply (35 ms for one
 * 100k-element SMEMBERS reply on the build machine, all of it holding the event loop); here about 12 ns.
 *
 * Everything runs with the GIL held and calls no Python code while it looks at the buffer, except int() on a
 * malformed reply length (see reply_length), which reads only its own copy of the digits.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define INLINE_MAX (64 * 1024) /* resp.INLINE_MAX: Redis's PROTO_INLINE_MAX_SIZE */
#define COMPACT_AT 65536       /* the dead prefix the Python classes keep before compacting */
#define MIN_CAP 4096           /* the least own storage taken */
#define SHRINK_ABOVE (256 * 1024) /* storage past this size is given back when a quarter of it would do */
#define LENGTH_LIMIT ((long long)1 << 60) /* reply lengths saturate here: no buffer can hold that many elements */

/* proxy.wire.resp's ProtocolError, handed over by bind() when resp.py imports this module: the C classes raise the
 * very class the Python ones raise. And RequestLimits(), the default limits: one instance serves every parser
 * (it is a frozen dataclass), which saves building one per client connection. */
static PyObject *ProtocolError = NULL;
static PyObject *DefaultLimits = NULL;

static PyObject *
bind(PyObject *module, PyObject *args)
{
    PyObject *error, *limits;
    if (!PyArg_ParseTuple(args, "OO:bind", &error, &limits))
        return NULL;
    if (!PyType_Check(error) || !PyType_IsSubtype((PyTypeObject *)error, (PyTypeObject *)PyExc_Exception)) {
        PyErr_SetString(PyExc_TypeError, "bind() needs an exception class");
        return NULL;
    }
    if ((limits = PyObject_CallNoArgs(limits)) == NULL)
        return NULL;
    Py_INCREF(error);
    Py_XSETREF(ProtocolError, error);
    Py_XSETREF(DefaultLimits, limits);
    Py_RETURN_NONE;
}

/* tp_new of both classes: they need the bound classes (an error raised with a NULL class would crash). */
static PyObject *
bound_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (ProtocolError == NULL || DefaultLimits == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "proxy.wire._speedups is used through proxy.wire.resp (bind() first)");
        return NULL;
    }
    return PyType_GenericNew(type, args, kwargs);
}

/* -- the input buffer both classes share ------------------------------------------------------------------------
 *
 * The Python classes keep the fed bytes object itself until a read ends mid-item, and only then copy the unparsed
 * rest into a bytearray they append to. The same here: `held` is a fed bytes object parsed in place (a command or
 * frame that is exactly that object is returned without a copy); when NULL, the bytes live in `data`, our own
 * storage. Either way the unparsed bytes are [pos, length). */

typedef struct {
    PyObject *held;   /* strong reference to a bytes object, or NULL */
    char *data;       /* own storage (PyMem), used when held is NULL */
    Py_ssize_t len;   /* bytes used in data */
    Py_ssize_t cap;   /* bytes allocated for data */
    Py_ssize_t pos;   /* first unparsed byte */
} Input;

static inline const char *
input_bytes(const Input *in)
{
    return in->held ? PyBytes_AS_STRING(in->held) : in->data;
}

static inline Py_ssize_t
input_length(const Input *in)
{
    return in->held ? PyBytes_GET_SIZE(in->held) : in->len;
}

/* Everything was parsed: let it all go, as the Python classes do with `self._buf = b""`, so an idle connection
 * holds no buffer whatever it received before. */
static void
input_clear(Input *in)
{
    Py_CLEAR(in->held);
    PyMem_Free(in->data);
    in->data = NULL;
    in->len = in->cap = in->pos = 0;
}

/* How much storage to take for `want` bytes: half as much again, so that appends are amortised. */
static Py_ssize_t
grown(Py_ssize_t want)
{
    Py_ssize_t cap = want <= PY_SSIZE_T_MAX - want / 2 ? want + want / 2 : want;
    return cap < MIN_CAP ? MIN_CAP : cap;
}

/* Storage too small for `want`, or far too big for it once a big item has gone through. */
static inline int
needs_storage(const Input *in, Py_ssize_t want)
{
    return want > in->cap || (in->cap > SHRINK_ABOVE && want < in->cap / 4);
}

/* Move the live bytes [pos, len) to the front of own storage with room for `want` bytes, new storage when
 * `reallocate` or when the present one does not fit; *shift gets how far they moved. Costs the live bytes: input_feed
 * calls it only when storage runs out (leaving at least a third of it free) or when the consumed prefix is at least
 * as large as the live part, so appends stay amortised O(1) however a big item is split. */
static int
input_compact(Input *in, Py_ssize_t want, int reallocate, Py_ssize_t *shift)
{
    Py_ssize_t live = in->len - in->pos;
    if (reallocate || needs_storage(in, want)) {
        Py_ssize_t cap = grown(want);
        char *fresh = PyMem_Malloc(cap);
        if (fresh == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        if (live)
            memcpy(fresh, in->data + in->pos, live);
        PyMem_Free(in->data);
        in->data = fresh;
        in->cap = cap;
    } else if (live) {
        memmove(in->data, in->data + in->pos, live);
    }
    *shift = in->pos;
    in->len = live;
    in->pos = 0;
    return 0;
}

/* Append `data` after the unparsed bytes. Returns 1 when nothing was left unparsed, so the input starts afresh at
 * `data` (held without a copy when it is a bytes object); 0 when appended, *shift then telling how far the unparsed
 * bytes moved towards the start (the framer's scan position moves with them); -1 on error. */
static int
input_feed(Input *in, PyObject *data, Py_ssize_t *shift)
{
    Py_buffer view;
    Py_ssize_t live;
    int fresh = input_length(in) <= in->pos;

    *shift = 0;
    if (fresh) {
        input_clear(in);
        if (PyBytes_CheckExact(data)) { /* the common case: parse the read in place */
            in->held = Py_NewRef(data);
            return 1;
        }
    }
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return -1;
    live = input_length(in) - in->pos;
    if (view.len > PY_SSIZE_T_MAX - live) {
        PyBuffer_Release(&view);
        PyErr_NoMemory();
        return -1;
    }
    if (in->held != NULL) {
        /* a read ended mid-item: copy the unparsed rest of the held bytes into own storage (where the Python classes
         * make a bytearray of it), then let the held object go. (No own storage exists while a read is held.) */
        Py_ssize_t cap = grown(live + view.len);
        if ((in->data = PyMem_Malloc(cap)) == NULL) {
            PyBuffer_Release(&view);
            PyErr_NoMemory();
            return -1;
        }
        in->cap = cap;
        memcpy(in->data, PyBytes_AS_STRING(in->held) + in->pos, live);
        Py_CLEAR(in->held);
        *shift = in->pos;
        in->len = live;
        in->pos = 0;
    } else if (in->len + view.len > in->cap) {
        /* out of room: compact within the same storage when that leaves it at most half full, else reallocate */
        if (input_compact(in, live + view.len, live + view.len > in->cap / 2, shift) < 0) {
            PyBuffer_Release(&view);
            return -1;
        }
    } else if (in->pos > COMPACT_AT && in->pos >= live) {
        /* the consumed prefix outweighs what is left: moving the rest costs less than what was consumed */
        if (input_compact(in, live + view.len, 0, shift) < 0) {
            PyBuffer_Release(&view);
            return -1;
        }
    }
    if (view.len)
        memcpy(in->data + in->len, view.buf, view.len);
    in->len += view.len;
    PyBuffer_Release(&view);
    return fresh;
}

/* The first CRLF at or after `from`, as bytes.find(b"\r\n", from); -1 when there is none. */
static inline Py_ssize_t
find_crlf(const char *d, Py_ssize_t from, Py_ssize_t n)
{
    while (from + 1 < n) {
        const char *cr = memchr(d + from, '\r', n - from - 1);
        if (cr == NULL)
            return -1;
        if (cr[1] == '\n')
            return cr - d;
        from = cr - d + 1;
    }
    return -1;
}

/* `a + b` for non-negative sizes, saturating: a length too big for memory can never complete, however big. */
static inline Py_ssize_t
add_sizes(Py_ssize_t a, long long b)
{
    return b > (long long)(PY_SSIZE_T_MAX - a) ? PY_SSIZE_T_MAX : a + (Py_ssize_t)b;
}

static Py_ssize_t
protocol_error(const char *text)
{
    PyErr_SetString(ProtocolError, text);
    return -2;
}

/* -- RequestParser -------------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Input in;
    Py_ssize_t need;          /* bytes (from in.pos) needed before parsing can progress */
    PyObject *partial;        /* list: the arguments so far of a command still arriving, or NULL */
    Py_ssize_t partial_offset; /* where its next argument header starts, from in.pos */
    long long partial_left;   /* arguments still to come */
    PyObject *limits;         /* as set; its four limits are read when it is set (RequestLimits is frozen) */
    long long max_bulk, max_multibulk, preauth_max_bulk, preauth_max_multibulk;
    PyObject *authenticated;  /* as set, like the Python attribute; `auth` is its truth */
    int auth;
} Parser;

static int
parser_set_limits(Parser *self, PyObject *limits, void *closure)
{
    static const char *names[4] = {"max_bulk_len", "max_multibulk_len", "preauth_max_bulk_len",
                                   "preauth_max_multibulk_len"};
    long long values[4];
    if (limits == NULL) {
        PyErr_SetString(PyExc_TypeError, "limits cannot be deleted");
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        PyObject *v = PyObject_GetAttrString(limits, names[i]);
        if (v == NULL)
            return -1;
        values[i] = PyLong_AsLongLong(v);
        Py_DECREF(v);
        if (values[i] == -1 && PyErr_Occurred())
            return -1;
    }
    self->max_bulk = values[0];
    self->max_multibulk = values[1];
    self->preauth_max_bulk = values[2];
    self->preauth_max_multibulk = values[3];
    Py_INCREF(limits);
    Py_XSETREF(self->limits, limits);
    return 0;
}

static PyObject *
parser_get_limits(Parser *self, void *closure)
{
    return Py_NewRef(self->limits ? self->limits : Py_None);
}

static int
parser_set_authenticated(Parser *self, PyObject *value, void *closure)
{
    int truth;
    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "authenticated cannot be deleted");
        return -1;
    }
    if ((truth = PyObject_IsTrue(value)) < 0)
        return -1;
    Py_INCREF(value);
    Py_XSETREF(self->authenticated, value);
    self->auth = truth;
    return 0;
}

static PyObject *
parser_get_authenticated(Parser *self, void *closure)
{
    return Py_NewRef(self->authenticated ? self->authenticated : Py_False);
}

static PyObject *
parser_get_buffered(Parser *self, void *closure)
{
    return PyLong_FromSsize_t(input_length(&self->in) - self->in.pos);
}

static PyObject *
parser_get_need(Parser *self, void *closure)
{
    return PyLong_FromSsize_t(self->need);
}

static PyObject *
parser_get_partial(Parser *self, void *closure)
{
    if (self->partial == NULL)
        Py_RETURN_NONE;
    return Py_BuildValue("(OnL)", self->partial, self->partial_offset, self->partial_left);
}

static int
parser_init(Parser *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"limits", NULL};
    PyObject *limits = Py_None;
    int ok;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:RequestParser", keywords, &limits))
        return -1;
    if ((ok = PyObject_IsTrue(limits)) < 0) /* `limits or RequestLimits()` */
        return -1;
    if (parser_set_limits(self, ok ? limits : DefaultLimits, NULL) < 0)
        return -1;
    input_clear(&self->in); /* (__init__ called again: start over, as the Python class does) */
    self->need = 0;
    Py_CLEAR(self->partial);
    return parser_set_authenticated(self, Py_False, NULL);
}

static int
parser_traverse(Parser *self, visitproc visit, void *arg)
{
    Py_VISIT(self->partial);
    Py_VISIT(self->limits);
    Py_VISIT(self->authenticated);
    return 0;
}

static int
parser_clear(Parser *self)
{
    Py_CLEAR(self->partial);
    Py_CLEAR(self->limits);
    Py_CLEAR(self->authenticated);
    return 0;
}

static void
parser_dealloc(Parser *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    parser_clear(self);
    input_clear(&self->in);
    type->tp_free((PyObject *)self);
}

static PyObject *
parser_feed(Parser *self, PyObject *data)
{
    Py_ssize_t shift;
    if (input_feed(&self->in, data, &shift) < 0)
        return NULL;
    Py_RETURN_NONE; /* need and the partial command are relative to pos: a shift leaves them valid */
}

/* A length in a request header, as resp.redis_int (Redis's string2ll) reads it: "0", or an optional '-' and at
 * most 19 digits without a leading zero, within 64 bits. 0 when valid. */
static int
strict_length(const char *s, Py_ssize_t len, long long *out)
{
    unsigned long long v = 0;
    int neg = 0;
    if (len == 1 && s[0] == '0') {
        *out = 0;
        return 0;
    }
    if (len && s[0] == '-') {
        neg = 1;
        s++;
        len--;
    }
    if (len < 1 || len > 19 || s[0] < '1' || s[0] > '9')
        return -1;
    for (Py_ssize_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long long)(s[i] - '0'); /* 19 digits fit in 64 unsigned bits */
    }
    if (neg) {
        if (v > (unsigned long long)LLONG_MAX + 1)
            return -1;
        *out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
    } else {
        if (v > (unsigned long long)LLONG_MAX)
            return -1;
        *out = (long long)v;
    }
    return 0;
}

/* Keep a partly received command (the list's reference moves into the parser), offsets from its start. */
static Py_ssize_t
parser_incomplete(Parser *self, PyObject *args, Py_ssize_t p, long long left, Py_ssize_t pos, Py_ssize_t need)
{
    self->partial = args;
    self->partial_offset = p - pos;
    self->partial_left = left;
    self->need = need - pos;
    return -1;
}

/* A multibulk command starting at `pos`: returns its end (*out: a new (args, raw) tuple, or NULL for an empty or
 * null multibulk, which Redis ignores), -1 when incomplete (the parse so far is kept), -2 with an exception set. */
static Py_ssize_t
parse_multibulk(Parser *self, const char *d, Py_ssize_t pos, Py_ssize_t n, PyObject **out)
{
    PyObject *args, *raw, *command;
    long long left, max_bulk;
    Py_ssize_t p;

    *out = NULL;
    if (self->partial != NULL) { /* resume a command whose arguments are still arriving */
        args = self->partial;
        self->partial = NULL; /* its reference is this function's now */
        p = pos + self->partial_offset;
        left = self->partial_left;
    } else {
        long long count, cap;
        Py_ssize_t eol = find_crlf(d, pos, n);
        if (eol < 0) {
            if (n - pos > INLINE_MAX)
                return protocol_error("Protocol error: too big mbulk count string");
            self->need = n - pos + 1;
            return -1;
        }
        cap = self->auth ? self->max_multibulk : self->preauth_max_multibulk;
        if (strict_length(d + pos + 1, eol - pos - 1, &count) < 0 || count > cap)
            return protocol_error("Protocol error: invalid multibulk length");
        p = eol + 2;
        if (count <= 0)
            return p;
        if ((args = PyList_New(0)) == NULL)
            return -2;
        left = count;
    }
    max_bulk = self->auth ? self->max_bulk : self->preauth_max_bulk;
    while (left) {
        long long size;
        Py_ssize_t eol, start, end;
        PyObject *arg;
        if (p >= n)
            return parser_incomplete(self, args, p, left, pos, p + 1);
        if (d[p] != '$') {
            Py_DECREF(args);
            PyErr_Format(ProtocolError, "Protocol error: expected '$', got '%c'", (int)(unsigned char)d[p]);
            return -2;
        }
        eol = find_crlf(d, p, n);
        if (eol < 0) {
            if (n - p > INLINE_MAX) {
                Py_DECREF(args);
                return protocol_error("Protocol error: too big bulk count string");
            }
            return parser_incomplete(self, args, p, left, pos, n + 1);
        }
        if (strict_length(d + p + 1, eol - p - 1, &size) < 0 || size < 0 || size > max_bulk) {
            Py_DECREF(args);
            return protocol_error("Protocol error: invalid bulk length");
        }
        start = eol + 2;
        end = add_sizes(start, size + 2);
        if (end > n) /* (nothing is parsed again before `end` bytes are in) */
            return parser_incomplete(self, args, p, left, pos, end);
        arg = PyBytes_FromStringAndSize(d + start, (Py_ssize_t)size);
        if (arg == NULL || PyList_Append(args, arg) < 0) {
            Py_XDECREF(arg);
            Py_DECREF(args);
            return -2;
        }
        Py_DECREF(arg);
        p = end;
        left--;
    }
    if (self->in.held != NULL && pos == 0 && p == n) /* the whole read is this one command: forward it, no copy */
        raw = Py_NewRef(self->in.held);
    else
        raw = PyBytes_FromStringAndSize(d + pos, p - pos);
    if (raw == NULL || (command = PyTuple_New(2)) == NULL) {
        Py_XDECREF(raw);
        Py_DECREF(args);
        return -2;
    }
    PyTuple_SET_ITEM(command, 0, args); /* (steals both references) */
    PyTuple_SET_ITEM(command, 1, raw);
    *out = command;
    return p;
}

static inline int
is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static inline int
hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* resp.split_inline: an inline command split with Redis's quoting rules (sdssplitargs). A list of bytes. */
static PyObject *
split_inline(const unsigned char *s, Py_ssize_t n)
{
    PyObject *args = PyList_New(0);
    unsigned char *cur = PyMem_Malloc(n ? n : 1); /* an argument is never longer than its line: escapes shrink */
    Py_ssize_t i = 0;

    if (args == NULL || cur == NULL) {
        Py_XDECREF(args);
        PyMem_Free(cur);
        return PyErr_NoMemory();
    }
    for (;;) {
        Py_ssize_t k = 0;
        PyObject *arg;
        while (i < n && is_space(s[i]))
            i++;
        if (i >= n)
            break;
        /* a word; like Redis, \v and \f do not end it */
        while (i < n && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r' && s[i] != '"' && s[i] != '\'')
            cur[k++] = s[i++];
        if (i < n && s[i] == '"') { /* double quotes, with escapes (opened mid-word too: a"b c" is ab c) */
            i++;
            for (;;) {
                if (i >= n)
                    goto unbalanced;
                if (s[i] == '\\' && i + 3 < n && s[i + 1] == 'x' && hex_value(s[i + 2]) >= 0 &&
                    hex_value(s[i + 3]) >= 0) {
                    cur[k++] = (unsigned char)(hex_value(s[i + 2]) * 16 + hex_value(s[i + 3]));
                    i += 4;
                } else if (s[i] == '\\' && i + 1 < n) {
                    unsigned char c = s[i + 1];
                    cur[k++] = c == 'n' ? '\n' : c == 'r' ? '\r' : c == 't' ? '\t' : c == 'b' ? '\b'
                             : c == 'a' ? '\a' : c;
                    i += 2;
                } else if (s[i] == '"') {
                    i++;
                    if (i < n && !is_space(s[i])) /* a closing quote must end the argument */
                        goto unbalanced;
                    break;
                } else {
                    cur[k++] = s[i++];
                }
            }
        } else if (i < n && s[i] == '\'') { /* single quotes, only \' escaped */
            i++;
            for (;;) {
                if (i >= n)
                    goto unbalanced;
                if (s[i] == '\\' && i + 1 < n && s[i + 1] == '\'') {
                    cur[k++] = '\'';
                    i += 2;
                } else if (s[i] == '\'') {
                    i++;
                    if (i < n && !is_space(s[i]))
                        goto unbalanced;
                    break;
                } else {
                    cur[k++] = s[i++];
                }
            }
        }
        arg = PyBytes_FromStringAndSize((const char *)cur, k);
        if (arg == NULL || PyList_Append(args, arg) < 0) {
            Py_XDECREF(arg);
            goto fail;
        }
        Py_DECREF(arg);
    }
    PyMem_Free(cur);
    return args;
unbalanced:
    PyErr_SetString(ProtocolError, "Protocol error: unbalanced quotes in request");
fail:
    PyMem_Free(cur);
    Py_DECREF(args);
    return NULL;
}

static char *
put_decimal(char *w, Py_ssize_t v)
{
    char digits[24];
    int k = 0;
    do {
        digits[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (k)
        *w++ = digits[--k];
    return w;
}

/* resp.encode_command for a list of bytes: the multibulk an inline command is forwarded as. */
static PyObject *
encode_command(PyObject *args)
{
    Py_ssize_t count = PyList_GET_SIZE(args), size = 3 + 20;
    PyObject *out;
    char *w;
    for (Py_ssize_t i = 0; i < count; i++)
        size += PyBytes_GET_SIZE(PyList_GET_ITEM(args, i)) + 5 + 20; /* $<len>\r\n<arg>\r\n */
    if ((out = PyBytes_FromStringAndSize(NULL, size)) == NULL)
        return NULL;
    w = PyBytes_AS_STRING(out);
    *w++ = '*';
    w = put_decimal(w, count);
    *w++ = '\r';
    *w++ = '\n';
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *arg = PyList_GET_ITEM(args, i);
        Py_ssize_t len = PyBytes_GET_SIZE(arg);
        *w++ = '$';
        w = put_decimal(w, len);
        *w++ = '\r';
        *w++ = '\n';
        memcpy(w, PyBytes_AS_STRING(arg), len);
        w += len;
        *w++ = '\r';
        *w++ = '\n';
    }
    if (_PyBytes_Resize(&out, w - PyBytes_AS_STRING(out)) < 0) /* (shrinks to the exact size) */
        return NULL;
    return out;
}

/* An inline command starting at `pos`: like parse_multibulk. */
static Py_ssize_t
parse_inline(Parser *self, const char *d, Py_ssize_t pos, Py_ssize_t n, PyObject **out)
{
    const char *nl = memchr(d + pos, '\n', n - pos);
    Py_ssize_t eol, len;
    PyObject *args, *raw;

    *out = NULL;
    if (nl == NULL) {
        if (n - pos > INLINE_MAX)
            return protocol_error("Protocol error: too big inline request");
        self->need = n - pos + 1;
        return -1;
    }
    eol = nl - d;
    len = eol - pos;
    if (len && d[eol - 1] == '\r')
        len--;
    if ((args = split_inline((const unsigned char *)d + pos, len)) == NULL)
        return -2;
    if (PyList_GET_SIZE(args) == 0) { /* a blank line: skipped */
        Py_DECREF(args);
        return eol + 1;
    }
    if ((raw = encode_command(args)) == NULL || (*out = PyTuple_New(2)) == NULL) {
        Py_XDECREF(raw);
        Py_DECREF(args);
        return -2;
    }
    PyTuple_SET_ITEM(*out, 0, args);
    PyTuple_SET_ITEM(*out, 1, raw);
    return eol + 1;
}

static PyObject *
parser_next(Parser *self, PyObject *unused)
{
    Py_ssize_t pos = self->in.pos, n = input_length(&self->in);
    const char *d = input_bytes(&self->in);

    while (pos < n) {
        PyObject *command;
        Py_ssize_t end;
        if (n - pos < self->need)
            Py_RETURN_NONE;
        end = d[pos] == '*' ? parse_multibulk(self, d, pos, n, &command) : parse_inline(self, d, pos, n, &command);
        if (end == -2)
            return NULL;
        if (end < 0)
            Py_RETURN_NONE;
        self->need = 0;
        if (end >= n) {
            input_clear(&self->in); /* (raw holds its own reference to a held read it is) */
            if (command == NULL)
                Py_RETURN_NONE;
            return command;
        }
        self->in.pos = pos = end;
        if (command != NULL)
            return command;
    }
    Py_RETURN_NONE;
}

static PyMethodDef parser_methods[] = {
    {"feed", (PyCFunction)parser_feed, METH_O, "Buffer bytes read from the client."},
    {"next", (PyCFunction)parser_next, METH_NOARGS,
     "One complete command as (args, raw), or None until more bytes arrive; ProtocolError on malformed input."},
    {NULL},
};

static PyGetSetDef parser_getset[] = {
    {"limits", (getter)parser_get_limits, (setter)parser_set_limits, "The RequestLimits in force.", NULL},
    {"authenticated", (getter)parser_get_authenticated, (setter)parser_set_authenticated,
     "Chooses the limits (max_* or preauth_max_*) for the next command parsed.", NULL},
    {"buffered", (getter)parser_get_buffered, NULL, "Unparsed bytes held.", NULL},
    {"_need", (getter)parser_get_need, NULL, "Bytes needed before parsing can progress (for tests).", NULL},
    {"_partial", (getter)parser_get_partial, NULL, "(args so far, offset, args left) of a command still arriving.",
     NULL},
    {NULL},
};

static PyTypeObject ParserType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "proxy.wire._speedups.RequestParser",
    .tp_doc = "Incremental parser of client requests (multibulk and inline), as resp.PyRequestParser.",
    .tp_basicsize = sizeof(Parser),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = bound_new,
    .tp_init = (initproc)parser_init,
    .tp_dealloc = (destructor)parser_dealloc,
    .tp_traverse = (traverseproc)parser_traverse,
    .tp_clear = (inquiry)parser_clear,
    .tp_methods = parser_methods,
    .tp_getset = parser_getset,
};

/* -- ReplyFramer ---------------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Input in;            /* in.pos: start of the first incomplete reply */
    Py_ssize_t scan;     /* where scanning of that reply resumes */
    long long remaining; /* elements still missing in it (0: not started; may go negative, as in Python) */
} Framer;

static int
framer_init(Framer *self, PyObject *args, PyObject *kwargs)
{
    if (!PyArg_ParseTuple(args, ":ReplyFramer") || (kwargs && PyDict_GET_SIZE(kwargs))) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "ReplyFramer() takes no arguments");
        return -1;
    }
    input_clear(&self->in);
    self->scan = 0;
    self->remaining = 0;
    return 0;
}

static void
framer_dealloc(Framer *self)
{
    PyTypeObject *type = Py_TYPE(self);
    input_clear(&self->in);
    type->tp_free((PyObject *)self);
}

static PyObject *
framer_get_buffered(Framer *self, void *closure)
{
    return PyLong_FromSsize_t(input_length(&self->in) - self->in.pos);
}

static PyObject *
framer_feed(Framer *self, PyObject *data)
{
    Py_ssize_t shift;
    int fresh = input_feed(&self->in, data, &shift);
    if (fresh < 0)
        return NULL;
    self->scan = fresh ? 0 : self->scan - shift;
    Py_RETURN_NONE;
}

/* The length in a reply header [a, b). The Python framer reads it with int(), which the upstream never makes it do
 * more than read digits; so do digits here, and hand anything else to int() itself (on a bytes object, or a
 * bytearray when the Python framer would be holding one) for the same value or the same ValueError. Values beyond
 * +-2**60 saturate: no buffer holds that many elements or bytes, so the reply never completes either way. */
static int
reply_length(Framer *self, const char *d, Py_ssize_t a, Py_ssize_t b, long long *out)
{
    const char *s = d + a;
    Py_ssize_t len = b - a, i = 0;
    long long v = 0;
    int neg = 0, overflow;
    PyObject *text, *number;

    if (len && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (len > i && len - i <= 18) {
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
            v = v * 10 + (s[i] - '0');
        if (i == len) {
            *out = neg ? -v : v;
            return 0;
        }
    }
    text = self->in.held ? PyBytes_FromStringAndSize(s, len) : PyByteArray_FromStringAndSize(s, len);
    if (text == NULL)
        return -1;
    number = PyObject_CallOneArg((PyObject *)&PyLong_Type, text);
    Py_DECREF(text);
    if (number == NULL)
        return -1;
    v = PyLong_AsLongLongAndOverflow(number, &overflow);
    Py_DECREF(number);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = overflow > 0 || v > LENGTH_LIMIT ? LENGTH_LIMIT : overflow < 0 || v < -LENGTH_LIMIT ? -LENGTH_LIMIT : v;
    return 0;
}

static inline long long
clamp_need(long long need)
{
    return need > LENGTH_LIMIT ? LENGTH_LIMIT : need < -LENGTH_LIMIT ? -LENGTH_LIMIT : need;
}

static PyObject *
framer_next(Framer *self, PyObject *unused)
{
    const char *d = input_bytes(&self->in);
    Py_ssize_t start = self->in.pos, n = input_length(&self->in), pos;
    long long need;
    PyObject *frame;

    if (start >= n)
        Py_RETURN_NONE;
    if (self->remaining) {
        pos = self->scan;
        need = self->remaining;
    } else {
        pos = start;
        need = 1;
    }
    /* One element per turn, each scanned once however the reply is split: `need` counts the elements still
     * missing; an aggregate header adds its elements, a map twice its count, an attribute its map and the reply
     * it annotates. */
    while (need) {
        Py_ssize_t eol;
        long long value;
        unsigned char t;
        if (pos >= n)
            goto incomplete;
        t = (unsigned char)d[pos];
        if ((eol = find_crlf(d, pos, n)) < 0)
            goto incomplete;
        need -= 1;
        switch (t) {
        case '+': case '-': case ':': case ',': case '#': case '_': case '(':
            pos = eol + 2;
            break;
        case '$': case '=': case '!': {
            Py_ssize_t end;
            if (reply_length(self, d, pos + 1, eol, &value) < 0)
                return NULL;
            end = value >= 0 ? add_sizes(eol + 2, value + 2) : eol + 2;
            if (end > n) {
                need += 1; /* (this bulk again, from its header) */
                goto incomplete;
            }
            pos = end;
            break;
        }
        case '*': case '~': case '>':
            if (reply_length(self, d, pos + 1, eol, &value) < 0)
                return NULL;
            pos = eol + 2;
            if (value > 0)
                need = clamp_need(need + value);
            break;
        case '%':
            if (reply_length(self, d, pos + 1, eol, &value) < 0)
                return NULL;
            need = clamp_need(need + 2 * value);
            pos = eol + 2;
            break;
        case '|': /* an attribute: a map, then the reply it annotates */
            if (reply_length(self, d, pos + 1, eol, &value) < 0)
                return NULL;
            need = clamp_need(need + 2 * value + 1);
            pos = eol + 2;
            break;
        default:
            PyErr_Format(ProtocolError, "Protocol error: unexpected reply type byte %d from upstream", (int)t);
            return NULL;
        }
    }
    self->remaining = 0;
    if (pos >= n) {
        if (start == 0 && self->in.held != NULL)
            frame = Py_NewRef(self->in.held); /* the frame is exactly the fed chunk: no copy */
        else if ((frame = PyBytes_FromStringAndSize(d + start, pos - start)) == NULL)
            return NULL;
        input_clear(&self->in);
        self->scan = 0;
    } else {
        if ((frame = PyBytes_FromStringAndSize(d + start, pos - start)) == NULL)
            return NULL;
        self->in.pos = self->scan = pos;
    }
    return frame;

incomplete:
    self->scan = pos;
    self->remaining = need;
    Py_RETURN_NONE;
}

static PyMethodDef framer_methods[] = {
    {"feed", (PyCFunction)framer_feed, METH_O, "Buffer bytes read from the upstream."},
    {"next", (PyCFunction)framer_next, METH_NOARGS,
     "The exact bytes of one complete reply or push, or None until more bytes arrive."},
    {NULL},
};

static PyGetSetDef framer_getset[] = {
    {"buffered", (getter)framer_get_buffered, NULL, "Bytes held that are not yet part of a returned frame.", NULL},
    {NULL},
};

static PyTypeObject FramerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "proxy.wire._speedups.ReplyFramer",
    .tp_doc = "Cuts an upstream byte stream into complete replies without decoding them, as resp.PyReplyFramer.",
    .tp_basicsize = sizeof(Framer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = bound_new,
    .tp_init = (initproc)framer_init,
    .tp_dealloc = (destructor)framer_dealloc,
    .tp_methods = framer_methods,
    .tp_getset = framer_getset,
};

/* -- the module ------------------------------------------------------------------------------------------------ */

static PyMethodDef module_methods[] = {
    {"bind", bind, METH_VARARGS,
     "bind(ProtocolError, RequestLimits): the classes proxy.wire.resp defines, raised and built by this module."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "proxy.wire._speedups",
    .m_doc = "C versions of proxy.wire.resp's RequestParser and ReplyFramer (the Python ones are the reference).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyObject *m;
    if (PyType_Ready(&ParserType) < 0 || PyType_Ready(&FramerType) < 0)
        return NULL;
    if ((m = PyModule_Create(&module)) == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "RequestParser", (PyObject *)&ParserType) < 0 ||
        PyModule_AddObjectRef(m, "ReplyFramer", (PyObject *)&FramerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
